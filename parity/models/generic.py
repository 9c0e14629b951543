"""Any Keras model made of standard layers, rebuilt from the file's own model config.

No port is written by hand: each Keras layer class has a converter (``CONVERTERS``, a dict keyed
by Keras class name) that says which weights the class saves, builds the parity/torch module with
Keras semantics, and emits that layer's mapping-table rows. ``GenericModel`` runs the Keras graph
(Sequential or Functional, masks included) over modules named after the Keras layers, so
``model.dense_1.weight`` is Keras' ``dense_1/kernel`` transposed.

Parity notes:
- Masks follow Keras: Embedding(mask_zero=True) makes one (id != 0); layers that support masking
  in Keras pass it on (Dense, Activation, dropouts, normalisations, RNNs with
  return_sequences, Concatenate combines them); layers that do not (Flatten, Conv1D, pooling)
  drop it, as Keras 3 does; GlobalAveragePooling1D and the RNNs consume it.
- RNNs: masked steps carry the state; a plain RNN outputs its previous output at masked steps,
  inside Bidirectional zeros. ``go_backwards`` returns the sequence in processing (reversed)
  order, as Keras does; Bidirectional flips it back.
- "hard_sigmoid" in a config means clip(0.2x + 0.5) for a Keras 1/2 file and relu6(x + 3) / 6
  for a Keras 3 file (or what ``hard_sigmoid=`` forces); the choice is made once, at conversion,
  and saved with the model.
- Sizes come from the weights; where the config also states one (units, filters, input_dim), the
  two must agree, so an absurd config fails before anything is allocated.
- Keras 1 per-gate LSTM/GRU arrays and CuDNNLSTM/CuDNNGRU layouts are normalised to the Keras 2
  layout by named normalisations in parity.convert.transforms before mapping.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from parity.conventions import (
    BATCH_NORM_EPSILON,
    BATCH_NORM_MOMENTUM,
    LAYER_NORM_EPSILON,
    MASK_VALUE,
)
from parity.convert.gates import activation_name, resolve_gate
from parity.convert.load import Row, apply_mapping, build_empty
from parity.convert.read import KerasFile, KerasLayer
from parity.convert.transforms import normalise_layer_weights
from parity.errors import ConversionError
from parity.layers.conv import KERAS_PADDINGS, Conv1D
from parity.layers.core import KERAS_ACTIVATIONS, Activation, Dense, Flatten, SpatialDropout1D
from parity.layers.lstm import LSTM
from parity.layers.norm import BatchNormalization, LayerNormalization
from parity.layers.pooling import (
    POOL_PADDINGS,
    AveragePooling1D,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    MaxPooling1D,
)
from parity.layers.rnn import GRU, SimpleRNN

#: Config keys renamed between Keras 1 and Keras 2+ (per class where they differ).
KERAS1_CONFIG_KEYS: dict[str, str] = {
    "inner_activation": "recurrent_activation",
    "bias": "use_bias",
    "nb_filter": "filters",
    "filter_length": "kernel_size",
    "border_mode": "padding",
    "subsample_length": "strides",
    "pool_length": "pool_size",
    "stride": "strides",
}
#: Keras 1 "output_dim" is "units" everywhere except Embedding, where it kept its name.
KERAS1_UNITS_KEY = "output_dim"
#: Keras 1 class names -> Keras 2+ names.
KERAS1_CLASS_NAMES: dict[str, str] = {"Convolution1D": "Conv1D"}
#: Classes converted as another class after their weights are normalised (parity.convert
#: .transforms): cuDNN's layers are the standard ones with sigmoid gates and tanh.
CUDNN_AS: dict[str, str] = {"CuDNNLSTM": "LSTM", "CuDNNGRU": "GRU"}
CUDNN_DEFAULTS: dict[str, Any] = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "use_bias": True,
}
#: Model classes whose config lists layers (nested models inside them are not supported).
INPUT_LAYER = "InputLayer"
RNN_CLASSES = ("SimpleRNN", "LSTM", "GRU")
MERGE_MODES = ("concat", "sum", "mul", "ave")
#: Bound on any size a config declares before it is compared with the weights.
MAX_DECLARED_SIZE = 2**31


# --- the graph description (JSON-safe; saved in the safetensors metadata) ----------------------


@dataclass
class GenericConfig:
    """A Keras graph as parity rebuilds it: layers (class, config, inbound nodes, weight shapes,
    resolved activations), model inputs and outputs. JSON-safe, saved with the weights."""

    layers: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[list[Any]] = field(default_factory=list)
    outputs: list[list[Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        classes = [layer["class_name"] for layer in self.layers]
        return f"GenericConfig({len(classes)} Keras layers: {', '.join(classes)})"


Masks = list[Tensor | None]


@dataclass(frozen=True)
class LayerConverter:
    """How one Keras layer class becomes torch: its saved weights, module, rows and call."""

    #: config -> the weights the class saves, in Keras' saved order ("" names for none).
    weights: Callable[[dict[str, Any]], tuple[str, ...]]
    #: (config, weight shapes, resolved activations) -> module (None for Keras InputLayer).
    build: Callable[[dict[str, Any], dict[str, tuple[int, ...]], dict[str, str]], nn.Module]
    #: (Keras layer name, torch module path, config) -> mapping rows.
    rows: Callable[[str, str, dict[str, Any]], list[Row]]
    #: (module, config, inputs, input masks) -> (outputs, output masks).
    call: Callable[[nn.Module, dict[str, Any], list[Tensor], Masks], tuple[list[Tensor], Masks]]
    #: config keys naming activations, resolved at conversion (hard_sigmoid by Keras version).
    activations: tuple[str, ...] = ()


def _none(config: dict[str, Any]) -> tuple[str, ...]:
    return ()


def _no_rows(layer: str, path: str, config: dict[str, Any]) -> list[Row]:
    return []


def _with_bias(*names: str) -> Callable[[dict[str, Any]], tuple[str, ...]]:
    def weights(config: dict[str, Any]) -> tuple[str, ...]:
        return names + (("bias",) if config.get("use_bias", True) else ())

    return weights


def _declared(config: dict[str, Any], key: str, found: int, what: str) -> None:
    """A size the config states must be sane and agree with the weights."""
    value = config.get(key)
    if value is None:
        return
    if not isinstance(value, int) or not 0 < value <= MAX_DECLARED_SIZE:
        raise ConversionError(f"config declares {key}={value!r}, not a sane size")
    if value != found:
        raise ConversionError(f"config declares {key}={value} but {what} has {found}")


def _single(value: Any) -> Any:
    return value[0] if isinstance(value, list | tuple) else value


# --- call rules: how a module is applied and what happens to the mask ---------------------------


def _call_keep_mask(module: nn.Module, config: dict, xs: list[Tensor], masks: Masks):
    return [module(xs[0])], [masks[0]]


def _call_drop_mask(module: nn.Module, config: dict, xs: list[Tensor], masks: Masks):
    return [module(xs[0])], [None]


def _call_embedding(module: nn.Module, config: dict, xs: list[Tensor], masks: Masks):
    ids = xs[0].long()
    mask = ids != MASK_VALUE if config.get("mask_zero") else None
    return [module(ids)], [mask]


def _call_global_average(module: nn.Module, config: dict, xs: list[Tensor], masks: Masks):
    return [module(xs[0], mask=masks[0])], [None]


def _call_concatenate(module: nn.Module, config: dict, xs: list[Tensor], masks: Masks):
    axis = config.get("axis", -1)
    out = torch.cat(xs, dim=axis)
    if all(m is None for m in masks):
        return [out], [None]
    full = [
        torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if m is None else m
        for x, m in zip(xs, masks, strict=True)
    ]
    last = axis in (-1, xs[0].dim() - 1)
    mask = torch.stack(full).all(dim=0) if last else torch.cat(full, dim=axis)
    return [out], [mask]


def _operands(config: dict, xs: list[Tensor]) -> list[Any]:
    """A recorded op's operands: its tensors, then its constant arguments."""
    return [*xs, *config["_constants"]]


