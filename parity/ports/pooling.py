"""Keras' 1-D pooling layers on channels-last (B, T, C) input.

Keras' "same" pooling pads the TensorFlow way (extra on the right); padded positions never win
a max and are not counted in an average. GlobalAveragePooling1D averages over unmasked steps
only; GlobalMaxPooling1D ignores the mask (both as in Keras 3 and tf.keras).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity.errors import ConversionError
from parity.ports.conv import same_padding
from parity.ports.registry import (
    Config,
    Emitted,
    Example,
    LayerConverter,
    Masks,
    Shapes,
    call_drop_mask,
    emit_drop_mask,
    no_rows,
    no_weights,
    require_channels_last,
    single,
)

POOL_PADDINGS = ("valid", "same")


class _Pooling1D(nn.Module):
    def __init__(self, pool_size: int = 2, strides: int | None = None, padding: str = "valid"):
        super().__init__()
        if padding not in POOL_PADDINGS:
            raise ValueError(f"padding must be one of {POOL_PADDINGS}, got {padding!r}")
        self.pool_size = pool_size
        self.strides = pool_size if strides is None else strides
        self.padding = padding

    def _pads(self, length: int) -> tuple[int, int]:
        if self.padding == "same":
            return same_padding(length, self.pool_size, self.strides)
        return 0, 0

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}, strides={self.strides}, padding={self.padding!r}"


class MaxPooling1D(_Pooling1D):
    """keras.layers.MaxPooling1D: (B, T, C) -> (B, T', C)."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x.transpose(1, 2), self._pads(x.shape[1]), value=-float("inf"))
        return F.max_pool1d(x, self.pool_size, self.strides).transpose(1, 2)


class AveragePooling1D(_Pooling1D):
    """keras.layers.AveragePooling1D: (B, T, C) -> (B, T', C); padding is not averaged in."""

    def forward(self, x: Tensor) -> Tensor:
        pads = self._pads(x.shape[1])
        x = x.transpose(1, 2)
        summed = F.avg_pool1d(F.pad(x, pads), self.pool_size, self.strides) * self.pool_size
        ones = F.pad(torch.ones_like(x[:1, :1]), pads)
        count = F.avg_pool1d(ones, self.pool_size, self.strides) * self.pool_size
        return (summed / count).transpose(1, 2)


class GlobalAveragePooling1D(nn.Module):
    """keras.layers.GlobalAveragePooling1D: mean over time of the unmasked steps."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            return x.mean(dim=1)
        m = mask.to(torch.bool).unsqueeze(-1)  # (B, T, 1)
        total = torch.where(m, x, torch.zeros_like(x)).sum(dim=1)
        return total / m.to(x.dtype).sum(dim=1)


class GlobalMaxPooling1D(nn.Module):
    """keras.layers.GlobalMaxPooling1D: max over time (Keras ignores the mask here)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.amax(dim=1)


# ------------------------------------------------------------------------------------------------
# Pooling over time: Max/AveragePooling1D, GlobalMax/GlobalAveragePooling1D.


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


def _emit_max_pooling(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    if module.padding != "valid":
        raise ConversionError("parity port: MaxPooling1D padding='same' has no emitter")
    code = f"F.max_pool1d({{x0}}.transpose(1, 2), {module.pool_size}, {module.strides})"
    return Emitted(None, (f"{{out0}} = {code}.transpose(1, 2)",), ("None",))


def _emit_global_average(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    if not masked[0]:
        return Emitted(None, ("{out0} = {x0}.mean(dim=1)",))
    # Keras averages over the unmasked steps only
    return Emitted(
        None,
        (
            "{out0} = torch.where({m0}.unsqueeze(-1), {x0}, 0.0).sum(dim=1)",
            "{out0} = {out0} / {m0}.sum(dim=1, keepdim=True)",
        ),
    )


CONVERTERS: dict[str, LayerConverter] = {
    "MaxPooling1D": LayerConverter(
        no_weights,
        _build_pooling(MaxPooling1D),
        no_rows,
        call_drop_mask,
        examples=(Example({"pool_size": 3, "strides": 2, "padding": "same"}),),
        emit=_emit_max_pooling,
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
        emit=emit_drop_mask("{x0}.amax(dim=1)"),
    ),
    "GlobalAveragePooling1D": LayerConverter(
        no_weights,
        _build_global(GlobalAveragePooling1D),
        no_rows,
        _call_global_average,
        examples=(Example({}, "embedded"),),
        emit=_emit_global_average,
    ),
}
