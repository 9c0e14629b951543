"""Fine-tune a converted model as Keras (and DeepMoji) would: ``parity finetune``.

DeepMoji's four methods (deepmoji/finetuning.py), on a converted model with a new head:

- ``last``: train the new head only (lr 1e-3).
- ``full``: train everything (lr 1e-4).
- ``new``: the same architecture from scratch with Keras' initializers (``keras_init_``), lr 1e-3.
- ``chain-thaw``: the new head first (lr 1e-3), then each other layer alone from the first
  (embedding) on, then all layers (lr 1e-4); every stage stops early on the validation loss and
  restores its best weights before the next stage starts.

Every stage uses ``parity.optim.Adam(clipnorm=1)`` (DeepMoji's optimizer) built afresh, as
DeepMoji recompiles, and the loss Keras computes for a sigmoid/softmax output: the crossentropy
from the logits behind it (captured by a hook on the head, the models are not modified).
The new head is Keras-initialized (glorot_uniform kernel, zero bias), as a fresh Keras Dense is.

Batches come in the order ``epoch_order(seed, stage, epoch, n)`` gives, which
reference_keras/finetune.py uses too, so both sides see the same data in the same order.

Metrics as DeepMoji reports them (``DATASET_METRICS``): accuracy for SS-Youtube, SS-Twitter;
F1 for SE0714, Olympic, PsychExp, SCv1, SCv2-GEN, and (our choice: imbalanced, not in the paper)
kaggle-insults. F1 is the positive class' F1 with the decision threshold chosen on the validation
split; for several classes it is the average over classes of that binary F1 ("class average").
Multi-label data (several labels per text: SE0714, Olympic) is fine-tuned as DeepMoji's
class-average fine-tuning does: one binary model per class. One-hot multi-class data (PsychExp)
trains one softmax model and scores each class' probability (DeepMoji trains one binary model per
class there too; this is cheaper, and a documented difference).

Differences from DeepMoji kept on purpose: an epoch is one pass over the training split (DeepMoji
samples 5000 balanced examples per "epoch"); the token encoder is parity.text's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from parity import losses, optim
from parity.api import load, load_keras, save
from parity.conventions import (
    DEEPMOJI_CLIPNORM,
    DEEPMOJI_FINETUNE_EMBED_DROPOUT,
    DEEPMOJI_FINETUNE_FINAL_DROPOUT,
    DEEPMOJI_LR_BODY,
    DEEPMOJI_LR_HEAD,
)
from parity.init import keras_init_
from parity.registry import pair_of
from parity.text import encode, load_vocabulary

METHODS = ("last", "full", "new", "chain-thaw")
#: Learning rate per method (deepmoji/finetuning.py); chain-thaw's head stage uses LR_HEAD.
METHOD_LR: dict[str, float] = {
    "last": DEEPMOJI_LR_HEAD,
    "new": DEEPMOJI_LR_HEAD,
    "full": DEEPMOJI_LR_BODY,
    "chain-thaw": DEEPMOJI_LR_BODY,
}
#: Registered pair -> its classifier layer (replaced by a new head for the task).
HEADS: dict[str, str] = {"deepmoji": "softmax", "embedding_dense": "dense"}
#: DeepMoji benchmark -> the metric the paper reports for it (kaggle-insults: our choice).
DATASET_METRICS: dict[str, str] = {
    "SS-Youtube": "accuracy",
    "SS-Twitter": "accuracy",
    "SE0714": "f1",
    "Olympic": "f1",
    "PsychExp": "f1",
    "SCv1": "f1",
    "SCv2-GEN": "f1",
    "kaggle-insults": "f1",
}
#: Decision thresholds tried on the validation split for F1.
F1_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)
DEFAULT_EPOCHS = 10
DEFAULT_PATIENCE = 5
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAXLEN = 50
SPLITS = ("train", "val", "test")


# --- data ------------------------------------------------------------------------------------


@dataclass
class TaskData:
    """Encoded splits: ids (N, T) int64 and targets (N, C) float, C = the head's outputs."""

    ids: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    task: str  # "binary" | "multiclass" | "multilabel"
    num_classes: int

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.ids[name], self.targets[name]


