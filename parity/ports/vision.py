"""Keras' 2-D convolutions in torch, on channels-last (B, H, W, C) input and output.

Conv2D, DepthwiseConv2D, SeparableConv2D and Conv2DTranspose take the tensor layout Keras
takes, so a converted image model is fed exactly what the Keras model was fed and Flatten stays
a plain row-major reshape.

Parity notes:

- "same" pads the TensorFlow way, per axis: total = max((ceil(n / s) - 1) * s + span - n, 0),
  with total // 2 before and the rest after (an even kernel or a stride puts the extra row at the
  bottom, the extra column on the right). nn.Conv2d's padding="same" centres the other way and
  refuses strides, so the padding is explicit and the convolution itself is valid.
- The activation runs on the channels-last result, so "softmax" normalises over channels as in
  Keras.
- DepthwiseConv2D keeps Keras' channel order: output channel c * depth_multiplier + m comes from
  input channel c (torch's grouped convolution with groups=in orders them the same way). Its
  weight is held as (in, depth_multiplier, kh, kw), which is the torch grouped weight
  (in * depth_multiplier, 1, kh, kw) without the flattening: the Keras kernel (kh, kw, in, mult)
  maps to it and back by one transpose, and Keras' fans (in * k, mult * k) are its two leading axes.
- Conv2DTranspose is TensorFlow's conv2d_transpose: the full transposed convolution
  ((n - 1) * s + span long), cropped by the "same" padding of the forward convolution it inverts
  and cut or zero-extended to Keras' output length (output_padding included); the bias is added
  after, so zero-extended cells carry the bias as in Keras.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity.convert.transforms import Transform
from parity.errors import ConversionError
from parity.initializers import glorot_uniform_, kernel_and_bias_, zeros_
from parity.ports.activations import ActivationSlot
from parity.ports.conv import same_padding
from parity.ports.registry import (
    Config,
    Emitted,
    Emitter,
    Example,
    InitRule,
    LayerConverter,
    Shapes,
    activation_code,
    call_drop_mask,
    declared,
    no_rows,
    no_weights,
    require_channels_last,
    simple_rows,
    with_bias,
)

#: Keras padding names the 2-D layers accept ("causal" is 1-D only).
PADDINGS_2D = ("valid", "same")

Pair = tuple[int, int]


def pair(value: int | tuple[int, ...] | list[int]) -> Pair:
    """Keras writes 2-D sizes as 3, [3, 3] or (3, 3)."""
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def same_pads_2d(
    size: tuple[int, int], kernel: Pair, stride: Pair, dilation: Pair, padding: str
) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for a channels-first (B, C, H, W) tensor."""
    if padding != "same":
        return 0, 0, 0, 0
    top, bottom = same_padding(size[0], kernel[0], stride[0], dilation[0])
    left, right = same_padding(size[1], kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


def _check_padding(padding: str) -> None:
    if padding not in PADDINGS_2D:
        raise ValueError(f"padding must be one of {PADDINGS_2D}, got {padding!r}")


class Conv2D(nn.Conv2d):
    """nn.Conv2d (same parameters and shapes) on (B, H, W, C) input, with Keras' padding and
    activation. ``padding`` is "valid" or "same"."""

    activation = ActivationSlot("_fn")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Pair,
        stride: int | Pair = 1,
        padding: str = "valid",
        dilation: int | Pair = 1,
        groups: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str = "linear",
    ) -> None:
        _check_padding(padding)
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0,
            dilation=dilation,
            groups=groups,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.keras_padding = padding
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, H, W, C_in) -> (B, H', W', C_out)."""
        x = x.permute(0, 3, 1, 2)  # (B, C_in, H, W)
        pads = same_pads_2d(
            x.shape[-2:], self.kernel_size, self.stride, self.dilation, self.keras_padding
        )
        return self._fn(super().forward(F.pad(x, pads)).permute(0, 2, 3, 1))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, keras_padding={self.keras_padding!r}, "
            f"activation={self.activation!r}"
        )


class DepthwiseConv2D(nn.Module):
    """keras.layers.DepthwiseConv2D on (B, H, W, C): weight (in, depth_multiplier, kh, kw),
    bias (in * depth_multiplier,); output channel c * depth_multiplier + m (Keras' order)."""

    activation = ActivationSlot("_fn")

    def __init__(
        self,
        in_channels: int,
        kernel_size: int | Pair,
        stride: int | Pair = 1,
        padding: str = "valid",
        dilation: int | Pair = 1,
        depth_multiplier: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        _check_padding(padding)
        factory = {"device": device, "dtype": dtype}
        self.in_channels = in_channels
        self.depth_multiplier = depth_multiplier
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride)
        self.dilation = pair(dilation)
        self.keras_padding = padding
        self.weight = nn.Parameter(
            torch.empty(in_channels, depth_multiplier, *self.kernel_size, **factory)
        )
        out = in_channels * depth_multiplier
        self.bias = nn.Parameter(torch.empty(out, **factory)) if bias else None
        self.activation = activation
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """torch's default for the equivalent grouped nn.Conv2d: U(+-1/sqrt(kh * kw))."""
        bound = 1 / math.sqrt(math.prod(self.kernel_size))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, H, W, C_in) -> (B, H', W', C_in * depth_multiplier)."""
        x = x.permute(0, 3, 1, 2)
        pads = same_pads_2d(
            x.shape[-2:], self.kernel_size, self.stride, self.dilation, self.keras_padding
        )
        weight = self.weight.reshape(-1, 1, *self.kernel_size)  # (in * mult, 1, kh, kw)
        y = F.conv2d(
            F.pad(x, pads), weight, self.bias, self.stride, 0, self.dilation, self.in_channels
        )
        return self._fn(y.permute(0, 2, 3, 1))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"dilation={self.dilation}, depth_multiplier={self.depth_multiplier}, "
            f"keras_padding={self.keras_padding!r}, activation={self.activation!r}"
        )


class SeparableConv2D(nn.Module):
    """keras.layers.SeparableConv2D: a DepthwiseConv2D (strides, padding, dilation; no bias)
    then a 1x1 Conv2D carrying the bias and the activation, as Keras computes it."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Pair,
        stride: int | Pair = 1,
        padding: str = "valid",
        dilation: int | Pair = 1,
        depth_multiplier: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.depthwise = DepthwiseConv2D(
            in_channels, kernel_size, stride, padding, dilation, depth_multiplier, False, **factory
        )
        self.pointwise = Conv2D(
            in_channels * depth_multiplier, out_channels, 1, bias=bias, activation=activation,
            **factory,
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, H, W, C_in) -> (B, H', W', C_out)."""
        return self.pointwise(self.depthwise(x))


class Conv2DTranspose(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (weight (in, out, kh, kw)) on (B, H, W, C) input with Keras' padding,
    output_padding and activation (TensorFlow's conv2d_transpose output size)."""

    activation = ActivationSlot("_fn")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Pair,
        stride: int | Pair = 1,
        padding: str = "valid",
        output_padding: int | Pair | None = None,
        dilation: int | Pair = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str = "linear",
    ) -> None:
        _check_padding(padding)
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0,
            dilation=dilation,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.keras_padding = padding
        self.keras_output_padding = None if output_padding is None else pair(output_padding)
        self.activation = activation

    def output_length(self, length: int, axis: int) -> int:
        """Keras' output length along spatial ``axis`` (0: H, 1: W) for an input ``length``."""
        span = (self.kernel_size[axis] - 1) * self.dilation[axis] + 1
        stride = self.stride[axis]
        extra = None if self.keras_output_padding is None else self.keras_output_padding[axis]
        if self.keras_padding == "valid":
            extra = max(span, stride) - span if extra is None else extra
            return (length - 1) * stride + span + extra
        if extra is None:
            return length * stride
        return (length - 1) * stride + span % 2 + extra

    def _crops(self, length: int, axis: int) -> tuple[int, int]:
        """F.pad amounts (negative: crop) from the full transposed convolution to Keras' output."""
        span = (self.kernel_size[axis] - 1) * self.dilation[axis] + 1
        full = (length - 1) * self.stride[axis] + span
        out = self.output_length(length, axis)
        # TF inverts the forward convolution from ``out`` to ``length``: its "same" padding
        # before is what the full result starts with; "valid" pads nothing.
        before = max(full - out, 0) // 2 if self.keras_padding == "same" else 0
        return -before, out - (full - before)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, H, W, C_in) -> (B, H', W', C_out)."""
        x = x.permute(0, 3, 1, 2)
        y = F.conv_transpose2d(x, self.weight, None, self.stride, dilation=self.dilation)
        y = F.pad(y, (*self._crops(x.shape[-1], 1), *self._crops(x.shape[-2], 0)))
        if self.bias is not None:
            y = y + self.bias[:, None, None]
        return self._fn(y.permute(0, 2, 3, 1))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, keras_padding={self.keras_padding!r}, "
            f"keras_output_padding={self.keras_output_padding}, activation={self.activation!r}"
        )


# ------------------------------------------------------------------------------------------------
# Keras' 2-D pooling, padding, cropping and upsampling layers on channels-last (B, H, W, C).
#
# Parity notes:
#
# - "same" pooling pads the TensorFlow way per axis (extra row at the bottom, extra column on the
#   right); padded cells never win a max and are not counted in an average (TF's SAME average
#   pooling divides by the number of real cells in each window).
# - GlobalAverage/GlobalMaxPooling2D reduce H and W; keepdims=True keeps them as size 1.
# - UpSampling2D "nearest" repeats rows then columns; "bilinear" is tf.image.resize's bilinear
#   (half-pixel centres), which for upsampling is F.interpolate(align_corners=False).

#: UpSampling2D interpolations and their F.interpolate modes.
UPSAMPLING_MODES = {"nearest": "nearest", "bilinear": "bilinear"}

Pads2D = tuple[Pair, Pair]


def pads_2d(value: int | list | tuple) -> Pads2D:
    """Keras' ZeroPadding2D / Cropping2D amounts: 1, (1, 2) or ((top, bottom), (left, right))."""
    if isinstance(value, int):
        return (value, value), (value, value)
    rows, cols = value
    return pair(rows), pair(cols)


