"""The training loop: a new head, frozen layers, Keras' loss from the logits, one stage at a time.

Works on any converted model through its architecture (parity.arch.arch_of): the head to replace
and its new Keras-initialized version, the layer groups chain-thaw walks and the parameters the
mapping holds constant. Every stage uses ``parity.optim.Adam(clipnorm=1)`` (DeepMoji's
optimizer) built afresh, as DeepMoji recompiles, and the loss Keras computes for a
sigmoid/softmax output: the crossentropy from the logits behind it (``LOGITS``, read by a forward
hook on the head; the model is not modified).

Multi-class one-hot data trains one softmax model (DeepMoji trains one binary model per class
there; this is cheaper, and a documented difference). An epoch is one pass over the training
split, or with ``balanced=N`` DeepMoji's class-balanced sample of N examples (it uses 5000).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity import losses, optim
from parity.arch import arch_of
from parity.conventions import (
    DEEPMOJI_CLIPNORM,
    DEEPMOJI_FINETUNE_EMBED_DROPOUT,
    DEEPMOJI_FINETUNE_FINAL_DROPOUT,
)
from parity.convert.mapping import build_empty
from parity.inference import DEFAULT_BATCH_SIZE as RUN_BATCH_SIZE
from parity.inference import run_ids
from parity.init import keras_init_
from parity.ports import Dense
from parity.ports.norm import FROZEN_INFERENCE
from parity.train.checkpoint import Checkpointer, set_rng_state
from parity.train.data import TaskData
from parity.train.distributed import Context, drop_occurrences
from parity.train.stages import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_PATIENCE,
    EarlyStopping,
    Stage,
    balanced_order,
    batches,
    epoch_order,
    plan,
)

#: task -> Keras loss used by DeepMoji (binary_crossentropy for one sigmoid unit).
LOSSES: dict[str, Callable[..., Tensor]] = {
    "binary": losses.binary_crossentropy,
    "multilabel": losses.binary_crossentropy,
    "multiclass": losses.categorical_crossentropy,
}

#: Output activations Keras takes the logits behind for its crossentropies (_keras_logits).
LOGIT_ACTIVATIONS = ("sigmoid", "softmax")


def _dense_logits(module: Dense, inputs: tuple[Any, ...], output: Tensor) -> Tensor | None:
    if module.activation not in LOGIT_ACTIVATIONS:
        return None  # Keras has no logits there either: the loss clips the outputs
    return F.linear(inputs[0], module.weight, module.bias)


LogitsRule = Callable[[nn.Module, tuple[Any, ...], Tensor], Tensor | None]
#: Head type -> its logits from a forward hook's (module, inputs, output); looked up along the
#: head's MRO, most specific class first. A pair's head is a plain nn.Linear that outputs the
#: logits (the pair applies the sigmoid/softmax in forward); parity's Dense applies its Keras
#: activation inside forward, so its logits are recomputed from its input.
LOGITS: dict[type[nn.Module], LogitsRule] = {
    Dense: _dense_logits,
    nn.Linear: lambda module, inputs, output: output,
}


class NotFineTunable(ValueError):
    """The model has no token-id (Embedding) input or no Dense classifier head."""


def logits_rule(head: nn.Module) -> LogitsRule:
    """How to read the logits of ``head`` (see LOGITS); NotFineTunable for other heads."""
    for cls in type(head).__mro__:
        if cls in LOGITS:
            return LOGITS[cls]
    raise NotFineTunable(f"the head is a {type(head).__name__}, not a Dense (nn.Linear) layer")


class LogitsTap:
    """Keeps the logits behind the head's output of the last forward, as Keras' _keras_logits
    does for a sigmoid/softmax output."""

    def __init__(self, head: nn.Module) -> None:
        self.value: Tensor | None = None
        self._rule = logits_rule(head)
        self._handle = head.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
        self.value = self._rule(module, inputs, output)

    def remove(self) -> None:
        self._handle.remove()


def head_module(model: nn.Module) -> nn.Module:
    """The classifier submodule (NotFineTunable when the model has none)."""
    try:
        return arch_of(model).head_layer(model)
    except (ValueError, TypeError) as exc:
        raise NotFineTunable(str(exc)) from exc


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The Embedding the model's token ids go into (NotFineTunable when there is none)."""
    try:
        return arch_of(model).token_embedding(model)
    except ValueError as exc:
        raise NotFineTunable(str(exc)) from exc


