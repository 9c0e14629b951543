"""Keras' shape layers in torch (channels-last, batch axis first): Reshape, Permute,
RepeatVector, Masking."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from parity.errors import ConversionError
from parity.keras.graph import NESTED_INPUT
from parity.ports.registry import (
    Config,
    Emitted,
    Example,
    LayerConverter,
    Masks,
    call_drop_mask,
    no_module,
    no_rows,
    no_weights,
    single,
)


class Reshape(nn.Module):
    """keras.layers.Reshape: (B, ...) -> (B, *target_shape), row-major; one entry may be -1."""

    def __init__(self, target_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.target_shape = tuple(target_shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.target_shape)

    def extra_repr(self) -> str:
        return f"target_shape={self.target_shape}"


class Permute(nn.Module):
    """keras.layers.Permute: ``dims`` permutes the non-batch axes, numbered from 1 as Keras does."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Permute dims={dims} is not a permutation of 1..{len(dims)}")
        self.dims = tuple(dims)

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, *self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class RepeatVector(nn.Module):
    """keras.layers.RepeatVector: (B, C) -> (B, n, C)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(1).expand(-1, self.n, -1)

    def extra_repr(self) -> str:
        return f"n={self.n}"


class Masking(nn.Module):
    """keras.layers.Masking: zeroes the steps whose features all equal ``mask_value``.

    ``forward`` returns the output; ``mask(x)`` the Keras mask (B, T) it starts, true where a
    step has some feature != mask_value, which downstream recurrent layers consume.
    """

    def __init__(self, mask_value: float = 0.0) -> None:
        super().__init__()
        self.mask_value = mask_value

    def mask(self, x: Tensor) -> Tensor:
        return (x != self.mask_value).any(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        # where, not x * mask, as Keras 3 writes it: the same values, and no NaN from 0 * inf
        return torch.where(self.mask(x).unsqueeze(-1), x, torch.zeros_like(x))

    def extra_repr(self) -> str:
        return f"mask_value={self.mask_value}"


class TimeDistributed(nn.Module):
    """keras.layers.TimeDistributed: ``layer`` applied to every step of (B, T, ...) alike.

    The steps are folded into the batch, (B * T, ...), which is what Keras' per-step loop
    computes for any layer whose samples do not interact. A BatchNormalization in training is the
    exception (Keras takes batch moments and updates the moving statistics once per step), so
    training such a layer is refused rather than done differently.
    """

    def __init__(self, layer: nn.Module, per_step_statistics: bool = False) -> None:
        super().__init__()
        self.layer = layer
        self.per_step_statistics = per_step_statistics

    def fold(self, x: Tensor) -> Tensor:
        if self.training and self.per_step_statistics:
            raise RuntimeError(
                "TimeDistributed(BatchNormalization) in training: Keras takes batch moments per "
                "step; run it in eval mode or freeze it"
            )
        return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])

    @staticmethod
    def unfold(y: Tensor, like: Tensor) -> Tensor:
        return y.reshape(like.shape[0], like.shape[1], *y.shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        return self.unfold(self.layer(self.fold(x)), x)


# ------------------------------------------------------------------------------------------------
# Shape layers: Reshape, Permute, RepeatVector, Masking (Flatten is in core), and the inputs
# of inlined nested models.
#
# Parity notes:
# - Reshape, Permute and RepeatVector do not support masking in Keras: a mask stops there.
# - Masking starts a mask (any feature != mask_value) and zeroes the masked steps; a mask that
#   arrives is replaced, as Keras' Masking.compute_mask ignores it.
# - A nested model's input passes the tensor its call was given, with the mask that came with
#   it or the one the call passed explicitly: Keras 2 and 3 both run a nested model's layers
#   under its input's mask.


def _ints(config: Config, key: str) -> tuple[int, ...]:
    value = config.get(key)
    if not isinstance(value, list | tuple) or not all(type(v) is int for v in value):
        raise ConversionError(f"{key}={value!r}: expected a list of ints")
    return tuple(value)


def _repeat(config: Config) -> int:
    n = single(config.get("n"))
    if type(n) is not int or n < 1:
        raise ConversionError(f"RepeatVector n={n!r}: expected a positive int")
    return n


def _call_masking(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    return [module(xs[0])], [module.mask(xs[0])]


def _call_nested_input(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    return [xs[0]], [masks[0]]


def _emit_reshape(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    target = ", ".join(str(int(d)) for d in module.target_shape)
    return Emitted(None, (f"{{out0}} = {{x0}}.reshape({{x0}}.shape[0], {target})",), ("None",))


CONVERTERS: dict[str, LayerConverter] = {
    NESTED_INPUT: LayerConverter(
        no_weights,
        no_module,
        no_rows,
        _call_nested_input,
        # a nested model's input: the tensor (and mask) its call was given
        emit=lambda m, config, masked: Emitted(None, ("{out0} = {x0}",), ("{m0}",)),
    ),
    "Reshape": LayerConverter(
        no_weights,
        lambda c, s, a: Reshape(_ints(c, "target_shape")),
        no_rows,
        call_drop_mask,
        examples=(
            Example({"target_shape": [3, 11]}, "sequence"),
            Example({"target_shape": [-1, 2]}, "vector"),
        ),
        emit=_emit_reshape,
    ),
    "Permute": LayerConverter(
        no_weights,
        lambda c, s, a: Permute(_ints(c, "dims")),
        no_rows,
        call_drop_mask,
        examples=(Example({"dims": [2, 1]}, "sequence"),),
    ),
    "RepeatVector": LayerConverter(
        no_weights,
        lambda c, s, a: RepeatVector(_repeat(c)),
        no_rows,
        call_drop_mask,
        examples=(Example({"n": 3}, "vector"),),
    ),
    "Masking": LayerConverter(
        no_weights,
        lambda c, s, a: Masking(float(c.get("mask_value", 0.0))),
        no_rows,
        _call_masking,
        diagnoses=("padding_side",),
        examples=(Example({"mask_value": 0.0}, "sequence"),),
    ),
}
