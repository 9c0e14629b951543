"""Preprocessing layers inside a model: Rescaling, Normalization (last axis), the image layers
Resizing and CenterCrop, and Keras' random augmentation layers.

Parity notes:
- Rescaling and Normalization keep a mask as Keras does (they are element-wise).
- Normalization with statistics given in the config (mean=, variance=) instead of adapted
  weights, over other axes, or with invert=True is refused by name.
- Resizing: bilinear and nearest, with or without crop_to_aspect_ratio; other interpolations
  (bicubic, lanczos, area: TensorFlow's kernels differ from torch's), antialias=True,
  pad_to_aspect_ratio=True and channels_first are refused by name.
- Random augmentation layers (RANDOM_AUGMENTATIONS) are the identity at inference, as in Keras;
  Keras 2's RandomCrop smart-resizes to its size at inference, Keras 3's returns its input. In
  training the converted layers raise unless parity.layers.image_preprocessing.
  skip_augmentation_ was called: Keras would augment there, and a model fine-tuned through
  layers that silently do nothing would differ from Keras without a word.
"""

from __future__ import annotations

import functools

from torch import nn

from parity.arch.generic.converter import (
    MAX_DECLARED_SIZE,
    Config,
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
from parity.errors import ConversionError
from parity.layers.image_preprocessing import (
    INTERPOLATIONS,
    CenterCrop,
    RandomAugmentation,
    Resizing,
    smart_resize,
)
from parity.layers.preprocessing import Normalization, Rescaling

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
    ),
}
