"""Activations whose Keras definition differs from torch's, and a by-name registry for them.

Keras 2 and Keras 3 disagree on ``hard_sigmoid`` (slope 0.2 vs 1/6), so the variant is always
named explicitly: a model converted from a Keras 2 file must keep computing the 0.2 version.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from parity.conventions import (
    HARD_SIGMOID_KERAS2_OFFSET,
    HARD_SIGMOID_KERAS2_SLOPE,
    HARD_SIGMOID_KERAS3_OFFSET,
    HARD_SIGMOID_KERAS3_SLOPE,
    HARD_SIGMOID_VARIANTS,
)

Activation = Callable[[Tensor], Tensor]


def _hard_sigmoid_keras2(x: Tensor) -> Tensor:
    # Multiply, add, clip as separate ops, like tf_keras backend.hard_sigmoid and Theano.
    return torch.clamp(x * HARD_SIGMOID_KERAS2_SLOPE + HARD_SIGMOID_KERAS2_OFFSET, 0.0, 1.0)


def _hard_sigmoid_keras3(x: Tensor) -> Tensor:
    # relu6(x + 3) / 6, as Keras 3 writes it; forward bit-equal to F.hardsigmoid, whose float64
    # backward uses a float32 1/6 (off by 5e-9) where this one's gradient is exact.
    return F.relu6(x + 3.0) / 6.0


def _linear(x: Tensor) -> Tensor:
    return x


_HARD_SIGMOID: dict[str, Activation] = {
    "keras2": _hard_sigmoid_keras2,
    "keras3": _hard_sigmoid_keras3,
}
assert tuple(_HARD_SIGMOID) == HARD_SIGMOID_VARIANTS


def hard_sigmoid(x: Tensor, variant: str) -> Tensor:
    """Keras' hard sigmoid; ``variant`` is "keras2" (slope 0.2) or "keras3" (slope 1/6)."""
    try:
        fn = _HARD_SIGMOID[variant]
    except KeyError:
        raise ValueError(
            f"unknown hard_sigmoid variant {variant!r}; expected one of {sorted(_HARD_SIGMOID)}"
        ) from None
    return fn(x)


#: Activations usable as an LSTM's gate (Keras ``recurrent_activation``) or cell activation.
GATE_ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": torch.sigmoid,
    "hard_sigmoid_keras2": _hard_sigmoid_keras2,
    "hard_sigmoid_keras3": _hard_sigmoid_keras3,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "linear": _linear,
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name; unknown names fail loudly instead of silently defaulting."""
    try:
        return GATE_ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(GATE_ACTIVATIONS)}"
        ) from None


# --- in-place forms for the fused inference loop (parity.layers._lstm_fast) ------------------


def _clamp01_(x: Tensor) -> Tensor:
    return x.clamp_(0.0, 1.0)


def _identity_(x: Tensor) -> Tensor:
    return x


#: name -> (scale, offset, in-place tail) with act(x) == tail(scale * x + offset). The affine part
#: of a hard sigmoid can be folded into the weights that produce x, leaving one clamp per step.
#: Mathematically exact; in floating point it rounds differently (~1 ulp of x), well inside the
#: float32 tolerance. An LSTM whose activations are not listed here runs the reference loop.
AFFINE_SPLIT: dict[str, tuple[float, float, Activation]] = {
    "sigmoid": (1.0, 0.0, torch.sigmoid_),
    "hard_sigmoid_keras2": (HARD_SIGMOID_KERAS2_SLOPE, HARD_SIGMOID_KERAS2_OFFSET, _clamp01_),
    # relu6(x + 3) / 6 == clamp(x / 6 + 1/2, 0, 1)
    "hard_sigmoid_keras3": (HARD_SIGMOID_KERAS3_SLOPE, HARD_SIGMOID_KERAS3_OFFSET, _clamp01_),
    "tanh": (1.0, 0.0, torch.tanh_),
    "relu": (1.0, 0.0, torch.relu_),
    "linear": (1.0, 0.0, _identity_),
}