class _Pooling2D(nn.Module):
    def __init__(
        self, pool_size: int | Pair = 2, strides: int | Pair | None = None, padding: str = "valid"
    ) -> None:
        super().__init__()
        if padding not in PADDINGS_2D:
            raise ValueError(f"padding must be one of {PADDINGS_2D}, got {padding!r}")
        self.pool_size = pair(pool_size)
        self.strides = self.pool_size if strides is None else pair(strides)
        self.padding = padding

    def _pads(self, x: Tensor) -> tuple[int, int, int, int]:
        return same_pads_2d(x.shape[-2:], self.pool_size, self.strides, (1, 1), self.padding)

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}, strides={self.strides}, padding={self.padding!r}"


class MaxPooling2D(_Pooling2D):
    """keras.layers.MaxPooling2D: (B, H, W, C) -> (B, H', W', C)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 3, 1, 2)
        x = F.pad(x, self._pads(x), value=-float("inf"))
        return F.max_pool2d(x, self.pool_size, self.strides).permute(0, 2, 3, 1)


class AveragePooling2D(_Pooling2D):
    """keras.layers.AveragePooling2D: (B, H, W, C) -> (B, H', W', C); padding not averaged in."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 3, 1, 2)
        pads = self._pads(x)
        window = self.pool_size[0] * self.pool_size[1]
        summed = F.avg_pool2d(F.pad(x, pads), self.pool_size, self.strides) * window
        ones = F.pad(torch.ones_like(x[:1, :1]), pads)
        count = F.avg_pool2d(ones, self.pool_size, self.strides) * window
        return (summed / count).permute(0, 2, 3, 1)


