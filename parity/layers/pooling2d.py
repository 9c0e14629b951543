"""Keras' 2-D pooling, padding, cropping and upsampling layers on channels-last (B, H, W, C).

Parity notes:

- "same" pooling pads the TensorFlow way per axis (extra row at the bottom, extra column on the
  right); padded cells never win a max and are not counted in an average (TF's SAME average
  pooling divides by the number of real cells in each window).
- GlobalAverage/GlobalMaxPooling2D reduce H and W; keepdims=True keeps them as size 1.
- UpSampling2D "nearest" repeats rows then columns; "bilinear" is tf.image.resize's bilinear
  (half-pixel centres), which for upsampling is F.interpolate(align_corners=False).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity.layers.conv2d import PADDINGS_2D, Pair, pair, same_pads_2d

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
