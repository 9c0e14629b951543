"""keras.layers.UnitNormalization: each sample scaled to unit L2 norm over ``axis``.

Parity notes:
- Keras 3 computes ``x * min(rsqrt(sum(x^2)), 1 / eps)``; tf.keras (``tf.math.l2_normalize``)
  ``x * rsqrt(max(sum(x^2), eps))``, eps = 1e-12 in both. They differ only for vectors whose norm
  is below 1e-6; the port computes the one of the Keras that wrote the file.
- ``axis``: an int or a list of ints, counted as Keras counts them (batch axis 0), on Keras' own
  channels-last input, which the converted model takes unchanged.
- No weights, the mask passes through (Keras' layer supports masking).

This file is the README's worked example of adding a Keras class: the module, its converter
entry with examples, and one line in parity.ports.FAMILIES.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from parity.conventions import UNIT_NORMALIZATION_EPSILON
from parity.errors import ConversionError
from parity.ports.registry import (
    Config,
    Example,
    LayerConverter,
    Shapes,
    call_keep_mask,
    no_rows,
    no_weights,
    written_by_keras3,
)


class UnitNormalization(nn.Module):
    """x scaled to unit L2 norm over ``axis`` (a tuple of dims), Keras 3's or tf.keras' floor."""

    def __init__(self, axis: tuple[int, ...], keras3: bool = True) -> None:
        super().__init__()
        self.axis = axis
        self.keras3 = keras3

    def forward(self, x: Tensor) -> Tensor:
        square_sum = x.square().sum(dim=self.axis, keepdim=True)
        if self.keras3:  # the floor on the inverse norm
            inverse = torch.rsqrt(square_sum).clamp(max=1.0 / UNIT_NORMALIZATION_EPSILON)
        else:  # the floor on the squared norm
            inverse = torch.rsqrt(square_sum.clamp(min=UNIT_NORMALIZATION_EPSILON))
        return x * inverse

    def extra_repr(self) -> str:
        return f"axis={self.axis}, keras3={self.keras3}"


def _build(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    axis = config.get("axis", -1)
    axes = tuple(axis) if isinstance(axis, list | tuple) else (axis,)
    if not axes or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
        raise ConversionError(f"UnitNormalization axis={axis!r} is not an int or a list of ints")
    return UnitNormalization(axes, keras3=written_by_keras3(config))


CONVERTERS: dict[str, LayerConverter] = {
    "UnitNormalization": LayerConverter(
        no_weights,
        _build,
        no_rows,
        call_keep_mask,
        versioned=True,
        examples=(
            Example({"axis": -1}, "sequence"),
            Example({"axis": [1, 2]}, "sequence"),
            Example({}, "embedded"),
        ),
    ),
}
