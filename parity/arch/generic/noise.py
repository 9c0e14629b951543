"""Noise and regularisation layers: GaussianNoise, GaussianDropout, AlphaDropout,
ActivityRegularization.

Parity notes:
- All four are identities at inference, and keep the mask, as in Keras.
- ActivityRegularization only adds a loss term in Keras (l1/l2 of its input); the converted
  model computes the same outputs, and a fine-tuning loss must add that term itself.
"""

from __future__ import annotations

from torch import nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    call_keep_mask,
    no_rows,
    no_weights,
)
from parity.errors import ConversionError
from parity.layers.noise import GaussianDropout, GaussianNoise


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
