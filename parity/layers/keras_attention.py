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

import torch
from torch import Tensor, nn

from parity.conventions import (
    ATTENTION_MASK_PENALTY,
    DOT_PRODUCT_ATTENTION_MASK_FILL,
    SOFTMAX_MASK_FILL,
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