#: Keras 3 records the mask arithmetic of functional models as op nodes (module keras.src.ops):
#: ids != 0, and for Concatenate expand_dims / zeros_like / logical_or / concatenate / any.
#: Their class names get this prefix, so the op "Concatenate" is not the layer "Concatenate".
OP_PREFIX = "ops."
OPS: dict[str, Callable[[dict, list[Any]], Tensor]] = {
    "NotEqual": lambda c, a: torch.ne(a[0], a[1]),
    "Equal": lambda c, a: torch.eq(a[0], a[1]),
    "ExpandDims": lambda c, a: a[0].unsqueeze(c.get("axis", -1)),
    "ZerosLike": lambda c, a: torch.zeros_like(a[0], dtype=torch.bool),
    "OnesLike": lambda c, a: torch.ones_like(a[0], dtype=torch.bool),
    "LogicalOr": lambda c, a: torch.logical_or(a[0], a[1]),
    "LogicalAnd": lambda c, a: torch.logical_and(a[0], a[1]),
    "Concatenate": lambda c, a: torch.cat(a, dim=c.get("axis", -1)),
    "Any": lambda c, a: a[0].bool().any(dim=c.get("axis", -1), keepdim=bool(c.get("keepdims"))),
    "All": lambda c, a: a[0].bool().all(dim=c.get("axis", -1), keepdim=bool(c.get("keepdims"))),
}


def _moduleless(cls: str) -> bool:
    """Graph nodes without a module of their own: the inputs and Keras 3's recorded ops."""
    return cls == INPUT_LAYER or cls.startswith(OP_PREFIX)


def _call_op(module: nn.Module, config: dict, xs: list[Tensor], masks: Masks):
    return [OPS[config["_op"]](config, _operands(config, xs))], [None]


