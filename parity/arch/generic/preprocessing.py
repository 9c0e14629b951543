"""Preprocessing layers inside a model: Rescaling, Normalization (last axis).

Parity notes:
- Both keep a mask as Keras does (they are element-wise).
- Normalization with statistics given in the config (mean=, variance=) instead of adapted
  weights, over other axes, or with invert=True is refused by name.
"""

from __future__ import annotations

from torch import nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    Shapes,
    call_keep_mask,
    no_rows,
    no_weights,
    simple_rows,
)
from parity.errors import ConversionError
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


CONVERTERS: dict[str, LayerConverter] = {
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
