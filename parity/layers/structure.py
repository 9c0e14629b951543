"""Keras' shape layers in torch (channels-last, batch axis first): Reshape, Permute,
RepeatVector, Masking."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
