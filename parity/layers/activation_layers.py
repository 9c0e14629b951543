"""Keras' parametrised activation layers in torch: ReLU, LeakyReLU, PReLU, ELU, Softmax.

Their parameter-free defaults are the named activations of parity.layers.activations; these
modules add the parameters (slopes, ceilings, axes) those names fix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Keras ReLU: max_value 6 without threshold uses relu6 (the same values as clip(relu, 0, 6)).
RELU6_MAX = 6.0


class ReLU(nn.Module):
    """keras.layers.ReLU(max_value, negative_slope, threshold), as keras.activations.relu.

    Parity notes: x for x > threshold else 0, clipped to [0, max_value], minus
    negative_slope * relu(threshold - x); plain leaky_relu when only a slope is given.
    """

    def __init__(
        self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0
    ) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x: Tensor) -> Tensor:
        slope, threshold = self.negative_slope, self.threshold
        if slope != 0.0 and self.max_value is None and threshold == 0.0:
            return F.leaky_relu(x, slope)
        negative = F.relu(threshold - x) if slope != 0.0 else None
        out = torch.where(x > threshold, x, torch.zeros_like(x)) if threshold != 0.0 else F.relu(x)
        if self.max_value is not None:
            out = out.clamp(0.0, self.max_value)
        return out - slope * negative if negative is not None else out

    def extra_repr(self) -> str:
        return (
            f"max_value={self.max_value}, negative_slope={self.negative_slope}, "
            f"threshold={self.threshold}"
        )


class LeakyReLU(nn.LeakyReLU):
    """keras.layers.LeakyReLU: torch's, with the slope the Keras config names."""


class ELU(nn.Module):
    """keras.layers.ELU(alpha): x for x > 0, else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Softmax(nn.Module):
    """keras.layers.Softmax(axis): softmax over one axis or, for several, exp(x - logsumexp)."""

    def __init__(self, axis: int | tuple[int, ...] = -1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.axis, tuple):
            return torch.exp(x - torch.logsumexp(x, dim=self.axis, keepdim=True))
        return torch.softmax(x, dim=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class PReLU(nn.Module):
    """keras.layers.PReLU: relu(x) - alpha * relu(-x), ``alpha`` shaped as Keras' (the input's
    non-batch shape with size 1 on shared axes), so it maps without a transform."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(shape))  # Keras' alpha_initializer "zeros"

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x) - self.alpha * F.relu(-x)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.alpha.shape)}"