def read_jsonl(path: str | os.PathLike[str]) -> dict[str, tuple[list[str], list[Any]]]:
    """DeepMoji benchmark JSONL ({"text", "label", "split"} a line) -> {split: (texts, labels)}."""
    splits: dict[str, tuple[list[str], list[Any]]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if not {"text", "label", "split"} <= set(rec):
                raise ValueError(f"{path}:{n}: a record needs text, label and split")
            texts, labels = splits.setdefault(rec["split"], ([], []))
            texts.append(rec["text"])
            labels.append(rec["label"])
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} split")
    return splits


def _task_of(labels: list[Any]) -> tuple[str, int]:
    if isinstance(labels[0], list):
        arr = np.asarray(labels)
        return ("multiclass" if (arr.sum(1) == 1).all() else "multilabel"), arr.shape[1]
    n = int(max(labels)) + 1
    return ("binary" if n <= 2 else "multiclass"), max(n, 2)


def _targets(labels: list[Any], task: str, num_classes: int) -> np.ndarray:
    if task == "binary":
        return np.asarray(labels, dtype=np.float64).reshape(-1, 1)
    if isinstance(labels[0], list):
        return np.asarray(labels, dtype=np.float64)
    return np.eye(num_classes)[np.asarray(labels, dtype=np.int64)]


def encode_dataset(
    splits: dict[str, tuple[list[str], list[Any]]],
    vocabulary: dict[str, int],
    maxlen: int,
    vocab_size: int | None = None,
) -> TaskData:
    """Texts -> ids (parity.text.encode: Keras pad_sequences defaults), labels -> targets."""
    task, num_classes = _task_of(splits["train"][1])
    ids = {s: encode(splits[s][0], vocabulary, maxlen, vocab_size=vocab_size) for s in SPLITS}
    targets = {s: _targets(splits[s][1], task, num_classes) for s in SPLITS}
    return TaskData({s: v.astype(np.int64) for s, v in ids.items()}, targets, task, num_classes)


def binary_view(data: TaskData, column: int) -> TaskData:
    """One class of a multi-label task as a binary task (DeepMoji's class-average tuning)."""
    targets = {s: t[:, column : column + 1] for s, t in data.targets.items()}
    return TaskData(data.ids, targets, "binary", 2)


# --- model -----------------------------------------------------------------------------------


def head_name(model: nn.Module) -> str:
    return HEADS[pair_of(model).name]


def with_new_head(
    model: nn.Module,
    num_classes: int,
    *,
    embed_dropout: float | None = None,
    final_dropout: float | None = None,
) -> nn.Module:
    """The same model with a fresh Keras-initialized head for ``num_classes`` (2 = one sigmoid
    unit for DeepMoji) and the given dropout rates; every other weight is copied."""
    pair = pair_of(model)
    head = HEADS[pair.name]
    changes: dict[str, Any] = {"num_classes": num_classes}
    for name, value in (("embed_dropout", embed_dropout), ("final_dropout", final_dropout)):
        if value is not None and hasattr(model.config, name):
            changes[name] = value
    config = dataclasses.replace(model.config, **changes)
    dtype = next(model.parameters()).dtype
    new = pair.build(config).to(dtype)
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(f"{head}.")}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith(f"{head}.") for k in missing), (missing, unexpected)
    keras_init_(getattr(new, head))
    return new


def with_dropout(model: nn.Module, embed_dropout: float, final_dropout: float) -> nn.Module:
    """The same model (weights shared) rebuilt with other dropout rates (DeepMoji's config)."""
    config = dataclasses.replace(
        model.config, embed_dropout=embed_dropout, final_dropout=final_dropout
    )
    new = pair_of(model).build(config).to(next(model.parameters()).dtype)
    new.load_state_dict(model.state_dict())
    return new


def weighted_layers(model: nn.Module) -> list[str]:
    """Top-level submodules that hold parameters, in model order (Keras' layers with weights)."""
    return [n for n, m in model.named_children() if any(True for _ in m.parameters())]


@dataclass(frozen=True)
class Stage:
    name: str
    layers: tuple[str, ...]  # the layers trained in this stage; the rest are frozen
    lr: float


