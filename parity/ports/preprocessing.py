"""Keras' preprocessing layers that are part of a model's forward pass: Rescaling, Normalization.

Parity notes:
- Rescaling computes x * scale + offset; scale and offset are constants of the config (scalars,
  or per-channel lists broadcast over the last axis, channels-last).
- Normalization computes (x - mean) / max(sqrt(variance), KERAS_EPSILON) with the statistics
  ``adapt`` stored as non-trainable weights (buffers here, as they never train), broadcast over
  the last axis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity.conventions import KERAS_EPSILON
from parity.errors import ConversionError
from parity.ports.registry import (
    MAX_DECLARED_SIZE,
    Config,
    Emitted,
    Example,
    LayerConverter,
    Shapes,
    call_drop_mask,
    call_keep_mask,
    no_rows,
    no_weights,
    require_channels_last,
    simple_rows,
    written_by_keras3,
)


class Rescaling(nn.Module):
    """keras.layers.Rescaling: x * scale + offset."""

    def __init__(self, scale: float | list[float], offset: float | list[float] = 0.0) -> None:
        super().__init__()
        # Config constants, not state: kept as numbers so the strict loader expects no weights.
        self.scale, self.offset = scale, offset

    def forward(self, x: Tensor) -> Tensor:
        scale = torch.as_tensor(self.scale, dtype=x.dtype, device=x.device)
        offset = torch.as_tensor(self.offset, dtype=x.dtype, device=x.device)
        return x * scale + offset

    def extra_repr(self) -> str:
        return f"scale={self.scale}, offset={self.offset}"


class Normalization(nn.Module):
    """keras.layers.Normalization over the last axis, with adapted statistics."""

    def __init__(self, features: int, eps: float = KERAS_EPSILON) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("variance", torch.ones(features))
        # Keras keeps the number of samples adapt saw; it does not enter the computation.
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / torch.clamp_min(torch.sqrt(self.variance), self.eps)

    def extra_repr(self) -> str:
        return f"{self.mean.shape[0]}, eps={self.eps}"


# ------------------------------------------------------------------------------------------------
# Keras' image preprocessing layers inside a model: Resizing, CenterCrop and the random
# augmentation layers (RandomFlip, RandomRotation, RandomZoom, RandomCrop, ...).
#
# Parity notes:
# - Images are channels-last (B, H, W, C), as Keras feeds them.
# - Resizing is TensorFlow's tf.image.resize without antialiasing: bilinear with half-pixel
#   centres (torch's align_corners=False sampling), computed as TensorFlow's kernel does (float32
#   sample positions and weights, width then height), and nearest with half-pixel centres
#   (torch's "nearest-exact"). TensorFlow resizes bilinearly in float32 whatever the input dtype
#   and Keras casts the result back, so a float64 model is resized in float32 here too.
# - crop_to_aspect_ratio (and Keras' smart_resize, which CenterCrop uses on images smaller than
#   its target) first takes the centred window of the target's aspect ratio, sized with Keras'
#   float32 arithmetic, then resizes bilinearly.
# - Random augmentation layers are the identity at inference in Keras, and here (Keras 2's
#   RandomCrop resizes with smart_resize instead; Keras 3's returns its input). In training Keras
#   draws a random transformation; parity does not port those draws, and a converted model that
#   silently skipped them while fine-tuning would train differently from Keras without saying so.
#   So a RandomAugmentation module raises in training mode until told otherwise:
#   ``skip_augmentation_(model)`` makes every such layer pass its input on in training too
#   (augment in your data pipeline instead), deliberately.

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
                "parity.ports.preprocessing.skip_augmentation_(model) to pass inputs "
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


# ------------------------------------------------------------------------------------------------
# Preprocessing layers inside a model: Rescaling, Normalization (last axis), the image layers
# Resizing and CenterCrop, and Keras' random augmentation layers.
#
# Parity notes:
# - Rescaling and Normalization keep a mask as Keras does (they are element-wise).
# - Normalization with statistics given in the config (mean=, variance=) instead of adapted
#   weights, over other axes, or with invert=True is refused by name.
# - Resizing: bilinear and nearest, with or without crop_to_aspect_ratio; other interpolations
#   (bicubic, lanczos, area: TensorFlow's kernels differ from torch's), antialias=True,
#   pad_to_aspect_ratio=True and channels_first are refused by name.
# - Random augmentation layers (RANDOM_AUGMENTATIONS) are the identity at inference, as in Keras;
#   Keras 2's RandomCrop smart-resizes to its size at inference, Keras 3's returns its input. In
#   training the converted layers raise unless parity.ports.preprocessing.
#   skip_augmentation_ was called: Keras would augment there, and a model fine-tuned through
#   layers that silently do nothing would differ from Keras without a word.

NORMALIZATION_WEIGHTS = ("mean", "variance", "count")
#: Axis spellings that mean "the last axis" (Keras 3 writes [rank - 1] for images, [-1] else).
LAST_AXIS_VALUES = (-1, None)


def _number_or_list(config: Config, key: str, default: float) -> float | list[float]:
    value = config.get(key, default)
    ok = isinstance(value, int | float) or (
        isinstance(value, list) and value and all(isinstance(v, int | float) for v in value)
    )
    if not ok or isinstance(value, bool):
        raise ConversionError(f"Rescaling {key}={value!r}: expected a number or list of numbers")
    return value


def _normalization_weights(config: Config) -> tuple[str, ...]:
    return NORMALIZATION_WEIGHTS


def _build_normalization(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    if config.get("mean") is not None or config.get("variance") is not None:
        raise ConversionError("Normalization with mean/variance in its config is not supported")
    if config.get("invert"):
        raise ConversionError("Normalization(invert=True) is not supported")
    axis = config.get("axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    mean_shape = tuple(shapes.get("mean", ()))
    if len(axes) != 1 or len(mean_shape) != 1:
        raise ConversionError(
            f"Normalization over axis {axis!r} (statistics {mean_shape}) is not supported; "
            "only the last axis"
        )
    if tuple(shapes.get("variance", ())) != mean_shape:
        raise ConversionError("Normalization's mean and variance differ in shape")
    return Normalization(mean_shape[0])


def _check_last_axis(module: nn.Module, config: Config, xs: list, masks: list):
    """Normalization's statistics broadcast over the last axis only: a config naming another
    axis of a higher-rank input is refused when the model first runs, not computed wrongly."""
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in LAST_AXIS_VALUES and axis != xs[0].dim() - 1:
        raise ValueError(f"Normalization over axis {axis} of a rank-{xs[0].dim()} input")
    return call_keep_mask(module, config, xs, masks)


def _side(config: Config, key: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DECLARED_SIZE:
        raise ConversionError(f"{key}={value!r}: expected a positive image size")
    return value


def _build_resizing(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    require_channels_last(config, "Resizing")
    interpolation = config.get("interpolation", "bilinear")
    if interpolation not in INTERPOLATIONS:
        raise ConversionError(
            f"Resizing interpolation={interpolation!r} is not supported; only "
            f"{', '.join(INTERPOLATIONS)} (TensorFlow's other kernels differ from torch's)"
        )
    for key in ("antialias", "pad_to_aspect_ratio"):
        if config.get(key):
            raise ConversionError(f"Resizing {key}=True is not supported")
    return Resizing(
        _side(config, "height"),
        _side(config, "width"),
        interpolation,
        bool(config.get("crop_to_aspect_ratio")),
    )


def _build_center_crop(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    require_channels_last(config, "CenterCrop")
    return CenterCrop(_side(config, "height"), _side(config, "width"))


def _build_random_crop(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    """Keras 3: the identity at inference; Keras 2: smart_resize to (height, width)."""
    require_channels_last(config, "RandomCrop")
    size = (_side(config, "height"), _side(config, "width"))
    if written_by_keras3(config):
        return RandomAugmentation("RandomCrop")
    return RandomAugmentation("RandomCrop", functools.partial(smart_resize, size=size))


#: Keras' random augmentation layers that are the identity at inference (Keras 3.15 and tf.keras
#: 2.21; RandomCrop is converted on its own), with a config for each example.
RANDOM_AUGMENTATIONS: dict[str, Config] = {
    "RandomFlip": {"mode": "horizontal_and_vertical"},
    "RandomRotation": {"factor": 0.2},
    "RandomZoom": {"height_factor": 0.2},
    "RandomTranslation": {"height_factor": 0.2, "width_factor": 0.1},
    "RandomContrast": {"factor": 0.5},
    "RandomBrightness": {"factor": 0.3},
    "RandomGrayscale": {},
    "RandomHue": {"factor": 0.3},
    "RandomSaturation": {"factor": 0.3},
    "RandomSharpness": {"factor": 0.3},
    "RandomShear": {"x_factor": 0.3},
    "RandomColorJitter": {"brightness_factor": 0.2},
    "RandomColorDegeneration": {"factor": 0.3},
    "RandomPosterization": {"factor": [1, 4]},
    "RandomInvert": {},
    "RandomErasing": {},
    "RandomGaussianBlur": {},
    "RandomElasticTransform": {},
    "RandomPerspective": {},
}


def _random(cls: str) -> LayerConverter:
    return LayerConverter(
        no_weights,
        lambda c, s, a: RandomAugmentation(cls),
        no_rows,
        call_drop_mask,
        examples=(Example(RANDOM_AUGMENTATIONS[cls], "image"),),
    )


def _number_code(value: float | list[float], like: str) -> str:
    """A Rescaling constant as code: a number, or a per-channel tensor like ``like``."""
    if isinstance(value, list):
        numbers = ", ".join(repr(float(v)) for v in value)
        return f"{like}.new_tensor([{numbers}])"
    return repr(float(value))


def _emit_rescaling(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    scale, offset = _number_code(module.scale, "{x0}"), _number_code(module.offset, "{x0}")
    return Emitted(None, (f"{{out0}} = {{x0}} * {scale} + {offset}",), ("{m0}",))


def _emit_normalization(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    constructor = f"Normalization({module.mean.shape[0]}, eps={module.eps!r})"
    return Emitted(constructor, ("{out0} = {self}({x0})",), ("{m0}",), ("Normalization",))


CONVERTERS: dict[str, LayerConverter] = {
    "Resizing": LayerConverter(
        no_weights,
        _build_resizing,
        no_rows,
        call_drop_mask,
        examples=(
            Example({"height": 5, "width": 6}, "image"),
            Example({"height": 13, "width": 11, "interpolation": "nearest"}, "image"),
            Example({"height": 4, "width": 3, "interpolation": "nearest"}, "image"),
            Example({"height": 12, "width": 7, "crop_to_aspect_ratio": True}, "image"),
            Example({"height": 3, "width": 6, "crop_to_aspect_ratio": True}, "image"),
        ),
    ),
    "CenterCrop": LayerConverter(
        no_weights,
        _build_center_crop,
        no_rows,
        call_drop_mask,
        examples=(
            Example({"height": 5, "width": 4}, "image"),
            Example({"height": 6, "width": 8}, "image"),
            Example({"height": 12, "width": 6}, "image"),  # taller than the image: smart_resize
        ),
    ),
    "RandomCrop": LayerConverter(
        no_weights,
        _build_random_crop,
        no_rows,
        call_drop_mask,
        examples=(Example({"height": 5, "width": 6}, "image"),),
        versioned=True,
    ),
    **{cls: _random(cls) for cls in RANDOM_AUGMENTATIONS},
    "Rescaling": LayerConverter(
        no_weights,
        lambda c, s, a: Rescaling(
            _number_or_list(c, "scale", 1.0), _number_or_list(c, "offset", 0.0)
        ),
        no_rows,
        call_keep_mask,
        examples=(
            Example({"scale": 0.5, "offset": -1.0}, "image"),
            Example({"scale": [0.5, 2.0, 1.0], "offset": 0.25}, "sequence"),
        ),
        emit=_emit_rescaling,
    ),
    "Normalization": LayerConverter(
        _normalization_weights,
        _build_normalization,
        simple_rows(
            _normalization_weights,
            ("mean", "mean", "identity"),
            ("variance", "variance", "identity"),
            ("count", "count", "identity"),
        ),
        _check_last_axis,
        examples=(
            Example({"axis": -1, "mean": None, "variance": None}, "image"),
            Example({"axis": -1}, "sequence"),
        ),
        emit=_emit_normalization,
    ),
}
