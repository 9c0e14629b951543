"""Keras' core layers in torch: Dense with any Keras activation, Activation, Flatten, dropouts.

Activations come from the one table in parity.ports.activations, by Keras name.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from parity.conventions import EMBEDDING_UNIFORM_LIMIT, MASK_VALUE
from parity.initializers import kernel_and_bias_
from parity.keras.graph import INPUT_LAYER
from parity.ports.activations import ActivationSlot
from parity.ports.diagnosis import Alternative, Checked, Variant, copy_model, join
from parity.ports.registry import (
    Config,
    Emitted,
    Example,
    InitRule,
    LayerConverter,
    Masks,
    Shapes,
    activation_code,
    call_drop_mask,
    call_keep_mask,
    declared,
    emit_drop_mask,
    no_module,
    no_rows,
    no_weights,
    simple_rows,
    with_bias,
)


class Activation(nn.Module):
    """keras.layers.Activation: one named Keras activation."""

    activation = ActivationSlot("_fn")

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(x)

    def extra_repr(self) -> str:
        return repr(self.activation)


class Dense(nn.Linear):
    """nn.Linear followed by a Keras activation (keras.layers.Dense); acts on the last axis."""

    activation = ActivationSlot("_fn")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str = "linear",
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(super().forward(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


class Flatten(nn.Module):
    """keras.layers.Flatten: channels-last, i.e. a row-major reshape of (B, ...) to (B, -1)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)