def plan(layers: Sequence[str], head: str, method: str, lr: float | None = None) -> list[Stage]:
    """The stages of ``method``: which layers train, at which learning rate.

    ``lr`` replaces the method's learning rate (for chain-thaw: the non-head stages)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    body_lr = METHOD_LR[method] if lr is None else lr
    everything = tuple(layers)
    plans: dict[str, Callable[[], list[Stage]]] = {
        "last": lambda: [Stage("head", (head,), body_lr)],
        "full": lambda: [Stage("all", everything, body_lr)],
        "new": lambda: [Stage("all", everything, body_lr)],
        "chain-thaw": lambda: [
            Stage("head", (head,), DEEPMOJI_LR_HEAD),
            *(Stage(name, (name,), body_lr) for name in layers if name != head),
            Stage("all", everything, body_lr),
        ],
    }
    return plans[method]()


def epoch_order(seed: int, stage: int, epoch: int, n: int) -> np.ndarray:
    """The order training examples are seen in; shared with the Keras reference."""
    return np.random.default_rng([seed, stage, epoch]).permutation(n)


def batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class EarlyStopping:
    """Keras EarlyStopping(monitor="val_loss", patience, restore_best_weights=True) semantics:
    improvement = strictly lower; stop after ``patience`` epochs without one."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = math.inf
        self.best_epoch = -1
        self.wait = 0

    def update(self, value: float, epoch: int) -> tuple[bool, bool]:
        """Returns (improved, stop)."""
        if value < self.best:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True, False
        self.wait += 1
        return False, self.wait >= self.patience


#: task -> Keras loss used by DeepMoji (binary_crossentropy for one sigmoid unit).
LOSSES: dict[str, Callable[..., Tensor]] = {
    "binary": losses.binary_crossentropy,
    "multilabel": losses.binary_crossentropy,
    "multiclass": losses.categorical_crossentropy,
}


class LogitsTap:
    """Keeps the head's output (the logits) of the last forward, as Keras' _keras_logits does."""

    def __init__(self, head: nn.Module) -> None:
        self.value: Tensor | None = None
        self._handle = head.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self.value = output

    def remove(self) -> None:
        self._handle.remove()


def batch_loss(model: nn.Module, tap: LogitsTap, task: str, ids: Tensor, y: Tensor) -> Tensor:
    """Keras' loss for the batch: crossentropy from the logits behind the output activation."""
    probs = model(ids)
    return LOSSES[task](probs, y.to(probs.dtype), logits=tap.value)


def fixed_parameters(model: nn.Module) -> set[str]:
    """Parameters with no Keras counterpart, fixed by the mapping table (the LSTMs' bias_hh,
    kept at zero: Keras has one bias, so training both would move the sum twice as fast)."""
    return {
        torch_name for keras_name, torch_name, _ in pair_of(model).mapping if keras_name is None
    }


def freeze(model: nn.Module, trainable: Sequence[str]) -> list[nn.Parameter]:
    """requires_grad only for the named top-level layers (never for fixed parameters);
    returns the parameters that train."""
    fixed = fixed_parameters(model)
    params = []
    for name, p in model.named_parameters():
        on = name.split(".")[0] in trainable and name not in fixed
        p.requires_grad_(on)
        if on:
            params.append(p)
    return params


def _tensor(a: np.ndarray, like: nn.Module | None = None) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    if like is not None and t.is_floating_point():
        t = t.to(next(like.parameters()).dtype)
    return t


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, tap: LogitsTap, task: str, ids: np.ndarray, y: np.ndarray
) -> float:
    """Validation loss in eval mode (dropout off), the whole split as one batch."""
    model.eval()
    return float(batch_loss(model, tap, task, _tensor(ids), _tensor(y, model)))


