"""Keras' noise layers: identities at inference, Keras' random perturbation in training.

Parity notes:
- GaussianNoise adds N(0, stddev); GaussianDropout multiplies by N(1, rate / (1 - rate)), as
  Keras' layers do in training. The draws are torch's, so a training run matches Keras in
  distribution, not sample by sample (as with Dropout).
- AlphaDropout is Keras' (and torch's nn.AlphaDropout's) SELU-preserving dropout.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GaussianNoise(nn.Module):
    def __init__(self, stddev: float) -> None:
        super().__init__()
        self.stddev = stddev

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.stddev <= 0:
            return x
        return x + torch.randn_like(x) * self.stddev

    def extra_repr(self) -> str:
        return f"stddev={self.stddev}"


class GaussianDropout(nn.Module):
    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate <= 0:
            return x
        return x * (1.0 + torch.randn_like(x) * math.sqrt(self.rate / (1.0 - self.rate)))

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
