"""Keras' image preprocessing layers inside a model: Resizing, CenterCrop and the random
augmentation layers (RandomFlip, RandomRotation, RandomZoom, RandomCrop, ...).

Parity notes:
- Images are channels-last (B, H, W, C), as Keras feeds them.
- Resizing is TensorFlow's tf.image.resize without antialiasing: bilinear with half-pixel
  centres (torch's align_corners=False sampling), computed as TensorFlow's kernel does (float32
  sample positions and weights, width then height), and nearest with half-pixel centres
  (torch's "nearest-exact"). TensorFlow resizes bilinearly in float32 whatever the input dtype
  and Keras casts the result back, so a float64 model is resized in float32 here too.
- crop_to_aspect_ratio (and Keras' smart_resize, which CenterCrop uses on images smaller than
  its target) first takes the centred window of the target's aspect ratio, sized with Keras'
  float32 arithmetic, then resizes bilinearly.
- Random augmentation layers are the identity at inference in Keras, and here (Keras 2's
  RandomCrop resizes with smart_resize instead; Keras 3's returns its input). In training Keras
  draws a random transformation; parity does not port those draws, and a converted model that
  silently skipped them while fine-tuning would train differently from Keras without saying so.
  So a RandomAugmentation module raises in training mode until told otherwise:
  ``skip_augmentation_(model)`` makes every such layer pass its input on in training too
  (augment in your data pipeline instead), deliberately.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Resizing interpolations ported, as Keras names them -> torch's interpolate mode.
INTERPOLATIONS: dict[str, str] = {"bilinear": "bilinear", "nearest": "nearest-exact"}
#: What a RandomAugmentation module does in training mode: refuse, or pass its input on.
TRAINING_BEHAVIOURS = ("raise", "identity")


def aspect_crop_box(height: int, width: int, target: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width): the centred window of the target's aspect ratio,
    computed as Keras does (float32 division, truncation, at least one pixel)."""
    th, tw = target
    crop_h = int(np.float32(width * th) / np.float32(tw))
    crop_w = int(np.float32(height * tw) / np.float32(th))
    crop_h, crop_w = max(min(height, crop_h), 1), max(min(width, crop_w), 1)
    top = int(np.float32(height - crop_h) / np.float32(2))
    left = int(np.float32(width - crop_w) / np.float32(2))
    return top, left, crop_h, crop_w


def _half_pixel_lerp(size_in: int, size_out: int) -> tuple[Tensor, Tensor, Tensor]:
    """TensorFlow's bilinear sampling along one axis, in its float32 arithmetic: source position
    (i + 0.5) * (in / out) - 0.5, its floor and ceil clamped to the image, and the fraction."""
    scale = np.float32(size_in) / np.float32(size_out)
    src = (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(src)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(src), size_in - 1).astype(np.int64)
    return torch.from_numpy(lower), torch.from_numpy(upper), torch.from_numpy(src - floor)


def _tf_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """tf.image.resize bilinear (half-pixel centres, no antialiasing) of (B, H, W, C) float32
    images, interpolated in TensorFlow's order: along the width, then the height."""
    (y0, y1, ly), (x0, x1, lx) = (
        _half_pixel_lerp(n, m) for n, m in zip(x.shape[1:3], size, strict=True)
    )
    ly, lx = ly.to(x.device).view(1, -1, 1, 1), lx.to(x.device).view(1, 1, -1, 1)
    top, bottom = x[:, y0.to(x.device)], x[:, y1.to(x.device)]  # (B, h, W, C)
    x0, x1 = x0.to(x.device), x1.to(x.device)
    top = top[:, :, x0] + (top[:, :, x1] - top[:, :, x0]) * lx  # (B, h, w, C)
    bottom = bottom[:, :, x0] + (bottom[:, :, x1] - bottom[:, :, x0]) * lx
    return top + (bottom - top) * ly


