"""The training loop: a new head, frozen layers, Keras' loss from the logits, one stage at a time.

Works on any converted model through its architecture (parity.arch.arch_of): the head to replace
and its new Keras-initialized version, the layer groups chain-thaw walks and the parameters the
mapping holds constant. Every stage uses ``parity.optim.Adam(clipnorm=1)`` (DeepMoji's
optimizer) built afresh, as DeepMoji recompiles, and the loss Keras computes for a
sigmoid/softmax output: the crossentropy from the logits behind it (``LOGITS``, read by a forward
hook on the head; the model is not modified).

Multi-class one-hot data trains one softmax model (DeepMoji trains one binary model per class
there; this is cheaper, and a documented difference). An epoch is one pass over the training
split (DeepMoji samples 5000 balanced examples per "epoch").
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
from parity.init import keras_init_
from parity.layers import BatchNormalization, Dense
from parity.train.data import TaskData
from parity.train.stages import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_PATIENCE,
    EarlyStopping,
    Stage,
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

#: Layers that run in inference mode while frozen, as Keras' BatchNormalization does when its
#: trainable is False: it normalises with, and does not update, its moving statistics.
FROZEN_INFERENCE: tuple[type[nn.Module], ...] = (
    BatchNormalization,
    nn.modules.batchnorm._BatchNorm,
)

#: Config fields holding the dropout rates fine-tuning sets (DeepMoji's). A model whose config
#: has none of them (a generic conversion) keeps the dropout rates its file has.
DROPOUT_FIELDS = ("embed_dropout", "final_dropout")


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
        return model.get_submodule(arch_of(model).head(model))
    except (ValueError, TypeError) as exc:
        raise NotFineTunable(str(exc)) from exc


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The Embedding the model's token ids go into: its first weighted layer."""
    groups = arch_of(model).layer_groups(model)
    first = model.get_submodule(groups[0]) if groups else None
    if not isinstance(first, nn.Embedding):
        found = f"{groups[0]} ({type(first).__name__})" if groups else "no weighted layer"
        raise NotFineTunable(f"the model does not take token ids: its first layer is {found}")
    return first


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
    """The same weights (a copy) in a model rebuilt with other dropout rates, for the rates its
    config has (DROPOUT_FIELDS); a model without them is returned as it is."""
    config = model.config
    names = {f.name for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else ()
    wanted = dict(zip(DROPOUT_FIELDS, (embed_dropout, final_dropout), strict=True))
    changes = {
        k: v for k, v in wanted.items() if v is not None and k in names and getattr(config, k) != v
    }
    if not changes:
        return model
    arch = arch_of(model)
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
    """requires_grad only for the named top-level layers, never for the parameters the mapping
    holds constant (arch.fixed_parameters); returns the parameters that train."""
    fixed = arch_of(model).fixed_parameters(model)
    params = []
    for name, p in model.named_parameters():
        on = name.split(".")[0] in trainable and name not in fixed
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
    t = torch.from_numpy(np.ascontiguousarray(a))
    if like is not None and t.is_floating_point():
        t = t.to(next(like.parameters()).dtype)
    return t


def batch_loss(model: nn.Module, tap: LogitsTap, task: str, ids: Tensor, y: Tensor) -> Tensor:
    """Keras' loss for the batch: crossentropy from the logits behind the output activation."""
    probs = model(ids)
    return LOSSES[task](probs, y.to(probs.dtype), logits=tap.value)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, tap: LogitsTap, task: str, ids: np.ndarray, y: np.ndarray
) -> float:
    """Validation loss in eval mode (dropout off), the whole split as one batch."""
    model.eval()
    return float(batch_loss(model, tap, task, _tensor(ids), _tensor(y, model)))