def check_finetunable(model: nn.Module, maxlen: int) -> None:
    """NotFineTunable naming the problem unless ``model`` maps token ids (B, maxlen) through an
    Embedding to a Dense head, which is what fine-tuning needs."""
    token_embedding(model)
    logits_rule(head_module(model))
    ids = torch.ones(1, maxlen, dtype=torch.long)
    training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(ids)
    except (ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise NotFineTunable(f"the model does not run on token ids (1, {maxlen}): {exc}") from exc
    finally:
        model.train(training)
    if not isinstance(out, Tensor):
        raise NotFineTunable(f"the model returns {type(out).__name__}, not one tensor")


def with_dropout(
    model: nn.Module, embed_dropout: float | None = None, final_dropout: float | None = None
) -> nn.Module:
    """The same weights (a copy) in a model rebuilt with other dropout rates, where its
    architecture has them (``dropout_fields``); a model without them is returned as it is."""
    arch = arch_of(model)
    if arch.dropout_fields is None:
        return model
    config = model.config
    wanted = dict(zip(arch.dropout_fields, (embed_dropout, final_dropout), strict=True))
    changes = {k: v for k, v in wanted.items() if v is not None and getattr(config, k) != v}
    if not changes:
        return model
    config = dataclasses.replace(config, **changes)
    # No random initialisation (its weights are copied over): the random stream, and so every
    # seeded run, is the same whether or not the rates changed.
    new = build_empty(lambda: arch.build(config), next(model.parameters()).dtype)
    new.load_state_dict(model.state_dict())
    return new.train(model.training)


def with_new_head(
    model: nn.Module,
    num_classes: int,
    *,
    embed_dropout: float | None = None,
    final_dropout: float | None = None,
) -> nn.Module:
    """The same model with a fresh Keras-initialized head for ``num_classes`` (2 = one sigmoid
    unit) and the given dropout rates where its config has them; other weights are copied."""
    head_module(model)  # a clear error for a model without a head
    new = arch_of(model).with_head(model, num_classes)
    return with_dropout(new, embed_dropout, final_dropout)


def freeze(model: nn.Module, trainable: Sequence[str]) -> list[nn.Parameter]:
    """requires_grad only for the named top-level layers; returns the parameters that train.
    (A converted model's parameters are exactly Keras' weights: nothing else to hold back.)"""
    params = []
    for name, p in model.named_parameters():
        on = name.split(".")[0] in trainable
        p.requires_grad_(on)
        if on:
            params.append(p)
    return params


def train_mode(model: nn.Module, trainable: Sequence[str]) -> nn.Module:
    """Training mode, except FROZEN_INFERENCE layers outside the trainable top-level layers."""
    model.train()
    for name, module in model.named_children():
        if name not in trainable:
            for sub in module.modules():
                if isinstance(sub, FROZEN_INFERENCE):
                    sub.eval()
    return model


def _tensor(a: np.ndarray, like: nn.Module | None = None) -> Tensor:
    """An array as a tensor on ``like``'s device, floats in its dtype."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    if like is not None:
        p = next(like.parameters())
        t = t.to(device=p.device, dtype=p.dtype if t.is_floating_point() else t.dtype)
    return t


def batch_loss(model: nn.Module, tap: LogitsTap, task: str, ids: Tensor, y: Tensor) -> Tensor:
    """Keras' loss for the batch: crossentropy from the logits behind the output activation."""
    probs = model(ids)
    return LOSSES[task](probs, y.to(probs.dtype), logits=tap.value)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    tap: LogitsTap,
    task: str,
    ids: np.ndarray,
    y: np.ndarray,
    *,
    context: Context | None = None,
) -> float:
    """Validation loss in eval mode (dropout off), the whole split as one batch. Across
    processes each scores its shard and the sum is all-reduced: every rank gets rank 0's value,
    so early stopping decides alike everywhere."""
    model.eval()
    ctx = context or Context()
    if not ctx.distributed:
        return float(batch_loss(model, tap, task, _tensor(ids, model), _tensor(y, model)))
    rows = ctx.shard(np.arange(len(ids)))
    dtype = next(model.parameters()).dtype
    local = torch.zeros((), dtype=dtype)
    if len(rows):
        probs = model(_tensor(ids[rows], model))
        target = _tensor(y[rows], model).to(probs.dtype)
        local = LOSSES[task](probs, target, logits=tap.value, reduce=False).sum()
    return float(ctx.sum(local) / len(ids))