class GlobalAveragePooling2D(nn.Module):
    """keras.layers.GlobalAveragePooling2D: mean over H and W."""

    def __init__(self, keepdims: bool = False) -> None:
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(1, 2), keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return f"keepdims={self.keepdims}"


class GlobalMaxPooling2D(GlobalAveragePooling2D):
    """keras.layers.GlobalMaxPooling2D: max over H and W."""

    def forward(self, x: Tensor) -> Tensor:
        return x.amax(dim=(1, 2), keepdim=self.keepdims)


class ZeroPadding2D(nn.Module):
    """keras.layers.ZeroPadding2D: zeros around H and W of (B, H, W, C)."""

    def __init__(self, padding: int | list | tuple = 1) -> None:
        super().__init__()
        self.padding = pads_2d(padding)

    def forward(self, x: Tensor) -> Tensor:
        (top, bottom), (left, right) = self.padding
        return F.pad(x, (0, 0, left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


class Cropping2D(nn.Module):
    """keras.layers.Cropping2D: drops rows and columns from the edges of (B, H, W, C)."""

    def __init__(self, cropping: int | list | tuple = 0) -> None:
        super().__init__()
        self.cropping = pads_2d(cropping)

    def forward(self, x: Tensor) -> Tensor:
        (top, bottom), (left, right) = self.cropping
        return x[:, top : x.shape[1] - bottom, left : x.shape[2] - right]

    def extra_repr(self) -> str:
        return f"cropping={self.cropping}"


class UpSampling2D(nn.Module):
    """keras.layers.UpSampling2D: (B, H, W, C) -> (B, H * sh, W * sw, C)."""

    def __init__(self, size: int | Pair = 2, interpolation: str = "nearest") -> None:
        super().__init__()
        if interpolation not in UPSAMPLING_MODES:
            raise ValueError(
                f"interpolation must be one of {sorted(UPSAMPLING_MODES)}, got {interpolation!r}"
            )
        self.size = pair(size)
        self.interpolation = interpolation

    def forward(self, x: Tensor) -> Tensor:
        if self.interpolation == "nearest":  # exact repeats, no interpolation arithmetic
            return x.repeat_interleave(self.size[0], 1).repeat_interleave(self.size[1], 2)
        out = (x.shape[1] * self.size[0], x.shape[2] * self.size[1])
        y = F.interpolate(
            x.permute(0, 3, 1, 2), size=out, mode=UPSAMPLING_MODES[self.interpolation],
            align_corners=False,
        )  # fmt: skip
        return y.permute(0, 2, 3, 1)

    def extra_repr(self) -> str:
        return f"size={self.size}, interpolation={self.interpolation!r}"


# ------------------------------------------------------------------------------------------------
# 2-D vision layers, channels-last as Keras runs them: Conv2D, DepthwiseConv2D,
# SeparableConv2D, Conv2DTranspose, Max/AveragePooling2D, GlobalMax/GlobalAveragePooling2D,
# ZeroPadding2D, Cropping2D, UpSampling2D (Keras 1's Convolution2D is normalised to Conv2D).
#
# Parity notes: every module takes and returns (B, H, W, C), so a converted model takes Keras' own
# input layout and Flatten stays a row-major reshape; padding, pooling and transposed-convolution
# sizes follow TensorFlow (see parity.ports.vision and parity.ports.vision).
# data_format="channels_first" and Keras 1's dim_ordering="th" are refused by name: the first
# would need every layer to agree on a layout, the second stores Theano's flipped kernels (or not,
# under Keras 1's TensorFlow backend) and the file does not say which.

Build = Callable[[Config, Shapes, dict[str, str]], nn.Module]


def _padding(config: Config) -> str:
    padding = config.get("padding", "valid")
    if padding not in PADDINGS_2D:
        raise ConversionError(f"padding {padding!r} is not supported (one of {PADDINGS_2D})")
    return padding


def _sizes(config: Config, kernel: tuple[int, int]) -> None:
    """kernel_size (Keras 2+) or nb_row / nb_col (Keras 1) must agree with the kernel."""
    size = config.get("kernel_size")
    if size is not None and pair(size) != kernel:
        raise ConversionError(f"config declares kernel_size={size!r} but the kernel is {kernel}")
    declared(config, "nb_row", kernel[0], "the kernel")
    declared(config, "nb_col", kernel[1], "the kernel")


def _build_conv2d(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    require_channels_last(config, "Conv2D")
    kh, kw, group_in, filters = shapes["kernel"]
    declared(config, "filters", filters, "the kernel")
    _sizes(config, (kh, kw))
    groups = config.get("groups", 1)
    if not isinstance(groups, int) or groups < 1 or filters % groups:
        raise ConversionError(f"Conv2D groups={groups!r} does not divide {filters} filters")
    return Conv2D(
        group_in * groups,
        filters,
        (kh, kw),
        stride=pair(config.get("strides", 1)),
        padding=_padding(config),
        dilation=pair(config.get("dilation_rate", 1)),
        groups=groups,
        bias="bias" in shapes,
        activation=acts["activation"],
    )


def _build_depthwise(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    require_channels_last(config, "DepthwiseConv2D")
    kh, kw, channels, multiplier = shapes["kernel"]
    declared(config, "depth_multiplier", multiplier, "the kernel")
    _sizes(config, (kh, kw))
    return DepthwiseConv2D(
        channels,
        (kh, kw),
        stride=pair(config.get("strides", 1)),
        padding=_padding(config),
        dilation=pair(config.get("dilation_rate", 1)),
        depth_multiplier=multiplier,
        bias="bias" in shapes,
        activation=acts["activation"],
    )


def _build_separable(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    require_channels_last(config, "SeparableConv2D")
    kh, kw, channels, multiplier = shapes["depthwise_kernel"]
    one, one_, mixed, filters = shapes["pointwise_kernel"]
    if (one, one_, mixed) != (1, 1, channels * multiplier):
        raise ConversionError(
            f"pointwise kernel {shapes['pointwise_kernel']} does not follow the depthwise "
            f"kernel {shapes['depthwise_kernel']}"
        )
    declared(config, "depth_multiplier", multiplier, "the depthwise kernel")
    declared(config, "filters", filters, "the pointwise kernel")
    _sizes(config, (kh, kw))
    return SeparableConv2D(
        channels,
        filters,
        (kh, kw),
        stride=pair(config.get("strides", 1)),
        padding=_padding(config),
        dilation=pair(config.get("dilation_rate", 1)),
        depth_multiplier=multiplier,
        bias="bias" in shapes,
        activation=acts["activation"],
    )


def _build_transpose(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    require_channels_last(config, "Conv2DTranspose")
    kh, kw, filters, channels = shapes["kernel"]  # Keras stores (kh, kw, out, in)
    declared(config, "filters", filters, "the kernel")
    _sizes(config, (kh, kw))
    output_padding = config.get("output_padding")
    return Conv2DTranspose(
        channels,
        filters,
        (kh, kw),
        stride=pair(config.get("strides", 1)),
        padding=_padding(config),
        output_padding=None if output_padding is None else pair(output_padding),
        dilation=pair(config.get("dilation_rate", 1)),
        bias="bias" in shapes,
        activation=acts["activation"],
    )


def _build_pooling(cls: type) -> Build:
    def build(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
        require_channels_last(config, cls.__name__)
        strides = config.get("strides")
        return cls(
            pair(config.get("pool_size", 2)),
            None if strides is None else pair(strides),
            _padding(config),
        )

    return build


def _build_global(cls: type) -> Build:
    def build(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
        require_channels_last(config, cls.__name__)
        return cls(keepdims=bool(config.get("keepdims", False)))

    return build


def _build_zero_padding(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    require_channels_last(config, "ZeroPadding2D")
    return ZeroPadding2D(config.get("padding", 1))


def _build_cropping(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    require_channels_last(config, "Cropping2D")
    return Cropping2D(config.get("cropping", 0))


def _build_upsampling(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    require_channels_last(config, "UpSampling2D")
    interpolation = config.get("interpolation", "nearest")
    if interpolation not in UPSAMPLING_MODES:
        raise ConversionError(
            f"UpSampling2D interpolation {interpolation!r} is not supported "
            f"(one of {sorted(UPSAMPLING_MODES)})"
        )
    return UpSampling2D(config.get("size", 2), interpolation)


_kernel_weights = with_bias("kernel")
_separable_weights = with_bias("depthwise_kernel", "pointwise_kernel")


def _weighted(
    weights: Callable[[Config], tuple[str, ...]],
    build: Build,
    *rows,
    examples,
    emit: Emitter | None = None,
):
    """A convolution: its weights, rows, activation; Keras' convolutions drop the mask."""
    return LayerConverter(
        weights,
        build,
        simple_rows(weights, *rows),
        call_drop_mask,
        activations=("activation",),
        examples=examples,
        emit=emit,
    )


def _weightless(build: Build, *examples: Example, emit: Emitter | None = None) -> LayerConverter:
    return LayerConverter(no_weights, build, no_rows, call_drop_mask, examples=examples, emit=emit)


_BIAS = ("bias", "bias", "identity")

# --- parity port: the code of each call (channels-last in and out, torch's (B, C, H, W) inside)


def _pad_lines(
    kernel: Pair, stride: Pair, dilation: Pair, padding: str, fill: str = ""
) -> tuple[list[str], tuple[str, ...]]:
    """Keras' padding of the (B, C, H, W) {out0}: none, fixed pads for "same" at stride 1, else
    TensorFlow's size-dependent "same" (keras_layers.tf_same_pads)."""
    if padding == "valid":
        return [], ()
    if stride == (1, 1):
        (top, bottom), (left, right) = (
            same_padding(1, k, 1, d) for k, d in zip(kernel, dilation, strict=True)
        )
        if not any((left, right, top, bottom)):
            return [], ()
        return [f"{{out0}} = F.pad({{out0}}, ({left}, {right}, {top}, {bottom}){fill})"], ()
    pads = f"tf_same_pads({{out0}}, {kernel}, {stride}, {dilation})"
    return [f"{{out0}} = F.pad({{out0}}, {pads}{fill})"], ("tf_same_pads",)


def _conv_code(
    module: nn.Module, constructor: str, state: Callable[[nn.Module], dict[str, Tensor]] | None
) -> Emitted:
    pads, helpers = _pad_lines(
        module.kernel_size, module.stride, module.dilation, module.keras_padding
    )
    lines = ["{out0} = {x0}.permute(0, 3, 1, 2)", *pads]
    lines += ["{out0} = {self}({out0})", "{out0} = {out0}.permute(0, 2, 3, 1)"]
    if module.activation != "linear":
        code, more = activation_code(module.activation, "{out0}")
        lines.append(f"{{out0}} = {code}")
        helpers += more
    return Emitted(constructor, tuple(lines), ("None",), helpers, state)


def _conv_options(module: nn.Module, groups: int = 1) -> str:
    options = f", stride={module.stride}" if module.stride != (1, 1) else ""
    options += f", dilation={module.dilation}" if module.dilation != (1, 1) else ""
    options += f", groups={groups}" if groups != 1 else ""
    return options + ("" if module.bias is not None else ", bias=False")


def _emit_conv2d(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    constructor = (
        f"nn.Conv2d({module.in_channels}, {module.out_channels}, {module.kernel_size}"
        f"{_conv_options(module, module.groups)})"
    )
    return _conv_code(module, constructor, None)


def _depthwise_state(module: nn.Module) -> dict[str, Tensor]:
    """parity's (in, multiplier, kh, kw) weight as a grouped nn.Conv2d's (in * mult, 1, kh, kw)."""
    state = {"weight": module.weight.detach().reshape(-1, 1, *module.kernel_size)}
    if module.bias is not None:
        state["bias"] = module.bias.detach()
    return state


def _emit_depthwise(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    channels = module.in_channels * module.depth_multiplier
    constructor = (
        f"nn.Conv2d({module.in_channels}, {channels}, {module.kernel_size}"
        f"{_conv_options(module, module.in_channels)})"
    )
    return _conv_code(module, constructor, _depthwise_state)


def _emit_max_pooling(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    pads, helpers = _pad_lines(
        module.pool_size, module.strides, (1, 1), module.padding, ', value=float("-inf")'
    )
    lines = ["{out0} = {x0}.permute(0, 3, 1, 2)", *pads]
    lines.append(f"{{out0}} = F.max_pool2d({{out0}}, {module.pool_size}, {module.strides})")
    lines.append("{out0} = {out0}.permute(0, 2, 3, 1)")
    return Emitted(None, tuple(lines), ("None",), helpers)


def _emit_average_pooling(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    if module.padding != "valid":  # Keras leaves the padding out of the average
        raise ConversionError("parity port: AveragePooling2D padding='same' has no emitter")
    lines = (
        "{out0} = {x0}.permute(0, 3, 1, 2)",
        f"{{out0}} = F.avg_pool2d({{out0}}, {module.pool_size}, {module.strides})",
        "{out0} = {out0}.permute(0, 2, 3, 1)",
    )
    return Emitted(None, lines, ("None",))


def _emit_global(reduce: str) -> Emitter:
    def emit(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
        code = f"{{x0}}.{reduce}(dim=(1, 2), keepdim={module.keepdims})"
        return Emitted(None, (f"{{out0}} = {code}",), ("None",))

    return emit


def _emit_zero_padding(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    (top, bottom), (left, right) = module.padding
    code = f"F.pad({{x0}}, (0, 0, {left}, {right}, {top}, {bottom}))"
    return Emitted(None, (f"{{out0}} = {code}",), ("None",))


CONVERTERS: dict[str, LayerConverter] = {
    "Conv2D": _weighted(
        _kernel_weights,
        _build_conv2d,
        ("kernel", "weight", "conv2d_kernel"),
        _BIAS,
        examples=(
            Example(
                {
                    "filters": 4,
                    "kernel_size": [2, 3],
                    "strides": 2,
                    "padding": "same",
                    "activation": "tanh",
                },
                "image",
            ),
        ),
        emit=_emit_conv2d,
    ),
    "DepthwiseConv2D": _weighted(
        _kernel_weights,
        _build_depthwise,
        ("kernel", "weight", "depthwise2d_kernel"),
        _BIAS,
        examples=(Example({"kernel_size": 3, "depth_multiplier": 2, "padding": "same"}, "image"),),
        emit=_emit_depthwise,
    ),
    "SeparableConv2D": _weighted(
        _separable_weights,
        _build_separable,
        ("depthwise_kernel", "depthwise.weight", "depthwise2d_kernel"),
        ("pointwise_kernel", "pointwise.weight", "conv2d_kernel"),
        ("bias", "pointwise.bias", "identity"),
        examples=(
            Example(
                {
                    "filters": 4,
                    "kernel_size": 3,
                    "depth_multiplier": 2,
                    "strides": 2,
                    "padding": "same",
                },
                "image",
            ),
        ),
    ),
    "Conv2DTranspose": _weighted(
        _kernel_weights,
        _build_transpose,
        ("kernel", "weight", "conv2d_transpose_kernel"),
        _BIAS,
        examples=(
            Example({"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, "image"),
        ),
    ),
    "MaxPooling2D": _weightless(
        _build_pooling(MaxPooling2D),
        Example({"pool_size": 3, "strides": 2, "padding": "same"}, "image"),
        emit=_emit_max_pooling,
    ),
    "AveragePooling2D": _weightless(
        _build_pooling(AveragePooling2D),
        Example({"pool_size": 3, "strides": 2, "padding": "same"}, "image"),
        emit=_emit_average_pooling,
    ),
    "GlobalAveragePooling2D": _weightless(
        _build_global(GlobalAveragePooling2D),
        Example({}, "image"),
        Example({"keepdims": True}, "image"),
        emit=_emit_global("mean"),
    ),
    "GlobalMaxPooling2D": _weightless(
        _build_global(GlobalMaxPooling2D),
        Example({}, "image"),
        Example({"keepdims": True}, "image"),
        emit=_emit_global("amax"),
    ),
    "ZeroPadding2D": _weightless(
        _build_zero_padding,
        Example({"padding": [[1, 2], [0, 3]]}, "image"),
        emit=_emit_zero_padding,
    ),
    "Cropping2D": _weightless(_build_cropping, Example({"cropping": [[1, 2], [0, 3]]}, "image")),
    "UpSampling2D": _weightless(
        _build_upsampling,
        Example({"size": [2, 3]}, "image"),
        Example({"size": 2, "interpolation": "bilinear"}, "image"),
    ),
}


# --- Keras' default initialization of these modules (parity.init.keras_init_) ---------------

#: Axes of (fan_in, fan_out) of parity's DepthwiseConv2D weight (in, depth_multiplier, kh, kw):
#: Keras computes fans on its (kh, kw, in, depth_multiplier) kernel, i.e. in * k and mult * k.
DEPTHWISE_FAN_AXES = (0, 1)


@torch.no_grad()
def _init_depthwise(m: nn.Module) -> None:
    glorot_uniform_(m.weight, DEPTHWISE_FAN_AXES)
    zeros_(m.bias)


#: Module type -> its Keras default initialization. torch's ConvTranspose2d weight (in, out, kh,
#: kw) is Keras' (kh, kw, out, in) reordered: the same fans on its axes.
INIT_RULES: dict[type, InitRule] = {
    nn.Conv2d: kernel_and_bias_,
    nn.ConvTranspose2d: kernel_and_bias_,
    DepthwiseConv2D: _init_depthwise,
}


# --- weight layouts: Keras <-> torch (parity.convert.transforms) -------------------------------


def _conv2d_kernel_to_torch(array: np.ndarray) -> np.ndarray:
    # Keras Conv2D kernel (kh, kw, in, out) -> torch Conv2d weight (out, in, kh, kw). The same
    # permutation takes Conv2DTranspose's (kh, kw, out, in) to ConvTranspose2d's (in, out, kh, kw).
    return np.ascontiguousarray(array.transpose(3, 2, 0, 1))


def _conv2d_kernel_to_keras(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))


def _depthwise2d_kernel(array: np.ndarray) -> np.ndarray:
    # Keras DepthwiseConv2D kernel (kh, kw, in, mult) <-> parity's DepthwiseConv2D weight
    # (in, mult, kh, kw) (torch's grouped (in * mult, 1, kh, kw) before flattening, so the
    # inverse needs no sizes): swap the two pairs of axes, its own inverse.
    return np.ascontiguousarray(array.transpose(2, 3, 0, 1))


TRANSFORMS: dict[str, Transform] = {
    "conv2d_kernel": Transform(_conv2d_kernel_to_torch, _conv2d_kernel_to_keras),
    "conv2d_transpose_kernel": Transform(_conv2d_kernel_to_torch, _conv2d_kernel_to_keras),
    "depthwise2d_kernel": Transform(_depthwise2d_kernel, _depthwise2d_kernel),
}
