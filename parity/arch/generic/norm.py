"""Normalisation: BatchNormalization (Keras' momentum, epsilon and biased variance), LayerNorm."""

from __future__ import annotations

from torch import nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    Shapes,
    call_keep_mask,
    simple_rows,
    single,
)
from parity.conventions import BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM, LAYER_NORM_EPSILON
from parity.errors import ConversionError
from parity.layers import BatchNormalization, LayerNormalization


def _bn_weights(config: Config) -> tuple[str, ...]:
    names = ("gamma",) if config.get("scale", True) else ()
    names += ("beta",) if config.get("center", True) else ()
    return (*names, "moving_mean", "moving_variance")


def _ln_weights(config: Config) -> tuple[str, ...]:
    names = ("gamma",) if config.get("scale", True) else ()
    return names + (("beta",) if config.get("center", True) else ())


def _build_batch_norm(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    (features,) = shapes["moving_mean"]
    axis = config.get("axis", -1)
    # tf.keras writes one axis as an int and several as a list; axis 0 would be the batch.
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if not isinstance(axis, int) or axis == 0:
        raise ConversionError(f"BatchNormalization over axis {axis!r} is not supported")
    return BatchNormalization(
        features,
        eps=config.get("epsilon", BATCH_NORM_EPSILON),
        momentum=config.get("momentum", BATCH_NORM_MOMENTUM),
        scale=config.get("scale", True),
        center=config.get("center", True),
        axis=axis,
    )


def _build_layer_norm(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    axis = config.get("axis", -1)
    if single(axis) != -1 and not (isinstance(axis, list) and len(axis) == 1):
        raise ConversionError(f"LayerNormalization over axis {axis!r} is not supported")
    scale, center = config.get("scale", True), config.get("center", True)
    if not shapes or (center and not scale):
        raise ConversionError("LayerNormalization needs scale=True (torch couples weight/bias)")
    (features,) = next(iter(shapes.values()))
    return LayerNormalization(
        features, eps=config.get("epsilon", LAYER_NORM_EPSILON), bias=bool(center)
    )


CONVERTERS: dict[str, LayerConverter] = {
    "BatchNormalization": LayerConverter(
        _bn_weights,
        _build_batch_norm,
        simple_rows(
            _bn_weights,
            ("gamma", "weight", "identity"),
            ("beta", "bias", "identity"),
            ("moving_mean", "running_mean", "identity"),
            ("moving_variance", "running_var", "identity"),
        ),
        call_keep_mask,
        examples=(
            Example({"epsilon": 0.01}, "embedded"),
            Example({"axis": -1}, "image"),
            Example({"axis": 1}, "sequence"),  # channels-first style: (B, C, T)
        ),
    ),
    "LayerNormalization": LayerConverter(
        _ln_weights,
        _build_layer_norm,
        simple_rows(_ln_weights, ("gamma", "weight", "identity"), ("beta", "bias", "identity")),
        call_keep_mask,
        examples=(Example({}, "embedded"),),
    ),
}
