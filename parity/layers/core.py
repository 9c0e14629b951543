"""Keras' core layers in torch: Dense with any Keras activation, Activation, Flatten, dropouts.

Keras names its activations; several differ from torch's defaults (hard_sigmoid per version,
leaky_relu's slope, gelu's approximation), so every name maps to one explicit function here and an
unknown name fails loudly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity.conventions import KERAS3_LEAKY_RELU_SLOPE
from parity.layers.activations import Activation as ActivationFn
from parity.layers.activations import hard_sigmoid


def _softmax(x: Tensor) -> Tensor:
    return torch.softmax(x, dim=-1)  # Keras' softmax axis default is -1


def _log_softmax(x: Tensor) -> Tensor:
    return torch.log_softmax(x, dim=-1)


def _linear(x: Tensor) -> Tensor:
    return x


def _hard_silu_keras3(x: Tensor) -> Tensor:
    return x * hard_sigmoid(x, "keras3")


#: Keras activation names -> functions. "hard_sigmoid" has no entry on purpose: the file's Keras
#: version decides the variant (parity.models.generic resolves it to one of the two names below).
KERAS_ACTIVATIONS: dict[str, ActivationFn] = {
    "linear": _linear,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid_keras2": lambda x: hard_sigmoid(x, "keras2"),
    "hard_sigmoid_keras3": lambda x: hard_sigmoid(x, "keras3"),
    "tanh": torch.tanh,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "elu": F.elu,  # alpha 1.0 in both
    "selu": F.selu,  # same constants as Keras
    "exponential": torch.exp,
    "gelu": F.gelu,  # Keras' gelu defaults to approximate=False, as torch's
    "swish": F.silu,
    "silu": F.silu,
    "relu6": F.relu6,
    "leaky_relu": lambda x: F.leaky_relu(x, KERAS3_LEAKY_RELU_SLOPE),
    "mish": F.mish,
    "hard_silu": _hard_silu_keras3,
    "hard_swish": _hard_silu_keras3,
}


def keras_activation(name: str) -> ActivationFn:
    """The function a resolved Keras activation name computes; unknown names raise ValueError."""
    try:
        return KERAS_ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unsupported Keras activation {name!r}; supported: {', '.join(KERAS_ACTIVATIONS)}"
        ) from None


class Activation(nn.Module):
    """keras.layers.Activation: one named Keras activation."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation
        self._fn = keras_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(x)

    def extra_repr(self) -> str:
        return repr(self.activation)


class Dense(nn.Linear):
    """nn.Linear followed by a Keras activation (keras.layers.Dense); acts on the last axis."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str = "linear",
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self.activation = activation
        self._fn = keras_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(super().forward(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


class Flatten(nn.Module):
    """keras.layers.Flatten: channels-last, i.e. a row-major reshape of (B, ...) to (B, -1)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)


class SpatialDropout1D(nn.Dropout1d):
    """keras.layers.SpatialDropout1D on channels-last (B, T, C): drops whole channels."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)
