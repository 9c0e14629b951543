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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity.layers.activations import ActivationSlot
from parity.layers.conv import same_padding

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
