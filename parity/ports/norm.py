"""Keras' BatchNormalization and LayerNormalization on channels-last input.

BatchNormalization differs from nn.BatchNorm1d in three ways that matter once you train:
epsilon (Keras 1e-3 vs 1e-5), momentum (Keras keeps ``momentum`` of the old moving average,
torch mixes in ``momentum`` of the new batch) and the moving variance (Keras updates it with the
biased batch variance, torch with the unbiased one). This module trains like Keras.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from parity.conventions import (
    BATCH_NORM_EPSILON,
    BATCH_NORM_MOMENTUM,
    LAYER_NORM_EPSILON,
    TORCH_BATCH_NORM_EPSILON,
)
from parity.errors import ConversionError
from parity.initializers import fill_, zeros_
from parity.ports.diagnosis import Alternative, Checked, Variant, copy_model
from parity.ports.registry import (
    Config,
    Emitted,
    Example,
    InitRule,
    LayerConverter,
    Shapes,
    call_keep_mask,
    simple_rows,
    single,
)


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


# ------------------------------------------------------------------------------------------------
# Normalisation: BatchNormalization (Keras' momentum, epsilon and biased variance), LayerNorm.


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


def _emit_batch_norm(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    options = [f"eps={module.eps!r}", f"momentum={module.momentum!r}"]
    options += [] if module.weight is not None else ["scale=False"]
    options += [] if module.bias is not None else ["center=False"]
    options += [f"axis={module.axis}"] if module.axis != -1 else []
    constructor = f"BatchNormalization({module.num_features}, {', '.join(options)})"
    return Emitted(constructor, ("{out0} = {self}({x0})",), ("{m0}",), ("BatchNormalization",))


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
        diagnoses=("batchnorm_epsilon",),
        examples=(
            Example({"epsilon": 0.01}, "embedded"),
            Example({"axis": -1}, "image"),
            Example({"axis": 1}, "sequence"),  # channels-first style: (B, C, T)
        ),
        emit=_emit_batch_norm,
    ),
    "LayerNormalization": LayerConverter(
        _ln_weights,
        _build_layer_norm,
        simple_rows(_ln_weights, ("gamma", "weight", "identity"), ("beta", "bias", "identity")),
        call_keep_mask,
        examples=(Example({}, "embedded"),),
    ),
}


# --- Keras' default initialization of these modules (parity.init.keras_init_) ---------------


@torch.no_grad()
def _init_batchnorm(m: nn.Module) -> None:
    # Keras BatchNormalization: gamma ones, beta zeros, moving mean zeros, moving variance ones.
    # Filled by name, not by reset_parameters(), because parity's BatchNormalization is not a
    # torch _BatchNorm; either may lack weight/bias (scale/center False) or running statistics.
    fill_(m.weight, 1.0)
    zeros_(m.bias)
    zeros_(getattr(m, "running_mean", None))
    fill_(getattr(m, "running_var", None), 1.0)
    zeros_(getattr(m, "num_batches_tracked", None))


@torch.no_grad()
def _init_layernorm(m: nn.Module) -> None:
    # Keras LayerNormalization: gamma ones, beta zeros (torch's defaults too).
    fill_(m.weight, 1.0)
    zeros_(m.bias)


#: Module type -> its Keras default initialization (LayerNormalization through nn.LayerNorm).
INIT_RULES: dict[type, InitRule] = {
    nn.modules.batchnorm._BatchNorm: _init_batchnorm,
    BatchNormalization: _init_batchnorm,
    nn.LayerNorm: _init_layernorm,
}

# --- diagnosis: the conventions a conversion of these classes can get wrong (parity check) -----


def _batchnorm_variants(subject: Checked, ids: np.ndarray, device: str) -> list[Variant]:
    paths = {
        path: module.eps
        for path, module in subject.model.named_modules()
        if isinstance(getattr(module, "eps", None), float) and hasattr(module, "running_var")
    }
    variants = []
    for eps in (BATCH_NORM_EPSILON, TORCH_BATCH_NORM_EPSILON):
        changed = [path for path, old in paths.items() if not math.isclose(old, eps)]
        if not changed:
            continue
        model = copy_model(subject.model)
        for path in changed:
            model.get_submodule(path).eps = eps
        olds = ", ".join(f"{o:g}" for o in sorted({paths[p] for p in changed}))
        label = f"epsilon {eps:g} instead of {olds} in {', '.join(changed)}"
        variants.append(Variant(label, model))
    return variants


DIAGNOSES: dict[str, Alternative] = {
    "batchnorm_epsilon": Alternative(
        "BatchNormalization epsilon: Keras uses 1e-3, torch 1e-5; {label}", _batchnorm_variants
    ),
}