class SpatialDropout1D(nn.Dropout1d):
    """keras.layers.SpatialDropout1D on channels-last (B, T, C): drops whole channels."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


# ------------------------------------------------------------------------------------------------
# Core layers: inputs, Embedding, Dense, Activation, Dropout, SpatialDropout1D, Flatten.


def _embedding_weights(config: Config) -> tuple[str, ...]:
    return ("embeddings",)


def _build_embedding(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    vocab, dim = shapes["embeddings"]
    declared(config, "input_dim", vocab, "the embeddings array")
    declared(config, "output_dim", dim, "the embeddings array")
    return nn.Embedding(vocab, dim)


def _call_embedding(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """Embedding(mask_zero=True) starts a mask: id != 0."""
    ids = xs[0].long()
    mask = ids != MASK_VALUE if config.get("mask_zero") else None
    return [module(ids)], [mask]


_dense_weights = with_bias("kernel")


def _build_dense(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    fan_in, units = shapes["kernel"]
    declared(config, "units", units, "the kernel")
    return Dense(fan_in, units, bias="bias" in shapes, activation=acts["activation"])


def _rate(config: Config) -> float:
    """Dropout rate; Keras 1 called it p."""
    return float(config.get("rate", config.get("p", 0.0)))


# --- parity port: the code of each call ----------------------------------------------------


def _emit_embedding(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    mask = f"{{x0}} != {MASK_VALUE}" if config.get("mask_zero") else "None"
    return Emitted(
        f"nn.Embedding({module.num_embeddings}, {module.embedding_dim})",
        ("{out0} = {self}({x0}.long())",),
        (mask,),
    )


def _emit_dense(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    code, helpers = activation_code(module.activation, "{self}({x0})")
    bias = "" if module.bias is not None else ", bias=False"
    return Emitted(
        f"nn.Linear({module.in_features}, {module.out_features}{bias})",
        (f"{{out0}} = {code}",),
        ("{m0}",),
        helpers,
    )


def _emit_activation(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    code, helpers = activation_code(module.activation, "{x0}")
    return Emitted(None, (f"{{out0}} = {code}",), ("{m0}",), helpers)


def _emit_dropout(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    return Emitted(f"nn.Dropout({module.p!r})", ("{out0} = {self}({x0})",), ("{m0}",))


def _emit_spatial_dropout(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    # whole channels of (B, T, C) dropped: torch's Dropout1d on (B, C, T)
    return Emitted(
        f"nn.Dropout1d({module.p!r})",
        ("{out0} = {self}({x0}.transpose(1, 2)).transpose(1, 2)",),
        ("{m0}",),
    )


CONVERTERS: dict[str, LayerConverter] = {
    INPUT_LAYER: LayerConverter(no_weights, no_module, no_rows, call_keep_mask),
    "Embedding": LayerConverter(
        _embedding_weights,
        _build_embedding,
        simple_rows(_embedding_weights, ("embeddings", "weight", "identity")),
        _call_embedding,
        diagnoses=("padding_side",),
        examples=(Example({"input_dim": 30, "output_dim": 4, "mask_zero": True}, "ids"),),
        emit=_emit_embedding,
    ),
    "Dense": LayerConverter(
        _dense_weights,
        _build_dense,
        simple_rows(
            _dense_weights, ("kernel", "weight", "transpose"), ("bias", "bias", "identity")
        ),
        call_keep_mask,
        activations=("activation",),
        diagnoses=("hard_sigmoid",),
        examples=(Example({"units": 4, "activation": "tanh"}, "vector"),),
        emit=_emit_dense,
    ),
    "Activation": LayerConverter(
        no_weights,
        lambda c, s, a: Activation(a["activation"]),
        no_rows,
        call_keep_mask,
        activations=("activation",),
        diagnoses=("hard_sigmoid",),
        examples=(Example({"activation": "softmax"}, "embedded"),),
        emit=_emit_activation,
    ),
    "Dropout": LayerConverter(
        no_weights,
        lambda c, s, a: nn.Dropout(_rate(c)),
        no_rows,
        call_keep_mask,
        examples=(Example({"rate": 0.5}, "embedded"),),
        emit=_emit_dropout,
    ),
    "SpatialDropout1D": LayerConverter(
        no_weights,
        lambda c, s, a: SpatialDropout1D(_rate(c)),
        no_rows,
        call_keep_mask,
        examples=(Example({"rate": 0.5}, "embedded"),),
        emit=_emit_spatial_dropout,
    ),
    "Flatten": LayerConverter(
        no_weights,
        lambda c, s, a: Flatten(),
        no_rows,
        call_drop_mask,
        diagnoses=("flatten_order",),
        examples=(Example({}, "sequence"), Example({}, "image")),
        emit=emit_drop_mask("{x0}.flatten(1)"),
    ),
}


# --- Keras' default initialization of these modules (parity.init.keras_init_) ---------------


@torch.no_grad()
def _init_embedding(m: nn.Module) -> None:
    nn.init.uniform_(m.weight, -EMBEDDING_UNIFORM_LIMIT, EMBEDDING_UNIFORM_LIMIT)


#: Module type -> its Keras default initialization (subclasses resolve through their MRO, so
#: parity's Dense through nn.Linear; torch's own modules get the rule of the layer they mirror).
INIT_RULES: dict[type, InitRule] = {
    nn.Linear: kernel_and_bias_,
    nn.Embedding: _init_embedding,
}

# --- diagnosis: the conventions a conversion of these classes can get wrong (parity check) -----


def _flatten_variants(subject: Checked, ids: np.ndarray, device: str) -> list[Variant]:
    """A Linear after a Flatten of (T, C): columns in channels-first order (C, T) instead of
    Keras' channels-last (T, C), or the reverse."""
    seq_len = ids.shape[1]
    variants = []
    for path, module in subject.model.named_modules():
        if not isinstance(module, nn.Linear) or module.in_features % seq_len:
            continue
        channels = module.in_features // seq_len
        if channels < 2 or seq_len < 2:
            continue
        index = np.arange(module.in_features)
        t_major = index.reshape(seq_len, channels)
        for order, perm in (
            ("(channels, time)", t_major.T.reshape(-1)),
            ("(time, channels) read as (channels, time)", np.argsort(t_major.T.reshape(-1))),
        ):
            model = copy_model(subject.model)
            weight = model.get_submodule(path).weight
            with torch.no_grad():
                weight.copy_(weight[:, torch.from_numpy(perm).to(weight.device)].clone())
            inverse = np.argsort(perm)
            fix = {join(path, "weight"): lambda g, inv=inverse: g[:, inv]}
            label = f"{path} input columns reordered from {order} to Keras' channels-last"
            variants.append(Variant(label, model, grad_fixes=fix))
    return variants


DIAGNOSES: dict[str, Alternative] = {
    "flatten_order": Alternative(
        "Flatten order: Keras flattens channels-last; {label}", _flatten_variants
    ),
}
