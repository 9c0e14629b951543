"""Keras' initializers for torch tensors: VarianceScaling and its named presets (glorot, he,
lecun), orthogonal, and the small helpers the layer ports' init rules share.

Keras and torch compute fans on opposite axes: ``fan_axes`` says which axes are (in, out).
Which initializer each layer gets is its port's rule (parity.init.keras_init_ applies them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from parity.conventions import (
    ORTHOGONAL_GAIN,
    TRUNCATED_NORMAL_CUTOFF,
    TRUNCATED_NORMAL_STDDEV_CORRECTION,
)

#: Axes of (fan_in, fan_out) in torch's layout: weight (out, in, *kernel).
TORCH_FAN_AXES = (1, 0)
#: Axes of (fan_in, fan_out) in Keras' layout: kernel (*kernel, in, out).
KERAS_FAN_AXES = (-2, -1)


def _fans(shape: tuple[int, ...], fan_axes: tuple[int, int]) -> tuple[int, int]:
    """Keras' compute_fans: 1-D -> (n, n); otherwise in/out axes times the receptive field."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    in_axis, out_axis = (a % len(shape) for a in fan_axes)
    receptive = math.prod(s for i, s in enumerate(shape) if i not in (in_axis, out_axis))
    return shape[in_axis] * receptive, shape[out_axis] * receptive


_FAN_MODES: dict[str, Callable[[int, int], float]] = {
    "fan_in": lambda fan_in, fan_out: fan_in,
    "fan_out": lambda fan_in, fan_out: fan_out,
    "fan_avg": lambda fan_in, fan_out: (fan_in + fan_out) / 2.0,
}


def _truncated_normal_(t: Tensor, variance: float, generator: torch.Generator | None) -> Tensor:
    std = math.sqrt(variance) / TRUNCATED_NORMAL_STDDEV_CORRECTION
    cut = TRUNCATED_NORMAL_CUTOFF * std
    return nn.init.trunc_normal_(t, 0.0, std, -cut, cut, generator=generator)


def _normal_(t: Tensor, variance: float, generator: torch.Generator | None) -> Tensor:
    return nn.init.normal_(t, 0.0, math.sqrt(variance), generator=generator)


def _uniform_(t: Tensor, variance: float, generator: torch.Generator | None) -> Tensor:
    limit = math.sqrt(3.0 * variance)
    return nn.init.uniform_(t, -limit, limit, generator=generator)


_DISTRIBUTIONS: dict[str, Callable[[Tensor, float, torch.Generator | None], Tensor]] = {
    "truncated_normal": _truncated_normal_,
    "untruncated_normal": _normal_,
    "uniform": _uniform_,
}


@torch.no_grad()
def variance_scaling_(
    tensor: Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    fan_axes: tuple[int, int] = TORCH_FAN_AXES,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Keras VarianceScaling in place: variance scale / max(1, n), n from ``mode``'s fan.

    ``fan_axes`` = (input axis, output axis) of ``tensor``; other axes are the receptive field.
    The default is torch's layout (out, in, *k); pass KERAS_FAN_AXES for a Keras-layout array.
    """
    if mode not in _FAN_MODES:
        raise ValueError(f"mode must be one of {sorted(_FAN_MODES)}, got {mode!r}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(
            f"distribution must be one of {sorted(_DISTRIBUTIONS)}, got {distribution!r}"
        )
    fan = _FAN_MODES[mode](*_fans(tuple(tensor.shape), fan_axes))
    return _DISTRIBUTIONS[distribution](tensor, scale / max(1.0, fan), generator)


@dataclass(frozen=True)
class Preset:
    """A named VarianceScaling configuration, as keras.initializers defines it."""

    scale: float
    mode: str
    distribution: str


#: keras.initializers by name -> VarianceScaling arguments.
PRESETS: dict[str, Preset] = {
    "glorot_uniform": Preset(1.0, "fan_avg", "uniform"),
    "glorot_normal": Preset(1.0, "fan_avg", "truncated_normal"),
    "he_uniform": Preset(2.0, "fan_in", "uniform"),
    "he_normal": Preset(2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": Preset(1.0, "fan_in", "uniform"),
    "lecun_normal": Preset(1.0, "fan_in", "truncated_normal"),
}


def initialize_(
    tensor: Tensor,
    name: str,
    fan_axes: tuple[int, int] = TORCH_FAN_AXES,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply the Keras initializer ``name`` (a PRESETS key) to ``tensor`` in place."""
    if name not in PRESETS:
        raise ValueError(f"unknown initializer {name!r}; expected one of {sorted(PRESETS)}")
    p = PRESETS[name]
    return variance_scaling_(tensor, p.scale, p.mode, p.distribution, fan_axes, generator=generator)


def glorot_uniform_(tensor: Tensor, fan_axes: tuple[int, int] = TORCH_FAN_AXES) -> Tensor:
    """Keras' default kernel initializer."""
    return initialize_(tensor, "glorot_uniform", fan_axes)


@torch.no_grad()
def orthogonal_(tensor: Tensor, gain: float = ORTHOGONAL_GAIN) -> Tensor:
    """Keras Orthogonal over the whole matrix: orthonormal rows or columns, whichever fit.

    torch's ``weight_hh`` (4u, u) is Keras' (u, 4u) transposed; both are Haar-distributed with
    orthonormal u-vectors, so one QR over the whole matrix gives Keras' distribution.
    """
    return nn.init.orthogonal_(tensor, gain=gain)


# --- helpers the layer ports' init rules share -------------------------------------------------


@torch.no_grad()
def zeros_(t: Tensor | None) -> None:
    """Zero ``t`` in place when the module has it (a bias switched off is None)."""
    if t is not None:
        t.zero_()


@torch.no_grad()
def fill_(t: Tensor | None, value: float) -> None:
    """Fill ``t`` with ``value`` in place when the module has it."""
    if t is not None:
        t.fill_(value)


@torch.no_grad()
def kernel_and_bias_(m: nn.Module) -> None:
    """Keras' Dense/Conv default: glorot_uniform kernel, zero bias (torch's weight layout)."""
    glorot_uniform_(m.weight)
    zeros_(m.bias)