def _merge(mode: str, forward: Tensor, backward: Tensor) -> Tensor:
    merges: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
        "concat": lambda a, b: torch.cat([a, b], dim=-1),
        "sum": lambda a, b: a + b,
        "mul": lambda a, b: a * b,
        "ave": lambda a, b: (a + b) / 2,
    }
    return merges[mode](forward, backward)


def _run_rnn(module: nn.Module, x: Tensor, mask: Tensor | None) -> tuple[Tensor, list[Tensor], int]:
    """(sequence output, final states as Keras returns them [h] or [h, c], directions)."""
    if isinstance(module, LSTM):
        out, (h, c) = module(x, mask=mask)
        return out, [h, c], module.num_directions
    out, h = module(x, mask=mask)
    return out, [h], module.num_directions


def _call_rnn(module: nn.Module, config: dict, xs: list[Tensor], masks: Masks):
    x, mask = xs[0], masks[0]
    backwards = bool(config.get("go_backwards"))
    if backwards:  # Keras reverses the input and keeps the output in processing order
        x = x.flip(1)
        mask = None if mask is None else mask.flip(1)
    seq, states, _ = _run_rnn(module, x, mask)
    out = seq if config.get("return_sequences") else states[0][0]
    outputs = [out]
    if config.get("return_state"):
        outputs += [state[0] for state in states]
    out_mask = mask if config.get("return_sequences") else None
    return outputs, [out_mask] + [None] * (len(outputs) - 1)


def _call_bidirectional(module: nn.Module, config: dict, xs: list[Tensor], masks: Masks):
    inner = _inner_config(config)
    seq, states, _ = _run_rnn(module, xs[0], masks[0])
    hidden = seq.shape[-1] // 2
    if inner.get("return_sequences"):
        forward, backward = seq[..., :hidden], seq[..., hidden:]
    else:
        forward, backward = states[0][0], states[0][1]
    out = _merge(config.get("merge_mode", "concat"), forward, backward)
    outputs = [out]
    if inner.get("return_state"):  # Keras: forward states, then backward states
        outputs += [state[0] for state in states] + [state[1] for state in states]
    out_mask = masks[0] if inner.get("return_sequences") else None
    return outputs, [out_mask] + [None] * (len(outputs) - 1)


# --- per-class converters -----------------------------------------------------------------------


def _build_embedding(config: dict, shapes: dict, acts: dict) -> nn.Module:
    vocab, dim = shapes["embeddings"]
    _declared(config, "input_dim", vocab, "the embeddings array")
    _declared(config, "output_dim", dim, "the embeddings array")
    return nn.Embedding(vocab, dim)


def _build_dense(config: dict, shapes: dict, acts: dict) -> nn.Module:
    fan_in, units = shapes["kernel"]
    _declared(config, "units", units, "the kernel")
    return Dense(fan_in, units, bias="bias" in shapes, activation=acts["activation"])


def _build_conv1d(config: dict, shapes: dict, acts: dict) -> nn.Module:
    size, fan_in, filters = shapes["kernel"]
    _declared(config, "filters", filters, "the kernel")
    _declared(
        {"kernel_size": _single(config.get("kernel_size"))}, "kernel_size", size, "the kernel"
    )
    padding = config.get("padding", "valid")
    if padding not in KERAS_PADDINGS or config.get("data_format", "channels_last") not in (
        "channels_last",
        None,
    ):
        raise ConversionError(f"Conv1D padding {padding!r} / data_format is not supported")
    if config.get("groups", 1) != 1:
        raise ConversionError("Conv1D with groups > 1 is not supported")
    return Conv1D(
        fan_in,
        filters,
        size,
        stride=_single(config.get("strides", 1)),
        padding=padding,
        dilation=_single(config.get("dilation_rate", 1)),
        bias="bias" in shapes,
        activation=acts["activation"],
    )


def _build_pooling(cls: type) -> Callable[[dict, dict, dict], nn.Module]:
    def build(config: dict, shapes: dict, acts: dict) -> nn.Module:
        padding = config.get("padding", "valid")
        if padding not in POOL_PADDINGS:
            raise ConversionError(f"pooling padding {padding!r} is not supported")
        strides = config.get("strides")
        return cls(
            _single(config.get("pool_size", 2)),
            None if strides is None else _single(strides),
            padding,
        )

    return build


def _build_global(cls: type) -> Callable[[dict, dict, dict], nn.Module]:
    def build(config: dict, shapes: dict, acts: dict) -> nn.Module:
        if config.get("keepdims") or config.get("data_format", "channels_last") not in (
            "channels_last",
            None,
        ):
            raise ConversionError("global pooling with keepdims or channels_first unsupported")
        return cls()

    return build


def _build_batch_norm(config: dict, shapes: dict, acts: dict) -> nn.Module:
    (features,) = shapes["moving_mean"]
    return BatchNormalization(
        features,
        eps=config.get("epsilon", BATCH_NORM_EPSILON),
        momentum=config.get("momentum", BATCH_NORM_MOMENTUM),
        scale=config.get("scale", True),
        center=config.get("center", True),
    )


