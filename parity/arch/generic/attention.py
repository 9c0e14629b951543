"""Attention layers: Attention (Luong), AdditiveAttention (Bahdanau), MultiHeadAttention.

Parity notes:
- Inputs arrive in Keras' order: Attention/AdditiveAttention take [query, value(, key)];
  MultiHeadAttention (query, value(, key)), keyword tensors included (parity.keras.graph
  appends ``value=`` and ``key=`` after the positional ones). Each input's Keras mask comes with
  it; the output keeps the query's mask, as both Keras versions do.
- Call options are read from the call (graph.CALL_OPTIONS): ``use_causal_mask`` (Keras 3 and
  recent tf.keras), or the config key ``causal`` older Keras 2 files carry;
  ``return_attention_scores`` adds the weights as a second output ((B, Tq, Tv), or
  (B, heads, T, S) for MultiHeadAttention).
- MultiHeadAttention's fully masked query rows compute what the writing Keras computes (see
  parity.layers.keras_attention.MASK_STYLES): the rule depends on the Keras version, the
  dropout rate and return_attention_scores, so the converter is versioned.
- Keras 3 records Attention's output mask as an op node, ops.ConvertToTensor (an identity).
- Refused by name: MultiHeadAttention with attention_axes other than the time axis, a
  multi-dimensional output_shape, use_gate=True or sliding_window (recent Keras 3 options).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    Masks,
    Shapes,
    declared,
    no_module,
    no_rows,
    no_weights,
    single,
    written_by_keras3,
)
from parity.convert.mapping import Row
from parity.errors import ConversionError
from parity.keras.graph import OP_PREFIX
from parity.layers.keras_attention import AdditiveAttention, Attention, MultiHeadAttention

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
    """Which rule fills masked logits (parity.layers.keras_attention.MASK_STYLES)."""
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


CONVERTERS: dict[str, LayerConverter] = {
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