@torch.no_grad()
def predict(model: nn.Module, ids: np.ndarray, batch_size: int = 256) -> np.ndarray:
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
    progress: bool = True,
    sparse_embeddings: bool = True,
) -> dict[str, Any]:
    """One stage: fresh Adam(clipnorm=1) on the stage's layers, early stopping on val loss,
    best weights restored. Returns the stage's curves."""
    params = freeze(model, stage.layers)
    opt = optim.Adam(params, learning_rate=stage.lr, clipnorm=DEEPMOJI_CLIPNORM)
    tap = LogitsTap(getattr(model, head_name(model)))
    # Keras 3 on TensorFlow: per-occurrence embedding gradients (see parity.optim)
    lookups = optim.track_embeddings(model) if sparse_embeddings else []
    x, y = data.split("train")
    stopper = EarlyStopping(patience)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    record: dict[str, Any] = {"stage": stage.name, "layers": list(stage.layers), "lr": stage.lr}
    record.update(batch_loss=[], train_loss=[], val_loss=[])
    bar = _progress(epochs, f"{stage.name}", progress)
    try:
        for epoch in range(epochs):
            model.train()
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
    freeze(model, weighted_layers(model))
    record["best_epoch"] = stopper.best_epoch + 1
    record["best_val_loss"] = stopper.best
    return record


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm  # imported here: `import parity` stays cheap

    return tqdm(total=total, desc=desc, unit="epoch", disable=not enabled, leave=False)


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
    progress: bool = True,
    sparse_embeddings: bool = True,
) -> tuple[nn.Module, History]:
    """Fine-tune ``model`` on ``data`` with DeepMoji's ``method``; returns (model, history).

    ``new_head=False`` keeps the model's head (it must already fit the task: used to compare
    with a Keras run that made the head). Dropout rates default to DeepMoji's fine-tuning ones.
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
    history = History()
    for i, stage in enumerate(plan(weighted_layers(model), head_name(model), method, lr)):
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


# --- metrics ---------------------------------------------------------------------------------


def f1_binary(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum((pred == 1) & (y == 1)))
    fp = float(np.sum((pred == 1) & (y == 0)))
    fn = float(np.sum((pred == 0) & (y == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def tuned_f1(
    p_val: np.ndarray, y_val: np.ndarray, p_test: np.ndarray, y_test: np.ndarray
) -> tuple[float, float]:
    """Binary F1 on test at the threshold that maximises F1 on validation: (f1, threshold)."""
    scores = [f1_binary(y_val, (p_val >= t).astype(int)) for t in F1_THRESHOLDS]
    best = float(F1_THRESHOLDS[int(np.argmax(scores))])
    return f1_binary(y_test, (p_test >= best).astype(int)), best


def accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    if probs.shape[1] == 1:
        return float(np.mean((probs[:, 0] > 0.5) == (targets[:, 0] > 0.5)))
    return float(np.mean(probs.argmax(1) == targets.argmax(1)))


def class_average_f1(
    p: dict[str, np.ndarray], y: dict[str, np.ndarray]
) -> tuple[float, list[float]]:
    """Average over output columns of the val-tuned binary F1 (one column: the positive class)."""
    per = [
        tuned_f1(p["val"][:, c], y["val"][:, c], p["test"][:, c], y["test"][:, c])[0]
        for c in range(p["test"].shape[1])
    ]
    return float(np.mean(per)), per


def score(metric: str, p: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> dict[str, Any]:
    """The DeepMoji metric on test (and val, for reference), from probabilities per split."""
    if metric == "accuracy":
        return {
            "metric": metric,
            "test": accuracy(p["test"], y["test"]),
            "val": accuracy(p["val"], y["val"]),
        }
    f1, per_class = class_average_f1(p, y)
    return {"metric": metric, "test": f1, "per_class": per_class}


def metric_for(data_path: str | os.PathLike[str], task: str) -> str:
    """DeepMoji's metric for a known benchmark; otherwise F1 for multi-label, else accuracy."""
    stem = Path(data_path).stem
    return DATASET_METRICS.get(stem, "f1" if task == "multilabel" else "accuracy")


# --- outputs ---------------------------------------------------------------------------------