def _build_layer_norm(config: dict, shapes: dict, acts: dict) -> nn.Module:
    axis = config.get("axis", -1)
    if _single(axis) != -1 and not (isinstance(axis, list) and len(axis) == 1):
        raise ConversionError(f"LayerNormalization over axis {axis!r} is not supported")
    scale, center = config.get("scale", True), config.get("center", True)
    if not shapes or (center and not scale):
        raise ConversionError("LayerNormalization needs scale=True (torch couples weight/bias)")
    (features,) = next(iter(shapes.values()))
    return LayerNormalization(
        features, eps=config.get("epsilon", LAYER_NORM_EPSILON), bias=bool(center)
    )


def _build_rnn(config: dict, shapes: dict, acts: dict, *, bidirectional: bool = False):
    cls = config["_rnn_class"]
    prefix = "forward_" if bidirectional else ""
    fan_in = shapes[f"{prefix}kernel"][0]
    units = shapes[f"{prefix}recurrent_kernel"][0]
    _declared(config, "units", units, "the recurrent kernel")
    for flag in ("stateful", "time_major", "unroll_initial_state"):
        if config.get(flag):
            raise ConversionError(f"{cls} with {flag}=True is not supported")
    bias = f"{prefix}bias" in shapes
    activation = acts.get("activation", "tanh")
    common = {"bias": bias, "batch_first": True, "bidirectional": bidirectional}
    if cls == "LSTM":
        return LSTM(
            fan_in,
            units,
            gate_activation=acts["recurrent_activation"],
            activation=activation,
            zero_output_for_mask=bidirectional,
            **common,
        )
    if cls == "GRU":
        return GRU(
            fan_in,
            units,
            gate_activation=acts["recurrent_activation"],
            activation=activation,
            reset_after=bool(config.get("reset_after", False)),
            zero_output_for_mask=bidirectional,
            **common,
        )
    return SimpleRNN(
        fan_in, units, activation=activation, zero_output_for_mask=bidirectional, **common
    )


def _rnn_rows(layer: str, path: str, cls: str, use_bias: bool, prefix: str, suffix: str):
    kernel = "gru_kernel" if cls == "GRU" else "transpose"
    rows: list[Row] = [
        (f"{layer}/{prefix}kernel", f"{path}.weight_ih_l0{suffix}", kernel),
        (f"{layer}/{prefix}recurrent_kernel", f"{path}.weight_hh_l0{suffix}", kernel),
    ]
    if use_bias and cls == "GRU":
        rows.append((f"{layer}/{prefix}bias", f"{path}.bias_l0{suffix}", "gru_bias"))
    elif use_bias:
        rows += [
            (f"{layer}/{prefix}bias", f"{path}.bias_ih_l0{suffix}", "identity"),
            (None, f"{path}.bias_hh_l0{suffix}", "zeros"),
        ]
    return rows


def _inner_config(config: dict) -> dict:
    inner = config["layer"]
    return inner.get("config", inner)


RNN_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


def _rnn_weights(config: dict) -> tuple[str, ...]:
    return RNN_WEIGHTS if config.get("use_bias", True) else RNN_WEIGHTS[:2]


def _bidirectional_weights(config: dict) -> tuple[str, ...]:
    inner = _rnn_weights(_inner_config(config))
    return tuple(f"{d}_{w}" for d in ("forward", "backward") for w in inner)


def _bidirectional_rows(layer: str, path: str, config: dict) -> list[Row]:
    inner = _inner_config(config)
    rows: list[Row] = []
    for prefix, suffix in (("forward_", ""), ("backward_", "_reverse")):
        rows += _rnn_rows(
            layer, path, config["_rnn_class"], inner.get("use_bias", True), prefix, suffix
        )
    return rows


def _build_bidirectional(config: dict, shapes: dict, acts: dict) -> nn.Module:
    if config.get("merge_mode", "concat") not in MERGE_MODES:
        raise ConversionError(f"Bidirectional merge_mode {config.get('merge_mode')!r} unsupported")
    inner = _inner_config(config)
    merged = {**inner, "_rnn_class": config["_rnn_class"]}
    if shapes.get("backward_kernel") != shapes.get("forward_kernel"):
        raise ConversionError("Bidirectional with differently sized directions is not supported")
    return _build_rnn(merged, shapes, acts, bidirectional=True)


def _simple_rows(*pairs: tuple[str, str, str]) -> Callable[[str, str, dict], list[Row]]:
    """Rows (keras weight, torch parameter, transform), filtered by the weights the config has."""

    def rows(layer: str, path: str, config: dict) -> list[Row]:
        present = set(CONVERTERS[config["_class"]].weights(config))
        return [(f"{layer}/{k}", f"{path}.{t}", how) for k, t, how in pairs if k in present]

    return rows


def _bn_weights(config: dict) -> tuple[str, ...]:
    names = ("gamma",) if config.get("scale", True) else ()
    names += ("beta",) if config.get("center", True) else ()
    return (*names, "moving_mean", "moving_variance")


