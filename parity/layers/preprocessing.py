"""Keras' preprocessing layers that are part of a model's forward pass: Rescaling, Normalization.

Parity notes:
- Rescaling computes x * scale + offset; scale and offset are constants of the config (scalars,
  or per-channel lists broadcast over the last axis, channels-last).
- Normalization computes (x - mean) / max(sqrt(variance), KERAS_EPSILON) with the statistics
  ``adapt`` stored as non-trainable weights (buffers here, as they never train), broadcast over
  the last axis.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from parity.conventions import KERAS_EPSILON


class Rescaling(nn.Module):
    """keras.layers.Rescaling: x * scale + offset."""

    def __init__(self, scale: float | list[float], offset: float | list[float] = 0.0) -> None:
        super().__init__()
        # Config constants, not state: kept as numbers so the strict loader expects no weights.
        self.scale, self.offset = scale, offset

    def forward(self, x: Tensor) -> Tensor:
        scale = torch.as_tensor(self.scale, dtype=x.dtype, device=x.device)
        offset = torch.as_tensor(self.offset, dtype=x.dtype, device=x.device)
        return x * scale + offset

    def extra_repr(self) -> str:
        return f"scale={self.scale}, offset={self.offset}"


class Normalization(nn.Module):
    """keras.layers.Normalization over the last axis, with adapted statistics."""

    def __init__(self, features: int, eps: float = KERAS_EPSILON) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("variance", torch.ones(features))
        # Keras keeps the number of samples adapt saw; it does not enter the computation.
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / torch.clamp_min(torch.sqrt(self.variance), self.eps)

    def extra_repr(self) -> str:
        return f"{self.mean.shape[0]}, eps={self.eps}"
