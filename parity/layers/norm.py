"""Keras' BatchNormalization and LayerNormalization on channels-last input.

BatchNormalization differs from nn.BatchNorm1d in three ways that matter once you train:
epsilon (Keras 1e-3 vs 1e-5), momentum (Keras keeps ``momentum`` of the old moving average,
torch mixes in ``momentum`` of the new batch) and the moving variance (Keras updates it with the
biased batch variance, torch with the unbiased one). This module trains like Keras.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from parity.conventions import BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM, LAYER_NORM_EPSILON


class BatchNormalization(nn.Module):
    """Keras BatchNormalization over feature ``axis`` (Keras' meaning: an axis of the whole
    input, batch included; -1 by default, 1 for channels-first); parameters and buffers named as
    nn.BatchNorm1d (weight = gamma, bias = beta, running_mean, running_var)."""

    def __init__(
        self,
        num_features: int,
        eps: float = BATCH_NORM_EPSILON,
        momentum: float = BATCH_NORM_MOMENTUM,
        scale: bool = True,
        center: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        axis: int = -1,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.axis = axis
        self.eps = eps
        self.momentum = momentum  # Keras' meaning: weight of the old moving statistic
        self.weight = nn.Parameter(torch.ones(num_features, **factory)) if scale else None
        self.bias = nn.Parameter(torch.zeros(num_features, **factory)) if center else None
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))
        self.register_buffer("running_var", torch.ones(num_features, **factory))
        #: Training folds the batch moments into the moving statistics; False keeps them (a
        #: frozen layer under standalone Keras 2, which trains on batch statistics regardless).
        self.update_statistics = True

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., C, ...) with C at ``axis``. Training uses (and folds into the moving stats)
        the batch moments over every other axis."""
        axis = self.axis % x.dim()
        if self.training:
            dims = tuple(d for d in range(x.dim()) if d != axis)
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)  # Keras: biased variance, also for the update
            if self.update_statistics:
                with torch.no_grad():
                    keep = self.momentum
                    self.running_mean.mul_(keep).add_(mean.detach() * (1 - keep))
                    self.running_var.mul_(keep).add_(var.detach() * (1 - keep))
        else:
            mean, var = self.running_mean, self.running_var
        inv = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            inv = inv * self.weight
        shift = -mean * inv
        if self.bias is not None:
            shift = shift + self.bias
        # (C,) statistics broadcast along ``axis``: (C, 1, ..., 1) with one 1 per later axis
        trailing = (1,) * (x.dim() - 1 - axis)
        return x * inv.reshape(-1, *trailing) + shift.reshape(-1, *trailing)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum} (Keras convention), "
            f"axis={self.axis}"
        )


#: The batch normalisations, parity's and torch's: the layers Keras (3, and tf.keras) runs in
#: inference mode while frozen (trainable False): moving statistics, none updated.
FROZEN_INFERENCE: tuple[type[nn.Module], ...] = (
    BatchNormalization,
    nn.modules.batchnorm._BatchNorm,
)


class LayerNormalization(nn.LayerNorm):
    """nn.LayerNorm over the last axis with Keras' epsilon default (1e-3)."""

    def __init__(
        self,
        normalized_shape: int,
        eps: float = LAYER_NORM_EPSILON,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(normalized_shape, eps, elementwise_affine, bias, device, dtype)
