"""The optimizer state a Keras file saved (Adam's moments and step), read without torch; the
optimizer resuming from it is parity.train.resume.load_keras_optimizer.

Why: a full Keras model file carries its optimizer (class, hyper-parameters, iteration count and
one or more slots per trainable weight). Starting PyTorch with fresh moments restarts Adam's bias
correction and throws away its second-moment estimates; Keras would have gone on from them.

The file is read by parity.keras.read (``training_state=True``), which knows where each format
keeps the state:

- Keras 3 ``.keras``: the compile config's optimizer; ``optimizer/vars/0..n`` in the weights:
  iteration, learning_rate, then per weight (momentum, velocity).
- legacy HDF5 full model (tf.keras 2.x, Keras 3's legacy writer): the training_config's
  optimizer_config and ``optimizer_weights`` in weight_names order: the iteration (and Keras 3:
  learning_rate), then per weight (m, v).

Slots follow model.trainable_variables, which is the order of the Keras weights in the model's
mapping table (arch_of(model).mapping(model)) for pairs and generic models alike; rows that fill
a buffer (moving statistics) or a constant (an LSTM's bias_hh) have no slot. Adam and AdamW are
supported (their slots are per weight, interleaved); other optimizers raise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from parity.errors import ConversionError
from parity.keras.read import KerasFile, read_keras_file

#: Optimizers whose file state we map: class -> slot names per weight, in Keras' order.
SLOTS: dict[str, tuple[str, ...]] = {
    "Adam": ("momentum", "velocity"),
    "AdamW": ("momentum", "velocity"),
}
#: Prefix tf.keras puts before built-in optimizer class names in saved configs.
TF_KERAS_CLASS_PREFIX = "Custom>"
#: Name part of the learning-rate variable, where the file names its optimizer variables.
LEARNING_RATE_VARIABLE = "learning_rate"


@dataclass
class KerasOptimizerState:
    class_name: str
    config: dict[str, Any]
    iterations: int
    learning_rate: float | None
    slots: list[np.ndarray]  # per-weight arrays, file order, scalars removed


def optimizer_state(kfile: KerasFile) -> KerasOptimizerState:
    """The optimizer state of a file read with ``training_state=True``.

    Leading scalars are the iteration count and (Keras 3) the learning-rate variable."""
    if kfile.optimizer_config is None or "class_name" not in kfile.optimizer_config:
        raise ConversionError(f"{kfile.path}: no optimizer in the file (saved uncompiled?)")
    if not kfile.optimizer_weights:
        raise ConversionError(f"{kfile.path}: no optimizer state (saved without the optimizer)")
    arrays = [(w.name, w.array) for w in kfile.optimizer_weights]
    scalars = [(n, a) for n, a in arrays if a.ndim == 0]
    slots = [a for _, a in arrays if a.ndim > 0]
    iterations = int(scalars[0][1]) if scalars else 0
    lr = next((float(a) for n, a in scalars if LEARNING_RATE_VARIABLE in n), None)
    if lr is None and len(scalars) > 1 and np.issubdtype(scalars[1][1].dtype, np.floating):
        lr = float(scalars[1][1])  # Keras 3's variables are unnamed: the second scalar
    cfg = kfile.optimizer_config
    name = str(cfg["class_name"]).removeprefix(TF_KERAS_CLASS_PREFIX)
    return KerasOptimizerState(name, dict(cfg.get("config") or {}), iterations, lr, slots)


def read_optimizer_state(path: str | os.PathLike[str]) -> KerasOptimizerState:
    """The optimizer state stored in a Keras file (.keras or legacy full-model .h5)."""
    return optimizer_state(read_keras_file(path, training_state=True))