def resize_images(
    x: Tensor, size: tuple[int, int], interpolation: str = "bilinear", crop_to_aspect: bool = False
) -> Tensor:
    """tf.image.resize of channels-last images (B, H, W, C) -> (B, h, w, C)."""
    if x.dim() != 4:
        raise ValueError(f"expected channels-last images (B, H, W, C), got {tuple(x.shape)}")
    if crop_to_aspect:
        top, left, h, w = aspect_crop_box(x.shape[1], x.shape[2], size)
        x = x[:, top : top + h, left : left + w, :]
    if interpolation == "bilinear":  # TensorFlow's bilinear kernel computes in float32
        return _tf_bilinear(x.float(), size).to(x.dtype)
    out = F.interpolate(x.permute(0, 3, 1, 2), size=size, mode=INTERPOLATIONS[interpolation])
    return out.permute(0, 2, 3, 1)  # (B, h, w, C)


class Resizing(nn.Module):
    """keras.layers.Resizing: resize channels-last images to (height, width)."""

    def __init__(
        self,
        height: int,
        width: int,
        interpolation: str = "bilinear",
        crop_to_aspect_ratio: bool = False,
    ) -> None:
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={interpolation!r}: expected {list(INTERPOLATIONS)}")
        self.size = (height, width)
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = crop_to_aspect_ratio

    def forward(self, x: Tensor) -> Tensor:
        return resize_images(x, self.size, self.interpolation, self.crop_to_aspect_ratio)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, interpolation={self.interpolation!r}, "
            f"crop_to_aspect_ratio={self.crop_to_aspect_ratio}"
        )


def smart_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """keras.preprocessing.image.smart_resize: centred aspect-ratio crop, then bilinear."""
    return resize_images(x, size, "bilinear", crop_to_aspect=True)


class CenterCrop(nn.Module):
    """keras.layers.CenterCrop: the centred (height, width) window; an image smaller than that
    on either side is smart-resized to it instead, as Keras does."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.size = (height, width)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected channels-last images (B, H, W, C), got {tuple(x.shape)}")
        h_diff, w_diff = x.shape[1] - self.size[0], x.shape[2] - self.size[1]
        if h_diff < 0 or w_diff < 0:
            return smart_resize(x, self.size)
        top, left = h_diff // 2, w_diff // 2
        return x[:, top : top + self.size[0], left : left + self.size[1], :]

    def extra_repr(self) -> str:
        return f"size={self.size}"


class RandomAugmentation(nn.Module):
    """A Keras random augmentation layer (RandomFlip, RandomRotation, ...): Keras' inference
    behaviour (``inference``, default the identity); in training mode it raises unless
    ``in_training`` is "identity" (see the module docstring and ``skip_augmentation_``)."""

    def __init__(
        self,
        keras_class: str,
        inference: Callable[[Tensor], Tensor] | None = None,
        in_training: str = "raise",
    ) -> None:
        super().__init__()
        if in_training not in TRAINING_BEHAVIOURS:
            raise ValueError(f"in_training={in_training!r}: expected one of {TRAINING_BEHAVIOURS}")
        self.keras_class = keras_class
        self.inference = inference
        self.in_training = in_training

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.in_training == "raise":
            raise RuntimeError(
                f"{self.keras_class} augments its input at random in Keras training; parity "
                "does not port the augmentation, so training through it would silently differ "
                "from Keras. Augment in your data pipeline and call "
                "parity.layers.image_preprocessing.skip_augmentation_(model) to pass inputs "
                "through unchanged, or put the model in eval mode."
            )
        return x if self.inference is None else self.inference(x)

    def extra_repr(self) -> str:
        return f"{self.keras_class}, in_training={self.in_training!r}"


def skip_augmentation_(module: nn.Module, in_training: str = "identity") -> int:
    """Set every RandomAugmentation inside ``module`` to ``in_training`` ("identity": pass the
    input on in training mode too; "raise": refuse again). Returns how many were set."""
    if in_training not in TRAINING_BEHAVIOURS:
        raise ValueError(f"in_training={in_training!r}: expected one of {TRAINING_BEHAVIOURS}")
    found = [m for m in module.modules() if isinstance(m, RandomAugmentation)]
    for m in found:
        m.in_training = in_training
    return len(found)
