"""Keras' attention layers: Attention (Luong), AdditiveAttention (Bahdanau), MultiHeadAttention.

Parity notes:
- Masks are Keras' masks (True = real step). A value mask removes steps from the softmax; the
  query mask zeroes Attention's and AdditiveAttention's output at masked query steps and is the
  output's mask. MultiHeadAttention ANDs query, value and key masks (and the causal mask) into
  one (B, T, S) mask; its output at a masked query step is NOT zeroed, so what a fully masked
  row computes is part of the answer, and it differs by writer (``MASK_STYLES``):
  "keras3-fused" (Keras 3, dropout == 0: logits set to DOT_PRODUCT_ATTENTION_MASK_FILL, a fully
  masked row attends uniformly), "keras3-softmax" (Keras 3, dropout > 0: logits set to -1e9 and
  the probabilities zeroed where masked), "keras2" (tf-keras: -1e9 added, so a fully masked
  row keeps its own softmax in float64) and "keras2-robust" (tf-keras softmax_robust_masking).
  The Keras 3 rules are those of its TensorFlow backend.
- Attention and AdditiveAttention subtract ATTENTION_MASK_PENALTY from masked scores (Keras 2
  and 3 alike); with ``causal`` a query step sees value steps up to its own index.
- MultiHeadAttention keeps Keras' EinsumDense layouts (kernels (dim, heads, head_dim) and
  (heads, head_dim, out)), so conversion is the identity; the query is scaled by
  1 / sqrt(key_dim) before the dot product, or the logits after it in Keras 3's fused path.
  Keras 3 rounds that factor to float32 even for float64 models (it casts a Python float), so
  its float64 outputs differ from the exact ones by ~1e-8; parity rounds it the same way.
- Dropout on the attention probabilities is applied in training, as Keras does; its draws are
  torch's (the same distribution, not the same samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from parity.conventions import (
    ATTENTION_EPSILON,
    ATTENTION_MASK_PENALTY,
    ATTENTION_UNIFORM_LIMIT,
    DOT_PRODUCT_ATTENTION_MASK_FILL,
    SOFTMAX_MASK_FILL,
)
from parity.convert.mapping import Row
from parity.errors import ConversionError
from parity.initializers import KERAS_FAN_AXES, fill_, glorot_uniform_, zeros_
from parity.keras.graph import OP_PREFIX
from parity.ports.registry import (
    Config,
    Emitted,
    Example,
    InitRule,
    LayerConverter,
    Masks,
    Shapes,
    declared,
    no_module,
    no_rows,
    no_weights,
    simple_rows,
    single,
    written_by_keras3,
)

#: How MultiHeadAttention fills masked logits (module docstring), by the Keras that wrote it.
MASK_STYLES = ("keras3-fused", "keras3-softmax", "keras2", "keras2-robust")


def causal_mask(queries: int, values: int, device: torch.device) -> Tensor:
    """(Tq, Tv) True where query step i may see value step j: j <= i (Keras' cumsum rule)."""
    return torch.ones(queries, values, dtype=torch.bool, device=device).tril()


def _score_mask(
    value_mask: Tensor | None, causal: bool, queries: int, values: int, device: torch.device
) -> Tensor | None:
    """Keras' scores mask for Attention/AdditiveAttention: (B, 1, Tv) value mask AND causal."""
    mask = None if value_mask is None else value_mask.bool().unsqueeze(-2)
    if causal:
        tri = causal_mask(queries, values, device).unsqueeze(0)
        mask = tri if mask is None else mask & tri
    return mask


class _ScoreAttention(nn.Module):
    """What Attention and AdditiveAttention share: masking, softmax, dropout, weighted sum."""

    def __init__(self, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.dropout = nn.Dropout(dropout)

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(
        self,
        query: Tensor,
        value: Tensor,
        key: Tensor | None = None,
        query_mask: Tensor | None = None,
        value_mask: Tensor | None = None,
        causal: bool | None = None,
    ) -> tuple[Tensor, Tensor]:
        """query (B, Tq, d), value (B, Tv, dv), key (B, Tv, d) (default: value); masks (B, T).
        Returns the output (B, Tq, dv) and the attention weights (B, Tq, Tv)."""
        key = value if key is None else key
        scores = self.scores(query, key)  # (B, Tq, Tv)
        causal = self.causal if causal is None else causal
        mask = _score_mask(value_mask, causal, scores.shape[-2], scores.shape[-1], scores.device)
        if mask is not None:
            scores = torch.where(mask, scores, scores - ATTENTION_MASK_PENALTY)
        weights = torch.softmax(scores, dim=-1)
        out = self.dropout(weights) @ value  # (B, Tq, dv)
        if query_mask is not None:
            out = torch.where(query_mask.bool().unsqueeze(-1), out, torch.zeros_like(out))
        return out, weights


class Attention(_ScoreAttention):
    """keras.layers.Attention: Luong scores, query . key ("dot") or sum tanh(q + k) ("concat").

    ``scale`` (use_scale) and ``concat_score_weight`` (score_mode="concat") are Keras' scalars.
    """

    def __init__(
        self,
        use_scale: bool = False,
        score_mode: str = "dot",
        dropout: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__(dropout, causal)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"score_mode={score_mode!r}: expected 'dot' or 'concat'")
        self.score_mode = score_mode
        self.scale = nn.Parameter(torch.ones(())) if use_scale else None
        concat = score_mode == "concat"
        self.concat_score_weight = nn.Parameter(torch.ones(())) if concat else None

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        if self.score_mode == "dot":
            scores = query @ key.transpose(-2, -1)
            return scores if self.scale is None else scores * self.scale
        summed = query.unsqueeze(-2) + key.unsqueeze(-3)  # (B, Tq, Tv, d)
        if self.scale is not None:
            summed = self.scale * summed
        assert self.concat_score_weight is not None
        return self.concat_score_weight * torch.tanh(summed).sum(dim=-1)

    def extra_repr(self) -> str:
        return f"use_scale={self.scale is not None}, score_mode={self.score_mode!r}"


class AdditiveAttention(_ScoreAttention):
    """keras.layers.AdditiveAttention: Bahdanau scores sum(scale * tanh(q + k)) over features."""

    def __init__(
        self, dim: int, use_scale: bool = True, dropout: float = 0.0, causal: bool = False
    ) -> None:
        super().__init__(dropout, causal)
        self.dim = dim
        self.scale = nn.Parameter(torch.ones(dim)) if use_scale else None

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        tanh = torch.tanh(query.unsqueeze(-2) + key.unsqueeze(-3))  # (B, Tq, Tv, d)
        return (tanh if self.scale is None else self.scale * tanh).sum(dim=-1)

    def extra_repr(self) -> str:
        return f"{self.dim}, use_scale={self.scale is not None}"


class HeadProjection(nn.Module):
    """Keras' EinsumDense as MultiHeadAttention uses it, in Keras' layout.

    "in": (B, T, dim) @ weight (dim, heads, size) -> (B, T, heads, size), bias (heads, size).
    "out": (B, T, heads, size) @ weight (heads, size, out) -> (B, T, out), bias (out,).
    """

    def __init__(self, weight_shape: tuple[int, int, int], direction: str, bias: bool) -> None:
        super().__init__()
        if direction not in ("in", "out"):
            raise ValueError(f"direction={direction!r}: expected 'in' or 'out'")
        self.direction = direction
        self.weight = nn.Parameter(torch.empty(weight_shape))
        bias_shape = weight_shape[1:] if direction == "in" else weight_shape[-1:]
        self.bias = nn.Parameter(torch.zeros(bias_shape)) if bias else None
        nn.init.zeros_(self.weight)  # replaced by conversion or parity.keras_init_

    def forward(self, x: Tensor) -> Tensor:
        if self.direction == "in":
            out = torch.einsum("btd,dnh->btnh", x, self.weight)
        else:
            out = torch.einsum("btnh,nho->bto", x, self.weight)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, {self.direction}, bias={self.bias is not None}"


class MultiHeadAttention(nn.Module):
    """keras.layers.MultiHeadAttention over rank-3 inputs (attention_axes the time axis).

    Submodules ``query``, ``key``, ``value``, ``attention_output`` are Keras' four EinsumDense
    projections, named as Keras names their weights.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim_in: int,
        value_dim_in: int,
        num_heads: int,
        key_dim: int,
        value_dim: int,
        output_dim: int,
        use_bias: bool = True,
        dropout: float = 0.0,
        mask_style: str = "keras3-fused",
    ) -> None:
        super().__init__()
        if mask_style not in MASK_STYLES:
            raise ValueError(f"mask_style={mask_style!r}: expected one of {MASK_STYLES}")
        self.num_heads, self.key_dim, self.mask_style = num_heads, key_dim, mask_style
        self.query = HeadProjection((query_dim, num_heads, key_dim), "in", use_bias)
        self.key = HeadProjection((key_dim_in, num_heads, key_dim), "in", use_bias)
        self.value = HeadProjection((value_dim_in, num_heads, value_dim), "in", use_bias)
        self.attention_output = HeadProjection((num_heads, value_dim, output_dim), "out", use_bias)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def _masked_softmax(logits: Tensor, mask: Tensor | None, style: str) -> Tensor:
        if mask is None:
            return torch.softmax(logits, dim=-1)
        if style == "keras2":
            logits = logits + (1.0 - mask.to(logits.dtype)) * SOFTMAX_MASK_FILL
            return torch.softmax(logits, dim=-1)
        fill = DOT_PRODUCT_ATTENTION_MASK_FILL if style == "keras3-fused" else SOFTMAX_MASK_FILL
        probs = torch.softmax(torch.where(mask, logits, torch.full_like(logits, fill)), dim=-1)
        if style == "keras3-softmax":
            probs = torch.where(mask, probs, torch.zeros_like(probs))
        return probs

    def forward(
        self,
        query: Tensor,
        value: Tensor,
        key: Tensor | None = None,
        query_mask: Tensor | None = None,
        value_mask: Tensor | None = None,
        key_mask: Tensor | None = None,
        use_causal_mask: bool = False,
        mask_style: str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """query (B, T, dq), value (B, S, dv), key (B, S, dk) (default: value); masks (B, T) or
        (B, S). Returns the output (B, T, out) and the attention scores (B, heads, T, S).

        ``mask_style`` overrides the module's for one call: Keras 3 leaves its fused path when
        asked for the scores."""
        style = self.mask_style if mask_style is None else mask_style
        if style not in MASK_STYLES:
            raise ValueError(f"mask_style={style!r}: expected one of {MASK_STYLES}")
        if query.dim() != 3 or value.dim() != 3:
            raise ValueError(
                "MultiHeadAttention is ported for (batch, steps, features) inputs; got "
                f"query {tuple(query.shape)}, value {tuple(value.shape)}"
            )
        key = value if key is None else key
        mask = None  # (B or 1, T, S), Keras' _compute_attention_mask
        for part in (
            None if query_mask is None else query_mask.bool().unsqueeze(-1),
            None if value_mask is None else value_mask.bool().unsqueeze(-2),
            None if key_mask is None else key_mask.bool().unsqueeze(-2),
            causal_mask(query.shape[1], value.shape[1], query.device).unsqueeze(0)
            if use_causal_mask
            else None,
        ):
            if part is not None:
                mask = part if mask is None else mask & part
        q = self.query(query)  # (B, T, N, H)
        k = self.key(key)  # (B, S, N, H)
        v = self.value(value)  # (B, S, N, Hv)
        scale = 1.0 / math.sqrt(float(self.key_dim))
        if style.startswith("keras3"):  # Keras 3 casts the Python float through float32
            scale = float(torch.tensor(scale, dtype=torch.float32))
        if style == "keras3-fused":  # the backend scales the logits
            logits = torch.einsum("btnh,bsnh->bnts", q, k) * scale
        else:  # Keras scales the query first
            logits = torch.einsum("btnh,bsnh->bnts", q * scale, k)
        probs = self._masked_softmax(logits, None if mask is None else mask.unsqueeze(1), style)
        context = torch.einsum("bnts,bsnh->btnh", self.dropout(probs), v)  # (B, T, N, Hv)
        return self.attention_output(context), probs

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, key_dim={self.key_dim}, mask={self.mask_style!r}"


# ------------------------------------------------------------------------------------------------
# DeepMoji's attention pooling, ``AttentionWeightedAverage`` (deepmoji/attlayer.py).
#
# Ported as DeepMoji computes it, not as torchMoji does: the max subtracted before ``exp`` is taken
# per row over all steps (masked ones included), and ``ATTENTION_EPSILON`` is added to the
# denominator. Both change the weights measurably on short rows.


class AttentionWeightedAverage(nn.Module):
    """Softmax-over-time attention with one weight per feature; returns the weighted mean.

    ``weight`` is (input_size, 1), the layout of Keras' ``W``, so conversion is the identity.
    """

    def __init__(
        self,
        input_size: int,
        return_attention: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.return_attention = return_attention
        self.weight = nn.Parameter(torch.empty(input_size, 1, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DeepMoji's own init: Keras 'uniform', U(-0.05, 0.05)."""
        nn.init.uniform_(self.weight, -ATTENTION_UNIFORM_LIMIT, ATTENTION_UNIFORM_LIMIT)

    def extra_repr(self) -> str:
        return f"{self.input_size}, return_attention={self.return_attention}"

    def forward(
        self, x: Tensor, mask: Tensor | None = None, *, return_attention: bool | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x: (B, T, d); mask: (B, T), True = real step. Returns (B, d) [and weights (B, T)]."""
        logits = (x @ self.weight).squeeze(-1)  # (B, T)
        # DeepMoji's max trick: the max runs over every step, masked ones included.
        a = torch.exp(logits - logits.amax(dim=1, keepdim=True))  # (B, T)
        if mask is not None:
            a = a * mask.to(a.dtype)
        att = a / (a.sum(dim=1, keepdim=True) + ATTENTION_EPSILON)  # (B, T)
        # The weighted sum over time as one batched matrix product: no (B, T, d) temporary.
        out = torch.bmm(att.unsqueeze(1), x).squeeze(1)  # (B, d)
        if self.return_attention if return_attention is None else return_attention:
            return out, att
        return out


# ------------------------------------------------------------------------------------------------
# Attention layers: Attention (Luong), AdditiveAttention (Bahdanau), MultiHeadAttention.
#
# Parity notes:
# - Inputs arrive in Keras' order: Attention/AdditiveAttention take [query, value(, key)];
#   MultiHeadAttention (query, value(, key)), keyword tensors included (parity.keras.graph
#   appends ``value=`` and ``key=`` after the positional ones). Each input's Keras mask comes with
#   it; the output keeps the query's mask, as both Keras versions do.
# - Call options are read from the call (graph.CALL_OPTIONS): ``use_causal_mask`` (Keras 3 and
#   recent tf.keras), or the config key ``causal`` older Keras 2 files carry;
#   ``return_attention_scores`` adds the weights as a second output ((B, Tq, Tv), or
#   (B, heads, T, S) for MultiHeadAttention).
# - MultiHeadAttention's fully masked query rows compute what the writing Keras computes (see
#   parity.ports.attention.MASK_STYLES): the rule depends on the Keras version, the
#   dropout rate and return_attention_scores, so the converter is versioned.
# - Keras 3 records Attention's output mask as an op node, ops.ConvertToTensor (an identity).
# - Refused by name: MultiHeadAttention with attention_axes other than the time axis, a
#   multi-dimensional output_shape, use_gate=True or sliding_window (recent Keras 3 options).

#: MultiHeadAttention's four projections, as Keras names their weights, in saved order.
MHA_PROJECTIONS = ("query", "key", "value", "attention_output")
#: attention_axes values meaning the default for (B, T, D) inputs: attend over the time axis.
DEFAULT_ATTENTION_AXES = (None, 1, [1])


def _rate(config: Config) -> float:
    value = config.get("dropout", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConversionError(f"dropout={value!r}: expected a rate in [0, 1)")
    return float(value)


def _options(config: Config) -> dict[str, Any]:
    """The call's options (graph.CALL_OPTIONS), checked: a saved config may be tampered with."""
    options = config.get("_options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"call options {options!r} are not a JSON object")
    return options


def _arity(cls: str, xs: list[Tensor]) -> None:
    if len(xs) not in (2, 3):
        raise ValueError(f"{cls} takes query, value and an optional key; got {len(xs)} tensors")


# --- Attention and AdditiveAttention -----------------------------------------------------------


def _attention_weights(config: Config) -> tuple[str, ...]:
    scale = ("scale",) if config.get("use_scale", False) else ()
    concat = ("concat_score_weight",) if config.get("score_mode", "dot") == "concat" else ()
    return scale + concat


def _additive_weights(config: Config) -> tuple[str, ...]:
    return ("scale",) if config.get("use_scale", True) else ()


def _build_attention(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    mode = config.get("score_mode", "dot")
    if mode not in ("dot", "concat"):
        raise ConversionError(f"Attention score_mode={mode!r} is not supported")
    for name in _attention_weights(config):
        if tuple(shapes.get(name, ())) != ():
            raise ConversionError(f"Attention {name} has shape {shapes[name]}, expected ()")
    return Attention(
        bool(config.get("use_scale", False)), mode, _rate(config), bool(config.get("causal"))
    )


def _build_additive(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    use_scale = bool(config.get("use_scale", True))
    scale = tuple(shapes.get("scale", ()))
    if use_scale and len(scale) != 1:
        raise ConversionError(f"AdditiveAttention scale has shape {scale}, expected (dim,)")
    dim = scale[0] if use_scale else 0
    return AdditiveAttention(dim, use_scale, _rate(config), bool(config.get("causal")))


def _scalar_rows(
    weights: Callable[[Config], tuple[str, ...]],
) -> Callable[[str, str, Config], list[Row]]:
    """Rows for weights kept in Keras' layout under Keras' names (scalars, a scale vector)."""

    def rows(layer: str, path: str, config: Config) -> list[Row]:
        return [(f"{layer}/{w}", f"{path}.{w}", "identity") for w in weights(config)]

    return rows


def _call_score_attention(cls: str):
    """[query, value(, key)] with their masks -> output (B, Tq, dv) keeping the query mask."""

    def call(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
        _arity(cls, xs)
        options = _options(config)
        causal = bool(options.get("use_causal_mask")) or bool(config.get("causal"))
        key = xs[2] if len(xs) > 2 else None
        out, weights = module(xs[0], xs[1], key, masks[0], masks[1], causal=causal)
        if options.get("return_attention_scores"):
            return [out, weights], [masks[0], None]
        return [out], [masks[0]]

    return call


# --- MultiHeadAttention ------------------------------------------------------------------------


def _mha_weights(config: Config) -> tuple[str, ...]:
    parts = ("kernel", "bias") if config.get("use_bias", True) else ("kernel",)
    return tuple(f"{p}/{w}" for p in MHA_PROJECTIONS for w in parts)


def _mha_rows(layer: str, path: str, config: Config) -> list[Row]:
    torch_names = {"kernel": "weight", "bias": "bias"}
    rows = []
    for name in _mha_weights(config):
        projection, weight = name.split("/")
        rows.append((f"{layer}/{name}", f"{path}.{projection}.{torch_names[weight]}", "identity"))
    return rows


def _refuse_mha_options(config: Config) -> None:
    axes = config.get("attention_axes")
    if axes not in DEFAULT_ATTENTION_AXES:
        raise ConversionError(
            f"MultiHeadAttention attention_axes={axes!r} is not supported; only the default "
            "(the time axis of (batch, steps, features) inputs)"
        )
    if config.get("use_gate"):
        raise ConversionError("MultiHeadAttention use_gate=True is not supported")
    if config.get("sliding_window") is not None:
        raise ConversionError("MultiHeadAttention sliding_window is not supported")
    out = config.get("output_shape")
    if isinstance(out, list | tuple) and len(out) != 1:
        raise ConversionError(
            f"MultiHeadAttention output_shape={out!r} is not supported; only one output axis"
        )


def _mask_style(config: Config, scores: bool) -> str:
    """Which rule fills masked logits (parity.ports.attention.MASK_STYLES)."""
    if written_by_keras3(config):
        return "keras3-softmax" if _rate(config) > 0 or scores else "keras3-fused"
    return "keras2-robust" if config.get("softmax_robust_masking") else "keras2"


def _build_mha(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    _refuse_mha_options(config)
    kernels = {p: tuple(shapes.get(f"{p}/kernel", ())) for p in MHA_PROJECTIONS}
    if any(len(k) != 3 for k in kernels.values()):
        raise ConversionError(f"MultiHeadAttention kernels {kernels}: expected 3-D kernels")
    query_dim, heads, key_dim = kernels["query"]
    key_in, key_heads, key_size = kernels["key"]
    value_in, value_heads, value_dim = kernels["value"]
    out_heads, out_value_dim, output_dim = kernels["attention_output"]
    if {key_heads, value_heads, out_heads} != {heads} or key_size != key_dim:
        raise ConversionError(f"MultiHeadAttention kernels disagree: {kernels}")
    if out_value_dim != value_dim:
        raise ConversionError(f"MultiHeadAttention kernels disagree: {kernels}")
    declared(config, "num_heads", heads, "the query kernel")
    declared(config, "key_dim", key_dim, "the query kernel")
    declared(config, "value_dim", value_dim, "the value kernel")
    out = config.get("output_shape")
    # Keras projects back to the query's width unless output_shape says otherwise.
    stated = {"output_shape": query_dim if out is None else single(out)}
    declared(stated, "output_shape", output_dim, "the output kernel")
    use_bias = bool(config.get("use_bias", True))
    if use_bias:
        for p in MHA_PROJECTIONS:
            expected = kernels[p][1:] if p != "attention_output" else kernels[p][-1:]
            if tuple(shapes.get(f"{p}/bias", ())) != expected:
                raise ConversionError(
                    f"MultiHeadAttention {p}/bias has shape {shapes.get(f'{p}/bias')}, "
                    f"expected {expected}"
                )
    return MultiHeadAttention(
        query_dim,
        key_in,
        value_in,
        heads,
        key_dim,
        value_dim,
        output_dim,
        use_bias=use_bias,
        dropout=_rate(config),
        mask_style=_mask_style(config, scores=False),
    )


def _call_mha(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """(query, value(, key)) with their masks -> output (B, T, out) keeping the query mask."""
    _arity("MultiHeadAttention", xs)
    options = _options(config)
    scores = bool(options.get("return_attention_scores"))
    key, key_mask = (xs[2], masks[2]) if len(xs) > 2 else (None, None)
    out, probs = module(
        xs[0],
        xs[1],
        key,
        masks[0],
        masks[1],
        key_mask,
        use_causal_mask=bool(options.get("use_causal_mask")),
        mask_style=_mask_style(config, scores),
    )
    return ([out, probs], [masks[0], None]) if scores else ([out], [masks[0]])


def _call_convert_to_tensor(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """Keras 3 records Attention's output mask (compute_mask: convert_to_tensor(query mask)) as
    an op node; it passes the mask through unchanged."""
    if len(xs) != 1 or any(config.get(k) for k in ("dtype", "sparse", "ragged")):
        raise ValueError("ops.convert_to_tensor is supported with one tensor and no options")
    return [xs[0]], [None]


# --- DeepMoji's attention pooling as a Keras class of the generic path -----------------------


def _attention_pooling_weights(config: Config) -> tuple[str, ...]:
    return ("W",)


def _build_attention_pooling(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    features, width = shapes["W"]
    if width != 1:
        raise ConversionError(
            f"AttentionWeightedAverage W has shape {shapes['W']}, expected (d, 1)"
        )
    return AttentionWeightedAverage(features, return_attention=bool(config.get("return_attention")))


def _call_attention_pooling(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """The weighted mean (and the weights with return_attention); no mask goes on."""
    out = module(xs[0], mask=masks[0], return_attention=True)
    outputs = list(out) if module.return_attention else [out[0]]
    return outputs, [None] * len(outputs)


def _emit_attention_pooling(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    constructor = f"AttentionWeightedAverage({module.input_size})"
    if module.return_attention:
        lines = ("{out0}, {out1} = {self}({x0}, mask={m0})",)
        return Emitted(constructor, lines, ("None", "None"), ("AttentionWeightedAverage",))
    lines = ("{out0}, _ = {self}({x0}, mask={m0})",)
    return Emitted(constructor, lines, ("None",), ("AttentionWeightedAverage",))


CONVERTERS: dict[str, LayerConverter] = {
    "AttentionWeightedAverage": LayerConverter(
        _attention_pooling_weights,
        _build_attention_pooling,
        simple_rows(_attention_pooling_weights, ("W", "weight", "identity")),
        _call_attention_pooling,
        emit=_emit_attention_pooling,
        examples=(Example({}, "embedded"),),
    ),
    f"{OP_PREFIX}ConvertToTensor": LayerConverter(
        no_weights, no_module, no_rows, _call_convert_to_tensor, inputs=None
    ),
    "Attention": LayerConverter(
        _attention_weights,
        _build_attention,
        _scalar_rows(_attention_weights),
        _call_score_attention("Attention"),
        inputs=3,
        examples=(
            Example({}, "paired_sequences"),
            Example({"use_scale": True}, "masked_pair"),
            Example({"use_scale": True, "score_mode": "concat"}, "masked_value_pair"),
            Example({"score_mode": "concat"}, "masked_triple"),
            Example({"use_scale": True, "dropout": 0.3}, "masked_triple"),
        ),
    ),
    "AdditiveAttention": LayerConverter(
        _additive_weights,
        _build_additive,
        _scalar_rows(_additive_weights),
        _call_score_attention("AdditiveAttention"),
        inputs=3,
        examples=(
            Example({}, "masked_pair"),
            Example({"use_scale": False}, "masked_value_pair"),
            Example({"dropout": 0.2}, "masked_triple"),
        ),
    ),
    "MultiHeadAttention": LayerConverter(
        _mha_weights,
        _build_mha,
        _mha_rows,
        _call_mha,
        inputs=3,
        examples=(
            Example({"num_heads": 2, "key_dim": 3}, "query_value"),
            Example(
                {"num_heads": 3, "key_dim": 2, "value_dim": 4, "output_shape": 5},
                "query_value_key",
            ),
            Example({"num_heads": 2, "key_dim": 3, "use_bias": False}, "masked_query_value"),
            Example({"num_heads": 2, "key_dim": 3, "dropout": 0.2}, "masked_query_value"),
        ),
        versioned=True,
    ),
}


# --- Keras' default initialization of these modules (parity.init.keras_init_) ---------------


@torch.no_grad()
def _init_attention_pooling(m: nn.Module) -> None:
    # DeepMoji's attention vector: deepmoji/attlayer.py asks for 'uniform'.
    nn.init.uniform_(m.weight, -ATTENTION_UNIFORM_LIMIT, ATTENTION_UNIFORM_LIMIT)


@torch.no_grad()
def _init_head_projection(m: nn.Module) -> None:
    # Keras 3's EinsumDense gives its initializer the equation's input and output axes: fans
    # (dim, heads * size) for a (dim, heads, size) kernel, (heads * size, out) for the output
    # projection's (heads, size, out). (tf.keras computed conv-style fans on the 3-D shape.)
    w = m.weight
    fans = (w.shape[0], -1) if m.direction == "in" else (-1, w.shape[-1])
    glorot_uniform_(w.view(*fans), KERAS_FAN_AXES)
    zeros_(m.bias)


@torch.no_grad()
def _init_luong_attention(m: nn.Module) -> None:
    # keras.layers.Attention: scale and concat_score_weight start at 1.
    fill_(m.scale, 1.0)
    fill_(m.concat_score_weight, 1.0)


@torch.no_grad()
def _init_additive_attention(m: nn.Module) -> None:
    # keras.layers.AdditiveAttention: scale (dim,) glorot_uniform (a 1-D fan is dim both ways).
    if m.scale is not None:
        glorot_uniform_(m.scale)


#: Module type -> its Keras default initialization.
INIT_RULES: dict[type, InitRule] = {
    AttentionWeightedAverage: _init_attention_pooling,
    HeadProjection: _init_head_projection,
    Attention: _init_luong_attention,
    AdditiveAttention: _init_additive_attention,
}
