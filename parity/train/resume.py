"""Resume Keras training in PyTorch: a parity.optim optimizer with the step count and moments
a Keras file saved (read by parity.keras.optimizer_state), mapped onto a converted model.

Why: starting PyTorch with fresh moments restarts Adam's bias correction and throws away its
second-moment estimates; Keras would have gone on from them. Slots follow Keras'
trainable_variables, which is the order of the Keras weights in the model's mapping table
(arch_of(model).mapping(model)), for pairs and generic models alike.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from parity import optim
from parity.arch import arch_of
from parity.convert.transforms import TRANSFORMS
from parity.errors import ConversionError
from parity.keras.optimizer_state import SLOTS, KerasOptimizerState, read_optimizer_state


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
    resumes where Keras stopped. Frozen weights (requires_grad False) have no slots, as in
    Keras' trainable_variables."""
    state = read_optimizer_state(path)
    if state.class_name not in SLOTS:
        raise ConversionError(
            f"{path}: optimizer {state.class_name} state import not supported "
            f"(supported: {', '.join(SLOTS)})"
        )
    names = SLOTS[state.class_name]
    params = dict(model.named_parameters())
    rows = [
        (k, t, tr)
        for k, t, tr in arch_of(model).mapping(model)
        if k and t in params and params[t].requires_grad
    ]
    if len(state.slots) != len(names) * len(rows):
        raise ConversionError(
            f"{path}: {len(state.slots)} optimizer slots for {len(rows)} trainable weights; "
            f"expected {len(names)} per weight (was the model trained with frozen layers?)"
        )
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