@torch.no_grad()
def predict(model: nn.Module, ids: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities (N, outputs) in eval mode, float64."""
    model.eval()
    out = [
        model(_tensor(ids[i : i + batch_size])).double().numpy()
        for i in range(0, len(ids), batch_size)
    ]
    return np.concatenate(out)


@dataclass
class History:
    """Per stage: the loss of every training batch, and per epoch train and val losses."""

    stages: list[dict[str, Any]] = field(default_factory=list)


def _progress(total: int, desc: str, enabled: bool | None) -> Any:
    from tqdm.auto import tqdm  # imported here: `import parity` stays light

    # tqdm's disable=None: shown on a terminal only
    return tqdm(
        total=total,
        desc=desc,
        unit="epoch",
        disable=None if enabled is None else not enabled,
        leave=False,
    )


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
) -> dict[str, Any]:
    """One stage: fresh Adam(clipnorm=1) on the stage's layers, early stopping on val loss,
    best weights restored. Returns the stage's curves. ``progress``: a tqdm bar per stage
    (None: on a terminal only)."""
    arch = arch_of(model)
    params = freeze(model, stage.layers)
    opt = optim.Adam(params, learning_rate=stage.lr, clipnorm=DEEPMOJI_CLIPNORM)
    tap = LogitsTap(head_module(model))
    # Keras 3 on TensorFlow: per-occurrence embedding gradients (see parity.optim)
    lookups = optim.track_embeddings(model) if sparse_embeddings else []
    x, y = data.split("train")
    stopper = EarlyStopping(patience)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    record: dict[str, Any] = {"stage": stage.name, "layers": list(stage.layers), "lr": stage.lr}
    record.update(batch_loss=[], train_loss=[], val_loss=[])
    bar = _progress(epochs, stage.name, progress)
    try:
        for epoch in range(epochs):
            train_mode(model, stage.layers)
            seen, total = 0, 0.0
            for idx in batches(epoch_order(seed, stage_index, epoch, len(x)), batch_size):
                opt.zero_grad(set_to_none=True)
                loss = batch_loss(model, tap, data.task, _tensor(x[idx]), _tensor(y[idx], model))
                loss.backward()
                opt.step()
                record["batch_loss"].append(loss.item())
                seen, total = seen + len(idx), total + record["batch_loss"][-1] * len(idx)
            val = evaluate_loss(model, tap, data.task, *data.split("val"))
            record["train_loss"].append(total / seen)
            record["val_loss"].append(val)
            improved, stop = stopper.update(val, epoch)
            if improved:
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            bar.update(1)
            bar.set_postfix(train=f"{total / seen:.4f}", val=f"{val:.4f}")
            if stop:
                break
    finally:
        bar.close()
        tap.remove()
        for handle in lookups:
            handle.remove()
    model.load_state_dict(best_state)
    freeze(model, arch.layer_groups(model))
    record["best_epoch"] = stopper.best_epoch + 1
    record["best_val_loss"] = stopper.best
    return record


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
) -> tuple[nn.Module, History]:
    """Fine-tune ``model`` on ``data`` with DeepMoji's ``method``; returns (model, history).

    ``new_head=True`` trains a copy with a new head and leaves ``model`` as it is;
    ``new_head=False`` trains ``model`` itself, whose head must already fit the task (used to
    compare with a Keras run that made the head). Dropout rates default to DeepMoji's
    fine-tuning ones, for models whose config has them (DROPOUT_FIELDS); others keep theirs.
    ``sparse_embeddings``: embedding gradients per token occurrence, as Keras 3 on TensorFlow
    sees them (parity.optim.track_embeddings); False = dense, as tf.keras (Keras 2) sees them.
    """
    torch.manual_seed(seed)
    if new_head:
        model = with_new_head(
            model, data.num_classes, embed_dropout=embed_dropout, final_dropout=final_dropout
        )
    if method == "new":
        keras_init_(model)
    arch = arch_of(model)
    history = History()
    stages = plan(arch.layer_groups(model), arch.head(model), method, lr)
    for i, stage in enumerate(stages):
        history.stages.append(
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
            )
        )
    return model.eval(), history
