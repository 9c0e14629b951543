"""keras.layers.Conv1D in torch: channels-last input, Keras padding modes (valid, same, causal).

Keras pads "same" the TensorFlow way (the extra column goes on the right) and "causal" on the
left only; nn.Conv1d's padding="same" centres differently for even kernels and refuses strides,
so the padding is applied explicitly and the convolution itself is valid.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity.convert.transforms import Transform
from parity.errors import ConversionError
from parity.initializers import kernel_and_bias_
from parity.ports.activations import ActivationSlot
from parity.ports.registry import (
    Config,
    Emitted,
    Example,
    InitRule,
    LayerConverter,
    Shapes,
    activation_code,
    call_drop_mask,
    declared,
    require_channels_last,
    simple_rows,
    single,
    with_bias,
)

#: Keras padding names the 1-D layers accept.
KERAS_PADDINGS = ("valid", "same", "causal")


def same_padding(length: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(left, right) padding of TensorFlow's "same": output length ceil(length / stride)."""
    span = (kernel_size - 1) * dilation + 1
    total = max((math.ceil(length / stride) - 1) * stride + span - length, 0)
    return total // 2, total - total // 2


class Conv1D(nn.Conv1d):
    """nn.Conv1d (same parameters and shapes) on (B, T, C) input, with Keras' padding and
    activation. ``padding`` is "valid", "same" or "causal"."""

    activation = ActivationSlot("_fn")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: str = "valid",
        dilation: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str = "linear",
    ) -> None:
        if padding not in KERAS_PADDINGS:
            raise ValueError(f"padding must be one of {KERAS_PADDINGS}, got {padding!r}")
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
        self.activation = activation

    def _pads(self, length: int) -> tuple[int, int]:
        (k,), (s,), (d,) = self.kernel_size, self.stride, self.dilation
        if self.keras_padding == "same":
            return same_padding(length, k, s, d)
        if self.keras_padding == "causal":
            return (k - 1) * d, 0
        return 0, 0

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, C_in) -> (B, T', C_out)."""
        x = x.transpose(1, 2)  # (B, C_in, T)
        x = F.pad(x, self._pads(x.shape[-1]))
        return self._fn(super().forward(x)).transpose(1, 2)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, keras_padding={self.keras_padding!r}, "
            f"activation={self.activation!r}"
        )


# ------------------------------------------------------------------------------------------------
# Convolutions: Conv1D (channels-last; Keras 1's Convolution1D is normalised to it).

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


def _emit_conv1d(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    (k,), (s,), (d,) = module.kernel_size, module.stride, module.dilation
    span = (k - 1) * d
    if module.keras_padding == "same" and s != 1:
        # the pads depend on the length at run time; not written as code yet
        raise ConversionError("parity port: Conv1D padding='same' with strides > 1 has no emitter")
    pads = {"valid": (0, 0), "causal": (span, 0), "same": (span // 2, span - span // 2)}
    left, right = pads[module.keras_padding]
    lines = ["{out0} = {x0}.transpose(1, 2)"]  # (B, T, C) -> torch's (B, C, T)
    if left or right:
        lines.append(
            f"{{out0}} = F.pad({{out0}}, ({left}, {right}))  # Keras' {module.keras_padding}"
        )
    code, helpers = activation_code(module.activation, "{self}({out0})")
    lines.append(f"{{out0}} = {code}.transpose(1, 2)")
    options = (f", stride={s}" if s != 1 else "") + (f", dilation={d}" if d != 1 else "")
    options += "" if module.bias is not None else ", bias=False"
    return Emitted(
        f"nn.Conv1d({module.in_channels}, {module.out_channels}, {k}{options})",
        tuple(lines),
        ("None",),  # Keras' Conv1D ends the mask
        helpers,
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
        emit=_emit_conv1d,
    ),
}


# --- Keras' default initialization of these modules (parity.init.keras_init_) ---------------

#: Module type -> its Keras default initialization: glorot_uniform kernel, zero bias (torch's
#: Conv3d too, for keras_init_ on torch's own modules).
INIT_RULES: dict[type, InitRule] = {nn.Conv1d: kernel_and_bias_, nn.Conv3d: kernel_and_bias_}


# --- weight layouts: Keras <-> torch (parity.convert.transforms) -------------------------------


def _conv1d_kernel(array: np.ndarray) -> np.ndarray:
    # Keras Conv1D kernel (k, in, out) <-> torch Conv1d weight (out, in, k): reverse the axes.
    return np.ascontiguousarray(array.transpose(2, 1, 0))


TRANSFORMS: dict[str, Transform] = {"conv1d_kernel": Transform(_conv1d_kernel, _conv1d_kernel)}
