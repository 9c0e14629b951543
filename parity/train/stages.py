"""DeepMoji's fine-tuning methods as stage plans, the batch order and early stopping.

Both sides of the parity evidence use this module (reference_keras/finetune.py runs the same
plan, order and stopping rule in Keras), so only the framework differs between them.

- ``last``: train the new head only (lr 1e-3).
- ``full``: train everything (lr 1e-4).
- ``new``: the same architecture from scratch with Keras' initializers, lr 1e-3.
- ``chain-thaw``: the new head first (lr 1e-3), then each other layer alone from the first
  (embedding) on, then all layers (lr 1e-4); every stage stops early on the validation loss and
  restores its best weights before the next stage starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from parity.conventions import DEEPMOJI_LR_BODY, DEEPMOJI_LR_HEAD

METHODS = ("last", "full", "new", "chain-thaw")
#: Learning rate per method (deepmoji/finetuning.py); chain-thaw's head stage uses LR_HEAD.
METHOD_LR: dict[str, float] = {
    "last": DEEPMOJI_LR_HEAD,
    "new": DEEPMOJI_LR_HEAD,
    "full": DEEPMOJI_LR_BODY,
    "chain-thaw": DEEPMOJI_LR_BODY,
}
DEFAULT_EPOCHS = 10
DEFAULT_PATIENCE = 5
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Stage:
    name: str
    layers: tuple[str, ...]  # the layers trained in this stage; the rest are frozen
    lr: float


def plan(layers: Sequence[str], head: str, method: str, lr: float | None = None) -> list[Stage]:
    """The stages of ``method`` over ``layers`` (weighted layers in model order): which layers
    train, at which learning rate. ``lr`` replaces the method's (chain-thaw: the body stages')."""
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


def balanced_order(
    seed: int, stage: int, epoch: int, targets: np.ndarray, epoch_size: int
) -> np.ndarray:
    """DeepMoji's class-balanced epoch (finetuning.py ``sampling_generator``, upsample=False)
    for a binary task: ``epoch_size / 2`` examples drawn with replacement from each class, then
    shuffled. Seeded like epoch_order, so every process (and a resumed run) draws the same."""
    labels = np.asarray(targets).reshape(len(targets), -1)
    if labels.shape[1] != 1:
        raise ValueError("balanced sampling needs a binary task (one 0/1 target per example)")
    if epoch_size < 2 or epoch_size % 2:
        raise ValueError(f"a balanced epoch takes an even number of examples, not {epoch_size}")
    rng = np.random.default_rng([seed, stage, epoch])
    half = epoch_size // 2
    classes = [np.flatnonzero(labels[:, 0] == value) for value in (0, 1)]
    if any(len(c) == 0 for c in classes):
        raise ValueError("balanced sampling needs examples of both classes in the training split")
    order = np.concatenate([rng.choice(c, half, replace=True) for c in classes])
    return order[rng.permutation(len(order))]


def batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive slices of ``order``; the last one may be short (as Keras' fit)."""
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
