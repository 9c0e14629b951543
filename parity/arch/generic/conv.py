"""Convolutions: Conv1D (channels-last; Keras 1's Convolution1D is normalised to it)."""

from __future__ import annotations

from torch import nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    Shapes,
    call_drop_mask,
    declared,
    require_channels_last,
    simple_rows,
    single,
    with_bias,
)
from parity.errors import ConversionError
from parity.layers import KERAS_PADDINGS, Conv1D

_conv_weights = with_bias("kernel")


def _build_conv1d(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    size, fan_in, filters = shapes["kernel"]
    declared(config, "filters", filters, "the kernel")
    declared({"kernel_size": single(config.get("kernel_size"))}, "kernel_size", size, "the kernel")
    padding = config.get("padding", "valid")
    require_channels_last(config, "Conv1D")
    if padding not in KERAS_PADDINGS:
        raise ConversionError(f"Conv1D padding {padding!r} is not supported")
    if config.get("groups", 1) != 1:
        raise ConversionError("Conv1D with groups > 1 is not supported")
    return Conv1D(
        fan_in,
        filters,
        size,
        stride=single(config.get("strides", 1)),
        padding=padding,
        dilation=single(config.get("dilation_rate", 1)),
        bias="bias" in shapes,
        activation=acts["activation"],
    )


CONVERTERS: dict[str, LayerConverter] = {
    "Conv1D": LayerConverter(
        _conv_weights,
        _build_conv1d,
        simple_rows(
            _conv_weights, ("kernel", "weight", "conv1d_kernel"), ("bias", "bias", "identity")
        ),
        call_drop_mask,  # Keras' Conv1D does not support masking
        activations=("activation",),
        examples=(Example({"filters": 5, "kernel_size": 3, "strides": 2, "padding": "same"}),),
    ),
}
