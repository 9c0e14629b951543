"""Keras' default initializers for PyTorch modules, in place.

Why: torch's defaults differ from Keras' for every layer (kaiming-uniform Linear, N(0, 1)
Embedding, U(+-1/sqrt(h)) RNNs), so a model trained "from scratch" in PyTorch starts somewhere
Keras never would and needs other learning rates. ``keras_init_(module)`` gives each layer what
the Keras layer it mirrors gets:

- kernels: glorot_uniform over the WHOLE kernel. For an LSTM that is Keras' (in, 4u) matrix =
  torch's ``weight_ih`` (4u, in) transposed: fans are (in, 4u), not (in, u) per gate.
- recurrent kernels: orthogonal over the WHOLE (u, 4u) matrix (torch's ``weight_hh`` transposed).
- biases zero; LSTM ``unit_forget_bias``: the forget block is 1 in ``bias_ih``, ``bias_hh`` is 0
  (torch adds the two; Keras has one).
- GRU (3u, either reset_after) and SimpleRNN (u) alike: glorot kernel, orthogonal recurrent
  kernel, zero biases.
- Embedding U(-0.05, 0.05); BatchNorm gamma 1, beta 0, moving mean 0, moving variance 1;
  LayerNorm gamma 1, beta 0.
- DeepMoji's attention vector U(-0.05, 0.05) (deepmoji/attlayer.py asks for 'uniform').
- MultiHeadAttention's projections glorot_uniform with Keras 3's EinsumDense fans (dim and
  heads * size), biases zero; Attention's scalars 1; AdditiveAttention's scale glorot_uniform.

Everything is built on one ``variance_scaling_`` (Keras' VarianceScaling) with named presets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from parity.conventions import (
    ATTENTION_UNIFORM_LIMIT,
    EMBEDDING_UNIFORM_LIMIT,
    LSTM_FORGET_BIAS,
    LSTM_FORGET_GATE_INDEX,
    LSTM_GATES,
    ORTHOGONAL_GAIN,
    TRUNCATED_NORMAL_CUTOFF,
    TRUNCATED_NORMAL_STDDEV_CORRECTION,
)
from parity.layers import GRU, LSTM, BatchNormalization, SimpleRNN
from parity.ports.activations import PReLU
from parity.ports.attention import (
    AdditiveAttention,
    Attention,
    AttentionWeightedAverage,
    HeadProjection,
)
from parity.ports.vision import DepthwiseConv2D

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


# --- per-layer rules --------------------------------------------------------------------------


@torch.no_grad()
def _zeros_(t: Tensor | None) -> None:
    if t is not None:
        t.zero_()


@torch.no_grad()
def _init_linear(m: nn.Module) -> None:
    glorot_uniform_(m.weight)
    _zeros_(m.bias)


#: Axes of (fan_in, fan_out) of parity's DepthwiseConv2D weight (in, depth_multiplier, kh, kw):
#: Keras computes fans on its (kh, kw, in, depth_multiplier) kernel, i.e. in * k and mult * k.
DEPTHWISE_FAN_AXES = (0, 1)


@torch.no_grad()
def _init_depthwise(m: nn.Module) -> None:
    glorot_uniform_(m.weight, DEPTHWISE_FAN_AXES)
    _zeros_(m.bias)


@torch.no_grad()
def _init_embedding(m: nn.Module) -> None:
    nn.init.uniform_(m.weight, -EMBEDDING_UNIFORM_LIMIT, EMBEDDING_UNIFORM_LIMIT)


@torch.no_grad()
def _fill_(t: Tensor | None, value: float) -> None:
    if t is not None:
        t.fill_(value)


@torch.no_grad()
def _init_batchnorm(m: nn.Module) -> None:
    # Keras BatchNormalization: gamma ones, beta zeros, moving mean zeros, moving variance ones.
    # Filled by name, not by reset_parameters(), because parity's BatchNormalization is not a
    # torch _BatchNorm; either may lack weight/bias (scale/center False) or running statistics.
    _fill_(m.weight, 1.0)
    _zeros_(m.bias)
    _zeros_(getattr(m, "running_mean", None))
    _fill_(getattr(m, "running_var", None), 1.0)
    _zeros_(getattr(m, "num_batches_tracked", None))


@torch.no_grad()
def _init_layernorm(m: nn.Module) -> None:
    # Keras LayerNormalization: gamma ones, beta zeros (torch's defaults too).
    _fill_(m.weight, 1.0)
    _zeros_(m.bias)


@torch.no_grad()
def _init_attention(m: nn.Module) -> None:
    nn.init.uniform_(m.weight, -ATTENTION_UNIFORM_LIMIT, ATTENTION_UNIFORM_LIMIT)


@torch.no_grad()
def _init_head_projection(m: nn.Module) -> None:
    # Keras 3's EinsumDense gives its initializer the equation's input and output axes: fans
    # (dim, heads * size) for a (dim, heads, size) kernel, (heads * size, out) for the output
    # projection's (heads, size, out). (tf.keras computed conv-style fans on the 3-D shape.)
    w = m.weight
    fans = (w.shape[0], -1) if m.direction == "in" else (-1, w.shape[-1])
    glorot_uniform_(w.view(*fans), KERAS_FAN_AXES)
    _zeros_(m.bias)


@torch.no_grad()
def _init_luong_attention(m: nn.Module) -> None:
    # keras.layers.Attention: scale and concat_score_weight start at 1.
    _fill_(m.scale, 1.0)
    _fill_(m.concat_score_weight, 1.0)


@torch.no_grad()
def _init_additive_attention(m: nn.Module) -> None:
    # keras.layers.AdditiveAttention: scale (dim,) glorot_uniform (a 1-D fan is dim both ways).
    if m.scale is not None:
        glorot_uniform_(m.scale)


def _recurrent_init(forget_bias: bool) -> Callable[[nn.Module], None]:
    """Kernel glorot_uniform, recurrent orthogonal, biases zero (LSTM: forget block 1), for every
    layer and direction of a module whose parameters are named as nn.RNN/GRU/LSTM's.

    Covers torch's modules and parity's LSTM, SimpleRNN and GRU; parity's GRU keeps Keras' bias
    in one ``bias_l0`` ((2, 3u) with reset_after, (3u,) without): zero like every other bias.
    Gate order does not matter here: glorot and orthogonal are drawn over the whole matrix, and a
    permutation of gate blocks keeps both distributions.
    """

    @torch.no_grad()
    def init(m: nn.Module) -> None:
        for name, p in m.named_parameters(recurse=False):
            if name.startswith("weight_ih"):
                glorot_uniform_(p)  # torch (k*u, in) = Keras (in, k*u) transposed: same fans
            elif name.startswith("weight_hh"):
                orthogonal_(p)
            elif name.startswith("bias"):
                p.zero_()
                # Keras has one bias; torch adds bias_ih and bias_hh (a zero buffer in a
                # converted model), so only one carries the 1.
                if forget_bias and name.startswith("bias_ih"):
                    block = p.shape[-1] // LSTM_GATES
                    start = LSTM_FORGET_GATE_INDEX * block
                    p[..., start : start + block] = LSTM_FORGET_BIAS
            else:  # a new parameter must get a deliberate rule, not torch's default
                raise TypeError(
                    f"keras_init_: no Keras initialization rule for {type(m).__name__}.{name}"
                )

    return init


#: Module type -> its Keras default initialization. Subclasses resolve through their MRO
#: (parity's Dense, Conv1D and LayerNormalization through nn.Linear, nn.Conv1d, nn.LayerNorm).
RULES: dict[type, Callable[[nn.Module], None]] = {
    nn.Linear: _init_linear,
    nn.Conv1d: _init_linear,
    nn.Conv2d: _init_linear,
    nn.Conv3d: _init_linear,
    # torch (in, out, kh, kw) = Keras' (kh, kw, out, in) reordered: the same fans on its axes
    nn.ConvTranspose2d: _init_linear,
    DepthwiseConv2D: _init_depthwise,
    nn.Embedding: _init_embedding,
    nn.modules.batchnorm._BatchNorm: _init_batchnorm,
    BatchNormalization: _init_batchnorm,
    nn.LayerNorm: _init_layernorm,
    nn.RNN: _recurrent_init(forget_bias=False),
    nn.GRU: _recurrent_init(forget_bias=False),
    nn.LSTM: _recurrent_init(forget_bias=True),
    SimpleRNN: _recurrent_init(forget_bias=False),
    GRU: _recurrent_init(forget_bias=False),
    LSTM: _recurrent_init(forget_bias=True),
    AttentionWeightedAverage: _init_attention,
    PReLU: lambda m: _zeros_(m.alpha),  # Keras PReLU: alpha_initializer "zeros"
    HeadProjection: _init_head_projection,
    Attention: _init_luong_attention,
    AdditiveAttention: _init_additive_attention,
}


def _rule_for(module: nn.Module) -> Callable[[nn.Module], None] | None:
    for cls in type(module).__mro__:
        if cls in RULES:
            return RULES[cls]
    return None


def keras_init_(module: nn.Module) -> nn.Module:
    """Re-initialize ``module`` and all its submodules as Keras would, in place; returns it.

    A submodule that owns parameters but has no rule raises TypeError rather than keeping
    torch's defaults silently; add a rule to RULES for it.
    """
    for name, sub in module.named_modules():
        rule = _rule_for(sub)
        if rule is not None:
            rule(sub)
        elif any(True for _ in sub.parameters(recurse=False)):
            where = name or type(module).__name__
            raise TypeError(
                f"keras_init_: no Keras initialization rule for {where} ({type(sub).__name__}); "
                "add one to parity.init.RULES"
            )
    return module