def _ln_weights(config: dict) -> tuple[str, ...]:
    names = ("gamma",) if config.get("scale", True) else ()
    return names + (("beta",) if config.get("center", True) else ())


def _no_module(config: dict, shapes: dict, acts: dict) -> nn.Module:
    return nn.Identity()


def _build_dropout(config: dict, shapes: dict, acts: dict) -> nn.Module:
    return nn.Dropout(float(config.get("rate", config.get("p", 0.0))))


def _build_spatial_dropout(config: dict, shapes: dict, acts: dict) -> nn.Module:
    return SpatialDropout1D(float(config.get("rate", config.get("p", 0.0))))


#: Keras class name -> converter. Adding a layer = one entry here.
CONVERTERS: dict[str, LayerConverter] = {
    INPUT_LAYER: LayerConverter(_none, _no_module, _no_rows, _call_keep_mask),
    "Embedding": LayerConverter(
        lambda c: ("embeddings",),
        _build_embedding,
        _simple_rows(("embeddings", "weight", "identity")),
        _call_embedding,
    ),
    "Dense": LayerConverter(
        _with_bias("kernel"),
        _build_dense,
        _simple_rows(("kernel", "weight", "transpose"), ("bias", "bias", "identity")),
        _call_keep_mask,
        activations=("activation",),
    ),
    "Activation": LayerConverter(
        _none,
        lambda c, s, a: Activation(a["activation"]),
        _no_rows,
        _call_keep_mask,
        activations=("activation",),
    ),
    "Dropout": LayerConverter(_none, _build_dropout, _no_rows, _call_keep_mask),
    "SpatialDropout1D": LayerConverter(_none, _build_spatial_dropout, _no_rows, _call_keep_mask),
    "Flatten": LayerConverter(_none, lambda c, s, a: Flatten(), _no_rows, _call_drop_mask),
    "Conv1D": LayerConverter(
        _with_bias("kernel"),
        _build_conv1d,
        _simple_rows(("kernel", "weight", "conv1d_kernel"), ("bias", "bias", "identity")),
        _call_drop_mask,
        activations=("activation",),
    ),
    "MaxPooling1D": LayerConverter(_none, _build_pooling(MaxPooling1D), _no_rows, _call_drop_mask),
    "AveragePooling1D": LayerConverter(
        _none, _build_pooling(AveragePooling1D), _no_rows, _call_drop_mask
    ),
    "GlobalMaxPooling1D": LayerConverter(
        _none, _build_global(GlobalMaxPooling1D), _no_rows, _call_drop_mask
    ),
    "GlobalAveragePooling1D": LayerConverter(
        _none, _build_global(GlobalAveragePooling1D), _no_rows, _call_global_average
    ),
    "BatchNormalization": LayerConverter(
        _bn_weights,
        _build_batch_norm,
        _simple_rows(
            ("gamma", "weight", "identity"),
            ("beta", "bias", "identity"),
            ("moving_mean", "running_mean", "identity"),
            ("moving_variance", "running_var", "identity"),
        ),
        _call_keep_mask,
    ),
    "LayerNormalization": LayerConverter(
        _ln_weights,
        _build_layer_norm,
        _simple_rows(("gamma", "weight", "identity"), ("beta", "bias", "identity")),
        _call_keep_mask,
    ),
    "Concatenate": LayerConverter(_none, _no_module, _no_rows, _call_concatenate),
    **{f"{OP_PREFIX}{op}": LayerConverter(_none, _no_module, _no_rows, _call_op) for op in OPS},
    **{
        cls: LayerConverter(
            _rnn_weights,
            _build_rnn,
            lambda layer, path, c: _rnn_rows(
                layer, path, c["_rnn_class"], c.get("use_bias", True), "", ""
            ),
            _call_rnn,
            activations=("activation", "recurrent_activation"),
        )
        for cls in RNN_CLASSES
    },
    "Bidirectional": LayerConverter(
        _bidirectional_weights,
        _build_bidirectional,
        _bidirectional_rows,
        _call_bidirectional,
        activations=("activation", "recurrent_activation"),
    ),
}
#: SimpleRNN's activation defaults to tanh and has no recurrent_activation.
ACTIVATION_DEFAULTS: dict[str, str] = {"activation": "linear", "recurrent_activation": "sigmoid"}
RNN_ACTIVATION_DEFAULTS: dict[str, str] = {"activation": "tanh"}


# --- the module --------------------------------------------------------------------------------


def module_name(keras_name: str) -> str:
    """A Keras layer name as a torch submodule name (dots are path separators in torch)."""
    return keras_name.replace(".", "_").replace("/", "_")


