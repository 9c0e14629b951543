"""Pooling over time: Max/AveragePooling1D, GlobalMax/GlobalAveragePooling1D."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    Masks,
    Shapes,
    call_drop_mask,
    no_rows,
    no_weights,
    require_channels_last,
    single,
)
from parity.errors import ConversionError
from parity.layers import (
    POOL_PADDINGS,
    AveragePooling1D,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    MaxPooling1D,
)


def _build_pooling(cls: type) -> Callable[[Config, Shapes, dict[str, str]], nn.Module]:
    def build(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
        padding = config.get("padding", "valid")
        if padding not in POOL_PADDINGS:
            raise ConversionError(f"pooling padding {padding!r} is not supported")
        strides = config.get("strides")
        return cls(
            single(config.get("pool_size", 2)),
            None if strides is None else single(strides),
            padding,
        )

    return build


def _build_global(cls: type) -> Callable[[Config, Shapes, dict[str, str]], nn.Module]:
    def build(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
        require_channels_last(config, cls.__name__)
        if config.get("keepdims"):
            raise ConversionError(f"{cls.__name__} with keepdims is not supported")
        return cls()

    return build


def _call_global_average(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """Keras' GlobalAveragePooling1D averages over unmasked steps only, and consumes the mask."""
    return [module(xs[0], mask=masks[0])], [None]


CONVERTERS: dict[str, LayerConverter] = {
    "MaxPooling1D": LayerConverter(
        no_weights,
        _build_pooling(MaxPooling1D),
        no_rows,
        call_drop_mask,
        examples=(Example({"pool_size": 3, "strides": 2, "padding": "same"}),),
    ),
    "AveragePooling1D": LayerConverter(
        no_weights,
        _build_pooling(AveragePooling1D),
        no_rows,
        call_drop_mask,
        examples=(Example({"pool_size": 3, "strides": 2, "padding": "same"}),),
    ),
    "GlobalMaxPooling1D": LayerConverter(
        no_weights,
        _build_global(GlobalMaxPooling1D),
        no_rows,
        call_drop_mask,
        examples=(Example({}, "embedded"),),
    ),
    "GlobalAveragePooling1D": LayerConverter(
        no_weights,
        _build_global(GlobalAveragePooling1D),
        no_rows,
        _call_global_average,
        examples=(Example({}, "embedded"),),
    ),
}
