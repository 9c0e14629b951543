"""Keras' core layers in torch: Dense with any Keras activation, Activation, Flatten, dropouts.

Activations come from the one table in parity.layers.activations, by Keras name.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from parity.layers.activations import ActivationSlot


class Activation(nn.Module):
    """keras.layers.Activation: one named Keras activation."""

    activation = ActivationSlot("_fn")

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(x)

    def extra_repr(self) -> str:
        return repr(self.activation)


class Dense(nn.Linear):
    """nn.Linear followed by a Keras activation (keras.layers.Dense); acts on the last axis."""

    activation = ActivationSlot("_fn")

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