def predict(model: nn.Module, ids: np.ndarray, batch_size: int = RUN_BATCH_SIZE) -> np.ndarray:
    """Probabilities (N, outputs) in eval mode, float64 (the metrics' precision)."""
    return run_ids(model, ids, batch_size=batch_size, dtype=torch.float64)["probs"]


@dataclass
class History:
    """Per stage: the loss of every training batch, and per epoch train and val losses."""

    stages: list[dict[str, Any]] = field(default_factory=list)


def _progress(total: int, desc: str, enabled: bool | None, initial: int = 0) -> Any:
    from tqdm.auto import tqdm  # imported here: `import parity` stays light

    # tqdm's disable=None: shown on a terminal only
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="epoch",
        disable=None if enabled is None else not enabled,
        leave=False,
    )


@dataclass
class Session:
    """What a run carries across its stages: the processes (``context``), the checkpointer,
    the stages finished, the optimizer steps taken, and the in-stage state of a checkpoint being
    resumed (consumed by the stage it was written in)."""

    context: Context = field(default_factory=Context)
    checkpointer: Checkpointer | None = None
    finished: list[dict[str, Any]] = field(default_factory=list)
    global_step: int = 0
    in_stage: dict[str, Any] | None = None

    def save(self, model: nn.Module, stage: int, in_stage: dict[str, Any] | None) -> None:
        """A checkpoint at this point of stage ``stage`` (``in_stage`` None: at its start)."""
        if self.checkpointer is None:
            return
        state = {
            "model": _cpu(model.state_dict()),
            "history": self.finished,
            "stage": stage,
            "global_step": self.global_step,
            "in_stage": in_stage,
        }
        self.checkpointer.save(state)