class GenericModel(nn.Module):
    """A Keras model (Sequential or Functional) run in torch; submodules are the Keras layers.

    forward(*inputs) takes the Keras model's inputs in order (int ids for an Embedding input) and
    returns its output, or a tuple for several outputs.
    """

    def __init__(self, config: GenericConfig) -> None:
        super().__init__()
        self.config = config
        self._layers = {layer["name"]: layer for layer in config.layers}
        self._paths: dict[str, str] = {}
        for layer in config.layers:
            converter = CONVERTERS[layer["config"]["_class"]]
            shapes = {k: tuple(v) for k, v in layer["shapes"].items()}
            try:
                module = converter.build(layer["config"], shapes, layer["activations"])
            except (ConversionError, ValueError, KeyError) as exc:
                raise ConversionError(
                    f"layer {layer['name']!r} ({layer['class_name']}): {exc}"
                ) from exc
            path = module_name(layer["name"])
            if hasattr(self, path) and path not in self._modules:
                path += "_"
            self._paths[layer["name"]] = path
            if not _moduleless(layer["config"]["_class"]):
                self.add_module(path, module)

    @property
    def mapping(self) -> list[Row]:
        """The mapping table: (Keras weight, torch parameter, transform) for every weight."""
        rows: list[Row] = []
        for layer in self.config.layers:
            converter = CONVERTERS[layer["config"]["_class"]]
            rows += converter.rows(layer["name"], self._paths[layer["name"]], layer["config"])
        return rows

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if len(inputs) != len(self.config.inputs):
            raise ValueError(f"expected {len(self.config.inputs)} inputs, got {len(inputs)}")
        cache: dict[tuple[str, int], tuple[list[Tensor], Masks]] = {}
        for (name, node, _), x in zip(self.config.inputs, inputs, strict=True):
            cache[(name, node)] = ([x], [None])

        def value(ref: Sequence[Any]) -> tuple[Tensor, Tensor | None]:
            name, node, index = ref[0], int(ref[1]), int(ref[2])
            if (name, node) not in cache:
                layer = self._layers[name]
                call = layer["inbound"][node]
                args = [value(r) for r in call["args"]]
                masks = [a[1] for a in args]
                if call["mask"] is not None:  # Keras 3 passes some masks explicitly
                    masks[0] = value(call["mask"])[0]
                converter = CONVERTERS[layer["config"]["_class"]]
                module = getattr(self, self._paths[name], None)
                config = {**layer["config"], "_constants": call["constants"]}
                cache[(name, node)] = converter.call(module, config, [a[0] for a in args], masks)
            outs, masks = cache[(name, node)]
            return outs[index], masks[index]

        results = tuple(value(ref)[0] for ref in self.config.outputs)
        return results[0] if len(results) == 1 else results


# --- from a Keras file -------------------------------------------------------------------------


def _entry_class(entry: dict[str, Any]) -> str:
    """The converter key of a config entry: its class, "ops."-prefixed for Keras 3 op nodes."""
    cls = str(entry.get("class_name", "?"))
    return f"{OP_PREFIX}{cls}" if str(entry.get("module", "")).startswith("keras.src.ops") else cls


