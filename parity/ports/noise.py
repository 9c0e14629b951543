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

from parity.errors import ConversionError
from parity.ports.registry import (
    Config,
    Example,
    LayerConverter,
    call_keep_mask,
    no_rows,
    no_weights,
)


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


# ------------------------------------------------------------------------------------------------
# Noise and regularisation layers: GaussianNoise, GaussianDropout, AlphaDropout,
# ActivityRegularization.
#
# Parity notes:
# - All four are identities at inference, and keep the mask, as in Keras.
# - ActivityRegularization only adds a loss term in Keras (l1/l2 of its input); the converted
#   model computes the same outputs, and a fine-tuning loss must add that term itself.


def _fraction(config: Config, key: str, *, below_one: bool) -> float:
    value = config.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConversionError(f"{key}={value!r}: expected a number >= 0")
    if below_one and value >= 1:
        raise ConversionError(f"{key}={value!r}: expected a rate below 1")
    return float(value)


CONVERTERS: dict[str, LayerConverter] = {
    "GaussianNoise": LayerConverter(
        no_weights,
        lambda c, s, a: GaussianNoise(_fraction(c, "stddev", below_one=False)),
        no_rows,
        call_keep_mask,
        examples=(Example({"stddev": 0.3}, "embedded"),),
    ),
    "GaussianDropout": LayerConverter(
        no_weights,
        lambda c, s, a: GaussianDropout(_fraction(c, "rate", below_one=True)),
        no_rows,
        call_keep_mask,
        examples=(Example({"rate": 0.3}, "embedded"),),
    ),
    "AlphaDropout": LayerConverter(
        no_weights,
        lambda c, s, a: nn.AlphaDropout(_fraction(c, "rate", below_one=True)),
        no_rows,
        call_keep_mask,
        examples=(Example({"rate": 0.3}, "sequence"),),
    ),
    "ActivityRegularization": LayerConverter(
        no_weights,
        lambda c, s, a: nn.Identity(),
        no_rows,
        call_keep_mask,
        examples=(Example({"l1": 0.01, "l2": 0.01}, "vector"),),
    ),
}