def _cpu(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _shard_loss(
    net: nn.Module,
    tap: LogitsTap,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    idx: np.ndarray,
    context: Context,
) -> tuple[Tensor, bool]:
    """This rank's part of the global batch's mean loss: the sum over its shard / the global
    batch size (a single process: Keras' mean, as before). Returns (loss, shard was empty);
    an empty shard runs one example at weight 0, as DDP needs every rank in every step."""
    model = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
    if not context.distributed:
        return batch_loss(net, tap, task, _tensor(x[idx], model), _tensor(y[idx], model)), False
    local = context.shard(idx)
    empty = len(local) == 0
    rows = idx[:1] if empty else local
    probs = net(_tensor(x[rows], model))
    target = _tensor(y[rows], model).to(probs.dtype)
    per = LOSSES[task](probs, target, logits=tap.value, reduce=False)
    return per.sum() * ((0.0 if empty else 1.0) / len(idx)), empty


def _train_mode(net: nn.Module, model: nn.Module, trainable: Sequence[str]) -> None:
    net.train()  # the DDP wrapper's own flag
    train_mode(model, trainable)


def train_stage(
    model: nn.Module,
    data: TaskData,
    stage: Stage,
    stage_index: int,
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    seed: int,
    progress: bool | None = None,
    sparse_embeddings: bool = True,
    balanced: int | None = None,
    session: Session | None = None,
) -> dict[str, Any]:
    """One stage: fresh Adam(clipnorm=1) on the stage's layers, early stopping on val loss,
    best weights restored. Returns the stage's curves. ``progress``: a tqdm bar per stage
    (None: on a terminal only). ``balanced``: examples per epoch drawn class-balanced, as
    DeepMoji does (stages.balanced_order); None: one pass over the training split.
    ``session``: the processes this stage runs on, its checkpointer, and the checkpointed state
    to resume the stage from (parity.train.distributed; default: one process, no checkpoints).
    """
    session = session or Session()
    ctx = session.context
    arch = arch_of(model)
    params = freeze(model, stage.layers)
    opt = optim.Adam(params, learning_rate=stage.lr, clipnorm=DEEPMOJI_CLIPNORM)
    tap = LogitsTap(head_module(model))
    # Keras 3 on TensorFlow: per-occurrence embedding gradients (see parity.optim)
    lookups = optim.track_embeddings(model) if sparse_embeddings else []
    # each trainable embedding weight once (a weight may be shared), in module order
    embeddings = {id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Embedding)}
    tracked = [w for w in embeddings.values() if w.requires_grad] if sparse_embeddings else []
    net = ctx.wrap(model)
    x, y = data.split("train")
    stopper = EarlyStopping(patience)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    record: dict[str, Any] = {"stage": stage.name, "layers": list(stage.layers), "lr": stage.lr}
    record.update(batch_loss=[], train_loss=[], val_loss=[])
    first_epoch, first_step, seen, total = 0, 0, 0, 0.0
    resume, session.in_stage = session.in_stage, None
    if resume is not None:  # the checkpoint was written inside this stage
        opt.load_state_dict(resume["optimizer"])
        stopper.best, stopper.best_epoch, stopper.wait = resume["stopper"]
        best_state = {k: v.to(ctx.device) for k, v in resume["best_state"].items()}
        record = resume["record"]
        first_epoch, first_step = resume["epoch"], resume["step"]
        seen, total = resume["seen"], resume["total"]

    def snapshot(epoch: int, step: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "step": step,
            "seen": seen,
            "total": total,
            "optimizer": opt.state_dict(),
            "stopper": (stopper.best, stopper.best_epoch, stopper.wait),
            "best_state": _cpu(best_state),
            "record": record,
        }

    bar = _progress(epochs, stage.name, progress if ctx.is_main else False, first_epoch)
    try:
        for epoch in range(first_epoch, epochs):
            _train_mode(net, model, stage.layers)
            order = (
                epoch_order(seed, stage_index, epoch, len(x))
                if balanced is None
                else balanced_order(seed, stage_index, epoch, y, balanced)
            )
            for step, idx in enumerate(batches(order, batch_size)):
                if epoch == first_epoch and step < first_step:
                    continue  # done before the checkpoint this run resumed from
                opt.zero_grad(set_to_none=True)
                loss, empty = _shard_loss(net, tap, data.task, x, y, idx, ctx)
                loss.backward()
                if empty:
                    drop_occurrences(tracked)
                ctx.gather_occurrences(tracked)
                opt.step()
                value = ctx.sum(loss.detach()).item() if ctx.distributed else loss.item()
                record["batch_loss"].append(value)
                seen, total = seen + len(idx), total + value * len(idx)
                session.global_step += 1
                if session.checkpointer is not None:
                    session.checkpointer.after_step(
                        session.global_step,
                        lambda e=epoch, s=step: session.save(
                            model, stage_index, snapshot(e, s + 1)
                        ),
                    )
            val = evaluate_loss(model, tap, data.task, *data.split("val"), context=ctx)
            record["train_loss"].append(total / seen)
            record["val_loss"].append(val)
            improved, stop = stopper.update(val, epoch)
            if improved:
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            bar.update(1)
            bar.set_postfix(train=f"{total / seen:.4f}", val=f"{val:.4f}")
            seen, total = 0, 0.0
            if stop:
                break
            if epoch + 1 < epochs:
                session.save(model, stage_index, snapshot(epoch + 1, 0))
    finally:
        bar.close()
        tap.remove()
        for handle in lookups:
            handle.remove()
        drop_occurrences(tracked)
        del net  # its DDP reducer holds hooks on this stage's parameters
    model.load_state_dict(best_state)
    freeze(model, arch.layer_groups(model))
    record["best_epoch"] = stopper.best_epoch + 1
    record["best_val_loss"] = stopper.best
    return record