def plot_history(histories: dict[str, History], path: str | os.PathLike[str]) -> None:
    """Training curves (batch loss, epoch val loss) across stages, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(6 * len(histories), 4), squeeze=False)
    for ax, (name, hist) in zip(axes[0], histories.items(), strict=True):
        steps = 0
        for st in hist.stages:
            xs = np.arange(steps, steps + len(st["batch_loss"]))
            ax.plot(xs, st["batch_loss"], lw=0.6, alpha=0.6, label=f"{st['stage']} batch")
            per_epoch = len(st["batch_loss"]) // max(1, len(st["val_loss"]))
            ex = steps + per_epoch * np.arange(1, len(st["val_loss"]) + 1) - 1
            ax.plot(ex, st["val_loss"], "o-", ms=3, label=f"{st['stage']} val")
            steps += len(st["batch_loss"])
        ax.set_title(name)
        ax.set_xlabel("training step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- command line ----------------------------------------------------------------------------


def load_any(
    path: str | os.PathLike[str], arch: str | None = None, hard_sigmoid: str | None = None
) -> nn.Module:
    """A parity .safetensors file (parity.save) or any Keras file parity.load_keras reads."""
    with open(path, "rb") as f:
        magic = f.read(8)
    from parity.convert.read import HDF5_SIGNATURE, ZIP_SIGNATURE

    if magic.startswith(ZIP_SIGNATURE) or magic == HDF5_SIGNATURE:
        return load_keras(path, arch=arch, hard_sigmoid=hard_sigmoid)
    return load(path)


def _default_vocab(model_path: Path) -> Path | None:
    candidate = model_path.parent / "vocabulary.json"
    return candidate if candidate.is_file() else None


def run(args: argparse.Namespace) -> int:
    """`parity finetune`: load, encode, fine-tune, score, save model, report and plot."""
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_any(args.model, arch=args.arch, hard_sigmoid=args.hard_sigmoid)
    vocab_path = args.vocab or _default_vocab(Path(args.model))
    if vocab_path is None:
        raise FileNotFoundError(f"no vocabulary.json beside {args.model}; pass --vocab")
    vocab = load_vocabulary(vocab_path)
    maxlen = getattr(model.config, "seq_len", None) or args.maxlen
    try:
        splits = read_jsonl(args.data)
    except (ValueError, KeyError) as exc:  # a malformed data file: one line, no traceback
        print(f"parity: error: {args.data}: {exc}", file=sys.stderr)
        return 1
    data = encode_dataset(splits, vocab, maxlen, vocab_size=model.config.vocab_size)
    metric = args.metric or metric_for(args.data, data.task)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dropout = {} if args.dropout else {"embed_dropout": 0.0, "final_dropout": 0.0}
    options = dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        progress=not args.quiet,
        sparse_embeddings=args.sparse_embeddings,
        **dropout,
    )
    start = time.perf_counter()
    histories: dict[str, History] = {}
    if data.task == "multilabel":  # DeepMoji's class-average fine-tuning: one model per class
        columns = {}
        for c in range(data.num_classes):
            tuned, histories[f"class {c}"] = finetune(
                model, binary_view(data, c), args.method, **options
            )
            save(tuned, out / f"model-class{c}.safetensors")
            columns[c] = {s: predict(tuned, data.ids[s])[:, 0] for s in ("val", "test")}
        probs = {s: np.stack([columns[c][s] for c in columns], 1) for s in ("val", "test")}
        saved = [f"model-class{c}.safetensors" for c in columns]
    else:
        tuned, histories["model"] = finetune(model, data, args.method, **options)
        save(tuned, out / "model.safetensors")
        probs = {s: predict(tuned, data.ids[s]) for s in ("val", "test")}
        saved = ["model.safetensors"]
    result = score(metric, probs, data.targets)
    report = {
        "model": str(args.model),
        "data": str(args.data),
        "method": args.method,
        "task": data.task,
        "num_classes": data.num_classes,
        "records": {s: len(data.ids[s]) for s in SPLITS},
        "maxlen": maxlen,
        "options": {k: v for k, v in options.items() if k != "progress"},
        "dropout": bool(args.dropout),
        **result,
        "seconds": round(time.perf_counter() - start, 1),
        "saved": saved,
        "stages": {name: h.stages for name, h in histories.items()},
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_history(histories, out / "curve.png")
    print(f"{args.method} on {Path(args.data).stem}: test {metric} {result['test']:.4f} -> {out}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("finetune", help="fine-tune a converted model with DeepMoji's methods")
    p.add_argument("model", help="Keras file (.keras, .h5) or parity .safetensors")
    p.add_argument("--data", required=True, help="JSONL with text, label, split (train/val/test)")
    p.add_argument("--method", choices=METHODS, default="chain-thaw")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="per stage (max)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--lr", type=float, default=None, help="default: DeepMoji's for the method")
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE, help="early stopping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--maxlen", type=int, default=DEFAULT_MAXLEN, help="tokens per text")
    p.add_argument("--vocab", type=Path, default=None, help="default: vocabulary.json by MODEL")
    p.add_argument("--metric", choices=("accuracy", "f1"), default=None)
    p.add_argument("--no-dropout", dest="dropout", action="store_false", help="dropout off")
    p.add_argument("--arch", default=None, help="for Keras files: the registered pair")
    p.add_argument("--hard-sigmoid", choices=("keras2", "keras3"), default=None)
    p.add_argument("--out", default="finetune-out", help="directory for model, metrics, plot")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument(
        "--dense-embedding-gradients",
        dest="sparse_embeddings",
        action="store_false",
        help="train embeddings as tf.keras (Keras 2) does, not as Keras 3 on TensorFlow",
    )
    p.set_defaults(run=run)


if __name__ == "__main__":
    from parity.cli import main

    sys.exit(main(["finetune", *sys.argv[1:]]))
