"""2-D vision layers, channels-last as Keras runs them: Conv2D, DepthwiseConv2D,
SeparableConv2D, Conv2DTranspose, Max/AveragePooling2D, GlobalMax/GlobalAveragePooling2D,
ZeroPadding2D, Cropping2D, UpSampling2D (Keras 1's Convolution2D is normalised to Conv2D).

Parity notes: every module takes and returns (B, H, W, C), so a converted model takes Keras' own
input layout and Flatten stays a row-major reshape; padding, pooling and transposed-convolution
sizes follow TensorFlow (see parity.layers.conv2d and parity.layers.pooling2d).
data_format="channels_first" and Keras 1's dim_ordering="th" are refused by name: the first
would need every layer to agree on a layout, the second stores Theano's flipped kernels (or not,
under Keras 1's TensorFlow backend) and the file does not say which.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    Shapes,
    call_drop_mask,
    declared,
    no_rows,
    no_weights,
    require_channels_last,
    simple_rows,
    with_bias,
)
from parity.errors import ConversionError
from parity.layers.conv2d import (
    PADDINGS_2D,
    Conv2D,
    Conv2DTranspose,
    DepthwiseConv2D,
    SeparableConv2D,
    pair,
)
from parity.layers.pooling2d import (
    UPSAMPLING_MODES,
    AveragePooling2D,
    Cropping2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
    UpSampling2D,
    ZeroPadding2D,
)

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


def _weighted(weights: Callable[[Config], tuple[str, ...]], build: Build, *rows, examples):
    """A convolution: its weights, rows, activation; Keras' convolutions drop the mask."""
    return LayerConverter(
        weights,
        build,
        simple_rows(weights, *rows),
        call_drop_mask,
        activations=("activation",),
        examples=examples,
    )


def _weightless(build: Build, *examples: Example) -> LayerConverter:
    return LayerConverter(no_weights, build, no_rows, call_drop_mask, examples=examples)


_BIAS = ("bias", "bias", "identity")

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
    ),
    "DepthwiseConv2D": _weighted(
        _kernel_weights,
        _build_depthwise,
        ("kernel", "weight", "depthwise2d_kernel"),
        _BIAS,
        examples=(Example({"kernel_size": 3, "depth_multiplier": 2, "padding": "same"}, "image"),),
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
    ),
    "AveragePooling2D": _weightless(
        _build_pooling(AveragePooling2D),
        Example({"pool_size": 3, "strides": 2, "padding": "same"}, "image"),
    ),
    "GlobalAveragePooling2D": _weightless(
        _build_global(GlobalAveragePooling2D),
        Example({}, "image"),
        Example({"keepdims": True}, "image"),
    ),
    "GlobalMaxPooling2D": _weightless(
        _build_global(GlobalMaxPooling2D),
        Example({}, "image"),
        Example({"keepdims": True}, "image"),
    ),
    "ZeroPadding2D": _weightless(
        _build_zero_padding, Example({"padding": [[1, 2], [0, 3]]}, "image")
    ),
    "Cropping2D": _weightless(_build_cropping, Example({"cropping": [[1, 2], [0, 3]]}, "image")),
    "UpSampling2D": _weightless(
        _build_upsampling,
        Example({"size": [2, 3]}, "image"),
        Example({"size": 2, "interpolation": "bilinear"}, "image"),
    ),
}