def _keras1_normalise(class_name: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Keras 1 class and config key names -> Keras 2+ names."""
    class_name = KERAS1_CLASS_NAMES.get(class_name, class_name)
    config = {KERAS1_CONFIG_KEYS.get(k, k): v for k, v in config.items()}
    if KERAS1_UNITS_KEY in config and class_name != "Embedding" and "units" not in config:
        config["units"] = config.pop(KERAS1_UNITS_KEY)
    return class_name, config


def _layer_entries(model_config: dict[str, Any]) -> tuple[list[dict], list, list, bool]:
    """(layer entries, input refs, output refs, sequential) from any Keras model config."""
    cls = model_config.get("class_name")
    config = model_config.get("config", model_config)
    if isinstance(config, list):  # Keras 1 / early Keras 2 Sequential: a list of layers
        layers = config
    else:
        layers = config.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConversionError("the model config lists no layers")
    if cls == "Sequential" or isinstance(config, list):
        return layers, [], [], True
    inputs = config.get("input_layers", [])
    outputs = config.get("output_layers", [])
    return layers, _refs(inputs), _refs(outputs), False


def _refs(value: Any) -> list[list[Any]]:
    """Keras' [name, node, tensor] or a list of them -> a list of [name, node, tensor]."""
    if isinstance(value, dict):  # Keras 3 may write {"name": ref}
        value = list(value.values())
    if value and isinstance(value[0], str):
        return [list(value[:3])]
    return [list(v[:3]) for v in value]


def _inbound(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Every call of a layer in a functional config -> {"args": the [layer, node, tensor] refs it
    reads, "mask": the ref of an explicitly passed mask or None, "constants": other arguments}."""
    calls = []
    for node in entry.get("inbound_nodes", []):
        refs: list[list[Any]] = []
        mask = None
        constants: list[Any] = []
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            for arg in node.get("args", []):
                found: list[list[Any]] = []
                _collect_tensors(arg, found)
                refs += found
                if not found:
                    constants.append(arg)
            for key, val in node.get("kwargs", {}).items():
                found = []
                _collect_tensors(val, found)
                if found and key == "mask" and len(found) == 1:
                    mask = found[0]
                elif found:
                    raise ConversionError(
                        f"layer {entry.get('name')!r} is called with tensor argument {key!r}; "
                        "not supported"
                    )
        else:  # Keras 1/2: [[name, node, tensor, kwargs], ...]
            for ref in node:
                if len(ref) > 3 and isinstance(ref[3], dict):
                    extra = [k for k in ref[3] if k not in ("training", "mask")]
                    if extra:
                        raise ConversionError(
                            f"layer {entry.get('name')!r} is called with {extra}; not supported"
                        )
                refs.append(list(ref[:3]))
        calls.append({"args": refs, "mask": mask, "constants": _json_safe(constants)})
    return calls


def _collect_tensors(value: Any, out: list[list[Any]]) -> None:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            out.append(list(value["config"]["keras_history"][:3]))
            return
        for item in value.values():
            _collect_tensors(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_tensors(item, out)


def _resolve_activations(
    kfile: KerasFile,
    layer_name: str,
    cls: str,
    config: dict[str, Any],
    keys: Sequence[str],
    hard_sigmoid: str | None,
    notes: list[str],
) -> dict[str, str]:
    resolved: dict[str, str] = {}
    defaults = RNN_ACTIVATION_DEFAULTS if cls in RNN_CLASSES else ACTIVATION_DEFAULTS
    for key in keys:
        if cls == "SimpleRNN" and key == "recurrent_activation":
            continue
        raw = config.get(key, defaults.get(key, ACTIVATION_DEFAULTS.get(key)))
        name = activation_name(raw) if raw is not None else "linear"
        if name.startswith("hard_sigmoid"):
            name, extra = resolve_gate(kfile, raw, hard_sigmoid, default=name, layer=layer_name)
            notes += extra
        elif name not in KERAS_ACTIVATIONS:
            raise ConversionError(
                f"{kfile.path}: layer {layer_name!r} ({cls}) uses activation {name!r}; "
                f"supported: {', '.join(KERAS_ACTIVATIONS)}, hard_sigmoid"
            )
        resolved[key] = name
    return resolved


def unsupported_layers(kfile: KerasFile) -> list[str]:
    """'name (Class)' of every layer in the file's config the generic path cannot convert."""
    if not kfile.model_config:
        return []
    try:
        entries, _, _, _ = _layer_entries(kfile.model_config)
    except ConversionError:
        return []
    out = []
    for entry in entries:
        cls, config = _keras1_normalise(_entry_class(entry), entry.get("config", {}))
        cls = CUDNN_AS.get(cls, cls)
        name = entry.get("name") or config.get("name")
        if cls not in CONVERTERS:
            out.append(f"{name} ({entry.get('class_name')})")
        elif cls == "Bidirectional":
            inner = config.get("layer", {}).get("class_name")
            inner = CUDNN_AS.get(inner, inner)
            if inner not in RNN_CLASSES:
                out.append(f"{name} (Bidirectional({inner}))")
    return out


def config_from_keras(
    kfile: KerasFile, hard_sigmoid: str | None = None
) -> tuple[GenericConfig, dict[str, np.ndarray], list[str]]:
    """(graph config, Keras weights named "layer/weight" in canonical layout, notes)."""
    if not kfile.model_config:
        raise ConversionError(
            f"{kfile.path}: the file has no model config ({kfile.format} stores weights only), so "
            "the architecture cannot be rebuilt from it; pass arch= a registered architecture, "
            "or convert the full-model file (.keras, or a legacy .h5 written by model.save)"
        )
    bad = unsupported_layers(kfile)
    if bad:
        raise ConversionError(
            f"{kfile.path}: unsupported layer(s) {', '.join(bad)}; supported classes: "
            f"{', '.join(c for c in CONVERTERS if c != INPUT_LAYER)}"
        )
    entries, inputs, outputs, sequential = _layer_entries(kfile.model_config)
    stored = {layer.name: layer for layer in kfile.layers}
    notes: list[str] = []
    layers: list[dict[str, Any]] = []
    weights: dict[str, np.ndarray] = {}
    problems: list[str] = []
    previous: str | None = None
    for entry in entries:
        original_cls = _entry_class(entry)
        cls, config = _keras1_normalise(original_cls, copy.deepcopy(entry.get("config", {})))
        name = entry.get("name") or config.get("name")
        if cls in CUDNN_AS:
            config = {**CUDNN_DEFAULTS, **config}
            if cls == "CuDNNGRU":
                config["reset_after"] = True
            cls = CUDNN_AS[cls]
        if cls == "Bidirectional":
            inner_cls, inner = _keras1_normalise(
                config["layer"]["class_name"], config["layer"].get("config", {})
            )
            if inner_cls in CUDNN_AS:
                inner = {**CUDNN_DEFAULTS, **inner}
                if inner_cls == "CuDNNGRU":
                    inner["reset_after"] = True
            config["_inner_source_class"] = inner_cls
            config["layer"] = {"class_name": CUDNN_AS.get(inner_cls, inner_cls), "config": inner}
            config["_rnn_class"] = CUDNN_AS.get(inner_cls, inner_cls)
            acts_source = inner
        else:
            acts_source = config
            if cls in RNN_CLASSES:
                config["_rnn_class"] = cls
        config["_class"] = cls
        if cls.startswith(OP_PREFIX):
            config["_op"] = cls.removeprefix(OP_PREFIX)
        converter = CONVERTERS[cls]
        activations = _resolve_activations(
            kfile, name, cls, acts_source, converter.activations, hard_sigmoid, notes
        )
        # weights: normalised to the Keras 2 layout, then named canonically
        names = converter.weights(config)
        layer = stored.get(name, KerasLayer(name))
        try:
            arrays = normalise_layer_weights(
                original_cls if cls != "Bidirectional" else "Bidirectional",
                config,
                [w.array for w in layer.weights],
                len(names),
            )
        except ConversionError as exc:
            problems.append(f"layer {name!r} ({original_cls}): {exc}")
            arrays = None
        if arrays is not None and len(arrays) != len(names):
            found = [w.name for w in layer.weights]
            problems.append(
                f"layer {name!r} ({original_cls}): expected {len(names)} weights "
                f"{list(names)}, found {len(found)} {found}"
            )
            arrays = None
        shapes = {}
        if arrays is not None:
            for weight_name, array in zip(names, arrays, strict=True):
                weights[f"{name}/{weight_name}"] = array
                shapes[weight_name] = list(array.shape)
        if sequential:
            inbound = [] if cls == INPUT_LAYER else [_call([previous, 0, 0])] if previous else []
        else:
            inbound = _inbound(entry)
        if sequential and previous is None and cls != INPUT_LAYER:
            inputs = [["__input__", 0, 0]]
            inbound = [_call(["__input__", 0, 0])]
        if sequential and cls == INPUT_LAYER:
            inputs = [[name, 0, 0]]
        layers.append(
            {
                "name": name,
                "class_name": original_cls,
                "config": _json_safe(config),
                "inbound": inbound,
                "shapes": shapes,
                "activations": activations,
            }
        )
        previous = name
    if sequential:
        outputs = [[previous, 0, 0]]
        if inputs and inputs[0][0] == "__input__":
            layers.insert(
                0,
                {
                    "name": "__input__",
                    "class_name": INPUT_LAYER,
                    "config": {"_class": INPUT_LAYER},
                    "inbound": [],
                    "shapes": {},
                    "activations": {},
                },
            )
    known = {layer["name"] for layer in layers}
    for layer in kfile.layers:  # weights of layers the config does not list: reported unused
        if layer.name not in known:
            for weight in layer.weights:
                weights[f"{layer.name}/{weight.name}"] = weight.array
    for key, array in weights.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad_count = int(array.size - np.isfinite(array).sum())
            layer_name, weight_name = key.split("/", 1)
            problems.append(
                f"layer {layer_name!r}: weight {weight_name!r} has {bad_count} NaN/Inf values"
            )
    if problems:
        raise ConversionError(f"{kfile.path}: " + "; ".join(problems))
    return GenericConfig(layers=layers, inputs=inputs, outputs=outputs), weights, notes


def _call(ref: list[Any]) -> dict[str, Any]:
    """A Sequential layer's one call: it reads the previous layer's output."""
    return {"args": [ref], "mask": None, "constants": []}


def _json_safe(value: Any) -> Any:
    """Configs keep only JSON values (Keras 3 configs can hold dtype policies as dicts: fine)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def from_keras(
    kfile: KerasFile, hard_sigmoid: str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[GenericModel, list[str]]:
    """Build the generic module from the file's config and fill it strictly."""
    config, weights, notes = config_from_keras(kfile, hard_sigmoid)
    try:
        model = build_empty(lambda: GenericModel(config), dtype)
    except ConversionError as exc:
        raise ConversionError(f"{kfile.path}: {exc}") from exc
    apply_mapping(model, model.mapping, weights, source=str(kfile.path), assign=True)
    return model.eval(), notes


def config_classes(kfile: KerasFile) -> list[str] | None:
    """The Keras classes of the config's layers in order (InputLayer left out); None without a
    config."""
    if not kfile.model_config:
        return None
    try:
        entries, _, _, _ = _layer_entries(kfile.model_config)
    except ConversionError:
        return None
    classes = [_keras1_normalise(_entry_class(e), {})[0] for e in entries]
    return [cls for cls in classes if not _moduleless(cls)]


def default_rows(layer: str, cls: str) -> list[Row]:
    """The rows a layer of class ``cls`` ("LSTM", "Bidirectional(GRU)") with default config gets,
    its module named after the layer."""
    outer, _, inner = cls.partition("(")
    config: dict[str, Any] = {"_class": outer}
    if inner:
        config |= {"_rnn_class": inner.rstrip(")"), "layer": {"config": {}}}
    elif outer in RNN_CLASSES:
        config["_rnn_class"] = outer
    return CONVERTERS[outer].rows(layer, module_name(layer), config)