def run_settings(**settings: Any) -> dict[str, Any]:
    """The settings a checkpoint must match to be resumed (plain values only)."""
    return {k: v for k, v in settings.items() if isinstance(v, str | int | float | bool | None)}


def finetune(
    model: nn.Module,
    data: TaskData,
    method: str = "chain-thaw",
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float | None = None,
    patience: int = DEFAULT_PATIENCE,
    seed: int = 0,
    new_head: bool = True,
    embed_dropout: float | None = DEEPMOJI_FINETUNE_EMBED_DROPOUT,
    final_dropout: float | None = DEEPMOJI_FINETUNE_FINAL_DROPOUT,
    progress: bool | None = None,
    sparse_embeddings: bool = True,
    balanced: int | None = None,
    context: Context | None = None,
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
) -> tuple[nn.Module, History]:
    """Fine-tune ``model`` on ``data`` with DeepMoji's ``method``; returns (model, history).

    ``new_head=True`` trains a copy with a new head and leaves ``model`` as it is;
    ``new_head=False`` trains ``model`` itself, whose head must already fit the task (used to
    compare with a Keras run that made the head). Dropout rates default to DeepMoji's
    fine-tuning ones, for architectures that have them (``dropout_fields``); others keep theirs.
    ``sparse_embeddings``: embedding gradients per token occurrence, as Keras 3 on TensorFlow
    sees them (parity.optim.track_embeddings); False = dense, as tf.keras (Keras 2) sees them.
    ``balanced``: DeepMoji's class-balanced epochs of that many examples (binary tasks).

    ``context``: the processes of a data-parallel run and this one's device
    (parity.train.distributed; default one process on the model's CPU). ``checkpointer``: writes
    the run's state (parity.train.checkpoint); with ``resume`` the run continues from its
    checkpoint when there is one, and ends where an uninterrupted run ends.
    """
    ctx = context or Context()
    torch.manual_seed(seed)
    if new_head:
        model = with_new_head(
            model, data.num_classes, embed_dropout=embed_dropout, final_dropout=final_dropout
        )
    if method == "new":
        keras_init_(model)
    model.to(ctx.device)
    ctx.seed_dropout(seed)
    arch = arch_of(model)
    history = History()
    stages = plan(arch.layer_groups(model), arch.head(model), method, lr)
    session = Session(ctx, checkpointer)
    first = 0
    if checkpointer is not None:
        checkpointer.run = {
            **run_settings(
                method=method,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                patience=patience,
                seed=seed,
                new_head=new_head,
                embed_dropout=embed_dropout,
                final_dropout=final_dropout,
                sparse_embeddings=sparse_embeddings,
                balanced=balanced,
                task=data.task,
                num_classes=data.num_classes,
                train_records=len(data.ids["train"]),
            ),
            **checkpointer.run,
        }
        state = checkpointer.load() if resume else None
        if state is not None:
            first = _resume(model, state, session, ctx, seed)
    history.stages = session.finished
    for i, stage in enumerate(stages[first:], first):
        session.finished.append(
            train_stage(
                model,
                data,
                stage,
                i,
                epochs=epochs,
                batch_size=batch_size,
                patience=patience,
                seed=seed,
                progress=progress,
                sparse_embeddings=sparse_embeddings,
                balanced=balanced,
                session=session,
            )
        )
        session.save(model, i + 1, None)
    return model.eval(), history


def _resume(
    model: nn.Module, state: dict[str, Any], session: Session, ctx: Context, seed: int
) -> int:
    """Load a checkpoint into the run; returns the stage to continue with."""
    model.load_state_dict(state["model"])
    session.finished = list(state["history"])
    session.global_step = state["global_step"]
    session.in_stage = state["in_stage"]
    rngs = state["rng"]
    if len(rngs) == ctx.world_size:
        set_rng_state(rngs[ctx.rank], ctx.device)
    else:  # resumed on another number of processes: same data order, new dropout streams
        torch.manual_seed(seed + state["global_step"])
        ctx.seed_dropout(seed + state["global_step"])
    return state["stage"]
