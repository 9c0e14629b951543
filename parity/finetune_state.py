"""Resume Keras training in PyTorch: the optimizer state (Adam's moments and step) from a file.

Why: a full Keras model file carries its optimizer (class, hyper-parameters, iteration count and
one or more slots per trainable weight). Starting PyTorch with fresh moments restarts Adam's bias
correction and throws away its second-moment estimates; Keras would have gone on from them.

Where the state is, in the formats Keras writes (order = model.trainable_variables, which is the
order of the conversion table's Keras weights for our pairs):

- Keras 3 ``.keras``: ``config.json`` compile_config.optimizer; ``model.weights.h5``
  ``optimizer/vars/0..n``: iteration, learning_rate, then per weight (momentum, velocity).
- legacy HDF5 full model (tf.keras 2.x, Keras 3's legacy writer): ``training_config`` attribute
  (optimizer_config) and ``optimizer_weights`` with ``weight_names`` giving the order: the
  iteration (and Keras 3: learning_rate), then per weight (m, v).

Adam and AdamW are supported (their slots are per weight, interleaved); other optimizers raise.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from parity import optim
from parity.conventions import KERAS_V3_CONFIG, KERAS_V3_WEIGHTS
from parity.convert.read import HDF5_SIGNATURE, ZIP_SIGNATURE
from parity.convert.transforms import TRANSFORMS
from parity.errors import ConversionError
from parity.registry import pair_of

#: Optimizers whose file state we map: class -> slot names per weight, in Keras' order.
SLOTS: dict[str, tuple[str, ...]] = {
    "Adam": ("momentum", "velocity"),
    "AdamW": ("momentum", "velocity"),
}
#: Prefix tf.keras puts before built-in optimizer class names in saved configs.
TF_KERAS_CLASS_PREFIX = "Custom>"


@dataclass
class KerasOptimizerState:
    class_name: str
    config: dict[str, Any]
    iterations: int
    learning_rate: float | None
    slots: list[np.ndarray]  # per-weight arrays, file order, scalars removed


def _legacy(h5: h5py.File, path: str) -> KerasOptimizerState:
    if "optimizer_weights" not in h5:
        raise ConversionError(f"{path}: no optimizer_weights (saved without the optimizer)")
    cfg = json.loads(h5.attrs["training_config"])["optimizer_config"]
    group = h5["optimizer_weights"]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
    arrays = [(n, np.asarray(group[n])) for n in names]
    return _split(cfg, arrays)


def _keras_v3(zf: zipfile.ZipFile, path: str) -> KerasOptimizerState:
    cfg = json.loads(zf.read(KERAS_V3_CONFIG)).get("compile_config") or {}
    if not cfg.get("optimizer"):
        raise ConversionError(f"{path}: no optimizer in the compile config (saved uncompiled)")
    with h5py.File(io.BytesIO(zf.read(KERAS_V3_WEIGHTS)), "r") as h5:
        if "optimizer" not in h5:
            raise ConversionError(f"{path}: no optimizer state in {KERAS_V3_WEIGHTS}")
        vars_ = h5["optimizer"]["vars"]
        arrays = [(f"vars/{i}", np.asarray(vars_[str(i)])) for i in range(len(vars_))]
    return _split(cfg["optimizer"], arrays)


def _split(cfg: dict[str, Any], arrays: list[tuple[str, np.ndarray]]) -> KerasOptimizerState:
    """Leading scalars are the iteration count and (Keras 3) the learning-rate variable."""
    scalars = [(n, a) for n, a in arrays if a.ndim == 0]
    slots = [a for _, a in arrays if a.ndim > 0]
    iterations = int(scalars[0][1]) if scalars else 0
    lr = next((float(a) for n, a in scalars if "learning_rate" in n), None)
    if lr is None and len(scalars) > 1 and np.issubdtype(scalars[1][1].dtype, np.floating):
        lr = float(scalars[1][1])
    name = cfg["class_name"].removeprefix(TF_KERAS_CLASS_PREFIX)
    return KerasOptimizerState(name, dict(cfg.get("config", {})), iterations, lr, slots)


def read_optimizer_state(path: str | os.PathLike[str]) -> KerasOptimizerState:
    """The optimizer state stored in a Keras file (.keras or legacy full-model .h5)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(ZIP_SIGNATURE):
        with zipfile.ZipFile(path) as zf:
            return _keras_v3(zf, path)
    if magic == HDF5_SIGNATURE:
        with h5py.File(path, "r") as h5:
            return _legacy(h5, path)
    raise ConversionError(f"{path}: not a Keras .keras or HDF5 file")


def _kwargs(cls: type, state: KerasOptimizerState) -> dict[str, Any]:
    """The file's hyper-parameters that our class takes (same names as Keras')."""
    accepted = set(inspect.signature(cls).parameters) - {"params"}
    cfg = {k: v for k, v in state.config.items() if k in accepted}
    if "lr" in state.config and "learning_rate" not in cfg:  # Keras 2 spelling
        cfg["learning_rate"] = state.config["lr"]
    if isinstance(cfg.get("learning_rate"), dict) or state.learning_rate is not None:
        if state.learning_rate is None:
            raise ConversionError("learning-rate schedules are not supported")
        cfg["learning_rate"] = state.learning_rate
    if cls is optim.Adam and cfg.get("weight_decay") is None:
        cfg.pop("weight_decay", None)
    return cfg


def load_keras_optimizer(path: str | os.PathLike[str], model: nn.Module) -> optim.KerasOptimizer:
    """The Keras file's optimizer as a parity.optim optimizer over ``model``'s parameters
    (a model converted from the same file), with its step count and moments, so training
    resumes where Keras stopped. Parameters Keras does not have (bias_hh) are left out."""
    state = read_optimizer_state(path)
    if state.class_name not in SLOTS:
        raise ConversionError(
            f"{path}: optimizer {state.class_name} state import not supported "
            f"(supported: {', '.join(SLOTS)})"
        )
    names = SLOTS[state.class_name]
    rows = [(k, t, tr) for k, t, tr in pair_of(model).mapping if k is not None]
    if len(state.slots) != len(names) * len(rows):
        raise ConversionError(
            f"{path}: {len(state.slots)} optimizer slots for {len(rows)} trainable weights; "
            f"expected {len(names)} per weight (was the model trained with frozen layers?)"
        )
    params = dict(model.named_parameters())
    cls = optim.OPTIMIZERS[state.class_name]
    opt = cls([params[t] for _, t, _ in rows], **_kwargs(cls, state))
    opt.iterations = state.iterations
    for i, (keras_name, torch_name, transform) in enumerate(rows):
        p = params[torch_name]
        slots = {}
        for j, slot in enumerate(names):
            array = TRANSFORMS[transform].to_torch(state.slots[len(names) * i + j])
            if tuple(array.shape) != tuple(p.shape):
                raise ConversionError(
                    f"{path}: optimizer slot {slot} of {keras_name} has shape {array.shape}, "
                    f"{torch_name} is {tuple(p.shape)}"
                )
            slots[slot] = torch.as_tensor(np.array(array), dtype=p.dtype, device=p.device)
        opt.state[p] = slots
    return opt
