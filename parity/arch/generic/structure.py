"""Shape layers: Reshape, Permute, RepeatVector, Masking (Flatten is in core), and the inputs
of inlined nested models.

Parity notes:
- Reshape, Permute and RepeatVector do not support masking in Keras: a mask stops there.
- Masking starts a mask (any feature != mask_value) and zeroes the masked steps; a mask that
  arrives is replaced, as Keras' Masking.compute_mask ignores it.
- A nested model's input passes the tensor its call was given, with the mask that came with
  it or the one the call passed explicitly: Keras 2 and 3 both run a nested model's layers
  under its input's mask.
"""

from __future__ import annotations

from torch import Tensor, nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    Masks,
    call_drop_mask,
    no_module,
    no_rows,
    no_weights,
    single,
)
from parity.errors import ConversionError
from parity.keras.graph import NESTED_INPUT
from parity.layers.structure import Masking, Permute, RepeatVector, Reshape


def _ints(config: Config, key: str) -> tuple[int, ...]:
    value = config.get(key)
    if not isinstance(value, list | tuple) or not all(type(v) is int for v in value):
        raise ConversionError(f"{key}={value!r}: expected a list of ints")
    return tuple(value)


def _repeat(config: Config) -> int:
    n = single(config.get("n"))
    if type(n) is not int or n < 1:
        raise ConversionError(f"RepeatVector n={n!r}: expected a positive int")
    return n


def _call_masking(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    return [module(xs[0])], [module.mask(xs[0])]


def _call_nested_input(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    return [xs[0]], [masks[0]]


CONVERTERS: dict[str, LayerConverter] = {
    NESTED_INPUT: LayerConverter(no_weights, no_module, no_rows, _call_nested_input),
    "Reshape": LayerConverter(
        no_weights,
        lambda c, s, a: Reshape(_ints(c, "target_shape")),
        no_rows,
        call_drop_mask,
        examples=(
            Example({"target_shape": [3, 11]}, "sequence"),
            Example({"target_shape": [-1, 2]}, "vector"),
        ),
    ),
    "Permute": LayerConverter(
        no_weights,
        lambda c, s, a: Permute(_ints(c, "dims")),
        no_rows,
        call_drop_mask,
        examples=(Example({"dims": [2, 1]}, "sequence"),),
    ),
    "RepeatVector": LayerConverter(
        no_weights,
        lambda c, s, a: RepeatVector(_repeat(c)),
        no_rows,
        call_drop_mask,
        examples=(Example({"n": 3}, "vector"),),
    ),
    "Masking": LayerConverter(
        no_weights,
        lambda c, s, a: Masking(float(c.get("mask_value", 0.0))),
        no_rows,
        _call_masking,
        examples=(Example({"mask_value": 0.0}, "sequence"),),
    ),
}
