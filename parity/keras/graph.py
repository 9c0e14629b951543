"""A Keras model config (Keras 1, 2, tf.keras or 3) parsed once into one normalised graph.

Every consumer (the generic architecture, architecture matching, `parity inspect`, `parity
check`'s input shapes) reads this graph instead of the raw JSON, so the differences between
Keras versions are handled here and nowhere else:

- Keras 1 class and config key names become Keras 2+ names (``KERAS1_CLASS_NAMES``,
  ``KERAS1_CONFIG_KEYS``); CuDNNLSTM/CuDNNGRU become LSTM/GRU with cuDNN's fixed activations.
- A Sequential model (a list of layers in Keras 1 and early Keras 2, a dict in later ones)
  becomes a functional graph: an input node, each layer reading the previous one.
- Inbound nodes (Keras 1/2 ``[[name, node, tensor, kwargs]]`` lists, Keras 3 ``{"args",
  "kwargs"}`` dicts) become calls: the tensors a layer reads, an explicit mask, constant args.
- Keras 3 records functional mask arithmetic as op nodes (module keras.src.ops); their class
  names get ``OP_PREFIX`` so the op "Concatenate" is not the layer "Concatenate".

Nothing here knows about torch or weights.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from parity.errors import ConversionError

#: Config keys renamed between Keras 1 and Keras 2+.
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
#: cuDNN's recurrent layers are the standard ones with sigmoid gates and tanh; their weights are
#: normalised to the standard layout by parity.convert.transforms.
CUDNN_AS: dict[str, str] = {"CuDNNLSTM": "LSTM", "CuDNNGRU": "GRU"}
CUDNN_DEFAULTS: dict[str, Any] = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "use_bias": True,
}
#: cuDNN's GRU is reset_after=True by construction (one bias per side).
CUDNN_GRU_RESET_AFTER = True
INPUT_LAYER = "InputLayer"
#: Prefix of Keras 3 op nodes' classes (see module docstring).
OP_PREFIX = "ops."
#: The input node given to a Sequential model whose config names no InputLayer.
SEQUENTIAL_INPUT = "__input__"
#: Config keys giving an input's fixed shape (Keras 3 InputLayer; Keras 1/2 first layer).
INPUT_SHAPE_KEYS = ("batch_shape", "batch_input_shape")

#: A reference to a tensor: [layer name, node index, tensor index].
Ref = list[Any]


@dataclass
class Call:
    """One call of a layer: the tensors it reads, an explicitly passed mask, constant args."""

    args: list[Ref]
    mask: Ref | None = None
    constants: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"args": self.args, "mask": self.mask, "constants": self.constants}


@dataclass
class Node:
    """One Keras layer, normalised: names and config as Keras 2+/3 spells them."""

    name: str
    #: The class the converters know (Keras 2+ name, cuDNN mapped, "ops." for op nodes).
    class_name: str
    #: The class the file wrote (Convolution1D, CuDNNLSTM, ...), for messages and weight layouts.
    source_class: str
    config: dict[str, Any]
    calls: list[Call] = field(default_factory=list)

    @property
    def inner(self) -> Node | None:
        """A wrapper's wrapped layer (Bidirectional(LSTM) -> the LSTM), normalised."""
        layer = self.config.get("layer")
        if not isinstance(layer, dict) or "class_name" not in layer:
            return None
        return _node(layer, str(self.name))

    @property
    def label(self) -> str:
        """Class as messages show it: "Bidirectional(LSTM)"."""
        inner = self.inner
        return f"{self.class_name}({inner.class_name})" if inner else self.class_name

    @property
    def moduleless(self) -> bool:
        """Graph nodes without a module of their own: the inputs and Keras 3's recorded ops."""
        return self.class_name == INPUT_LAYER or self.class_name.startswith(OP_PREFIX)


@dataclass
class KerasGraph:
    """A Keras model as a functional graph: nodes in config order, model inputs and outputs."""

    nodes: list[Node]
    inputs: list[Ref]
    outputs: list[Ref]
    sequential: bool

    def layer_classes(self) -> list[str]:
        """The classes of the model's layers in order, inputs and op nodes left out."""
        return [node.class_name for node in self.nodes if not node.moduleless]

    def input_length(self) -> int | None:
        """The fixed sequence length of the first input, when the config states one."""
        return input_length([node.config for node in self.nodes])


def input_length(configs: Iterable[dict[str, Any]]) -> int | None:
    """The first fixed sequence length stated by layer configs in model order (an InputLayer's
    batch_shape, a Keras 1/2 first layer's batch_input_shape)."""
    for config in configs:
        for key in INPUT_SHAPE_KEYS:
            shape = config.get(key)
            if isinstance(shape, list) and len(shape) >= 2 and isinstance(shape[1], int):
                return shape[1]
    return None


def normalise_layer(class_name: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Keras 1 class and config key names -> Keras 2+ names; cuDNN layers -> standard ones."""
    class_name = KERAS1_CLASS_NAMES.get(class_name, class_name)
    config = {KERAS1_CONFIG_KEYS.get(k, k): v for k, v in config.items()}
    if KERAS1_UNITS_KEY in config and class_name != "Embedding" and "units" not in config:
        config["units"] = config.pop(KERAS1_UNITS_KEY)
    if class_name in CUDNN_AS:
        config = {**CUDNN_DEFAULTS, **config}
        if class_name == "CuDNNGRU":
            config["reset_after"] = CUDNN_GRU_RESET_AFTER
        class_name = CUDNN_AS[class_name]
    return class_name, config


def _entry_class(entry: dict[str, Any]) -> str:
    cls = str(entry.get("class_name", "?"))
    return f"{OP_PREFIX}{cls}" if str(entry.get("module", "")).startswith("keras.src.ops") else cls


def _node(entry: dict[str, Any], fallback_name: str = "?") -> Node:
    if not isinstance(entry, dict):
        raise ConversionError(f"a layer entry of the model config is {type(entry).__name__}")
    source = _entry_class(entry)
    raw = entry.get("config", {})
    if not isinstance(raw, dict):
        raise ConversionError(f"layer {entry.get('name')!r} has a config that is not a dict")
    cls, config = normalise_layer(source, copy.deepcopy(raw))
    if isinstance(config.get("layer"), dict):  # a wrapper: normalise the wrapped layer too
        inner_cls, inner = normalise_layer(
            str(config["layer"].get("class_name", "?")), config["layer"].get("config", {}) or {}
        )
        config["layer"] = {
            "class_name": inner_cls,
            "source_class": str(config["layer"].get("class_name", "?")),
            "config": inner,
        }
    name = entry.get("name") or config.get("name") or fallback_name
    return Node(str(name), cls, source, json_safe(config))


def _refs(value: Any) -> list[Ref]:
    """Keras' [name, node, tensor] or a list of them -> a list of [name, node, tensor]."""
    if isinstance(value, dict):  # Keras 3 may write {"name": ref}
        value = list(value.values())
    if not isinstance(value, list):
        raise ConversionError("the model config's inputs/outputs are not lists")
    if value and isinstance(value[0], str):
        return [list(value[:3])]
    return [list(v[:3]) for v in value if isinstance(v, list)]


def _collect_tensors(value: Any, out: list[Ref]) -> None:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            out.append(list(value["config"]["keras_history"][:3]))
            return
        for item in value.values():
            _collect_tensors(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_tensors(item, out)


def _calls(entry: dict[str, Any]) -> list[Call]:
    """Every call of a layer in a functional config."""
    calls = []
    name = entry.get("name")
    for node in entry.get("inbound_nodes", []) or []:
        call = Call(args=[])
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            for arg in node.get("args", []):
                found: list[Ref] = []
                _collect_tensors(arg, found)
                call.args += found
                if not found:
                    call.constants.append(json_safe(arg))
            for key, val in (node.get("kwargs") or {}).items():
                found = []
                _collect_tensors(val, found)
                if found and key == "mask" and len(found) == 1:
                    call.mask = found[0]
                elif found:
                    raise ConversionError(
                        f"layer {name!r} is called with tensor argument {key!r}; not supported"
                    )
        elif isinstance(node, list):  # Keras 1/2: [[name, node, tensor, kwargs], ...]
            for ref in node:
                if not isinstance(ref, list) or len(ref) < 3:
                    raise ConversionError(f"layer {name!r} has a malformed inbound node")
                if len(ref) > 3 and isinstance(ref[3], dict):
                    extra = [k for k in ref[3] if k not in ("training", "mask")]
                    if extra:
                        raise ConversionError(
                            f"layer {name!r} is called with {extra}; not supported"
                        )
                call.args.append(list(ref[:3]))
        else:
            raise ConversionError(f"layer {name!r} has a malformed inbound node")
        calls.append(call)
    return calls


def parse_graph(model_config: dict[str, Any]) -> KerasGraph:
    """Any Keras model config -> KerasGraph; ConversionError when it lists no usable layers."""
    if not isinstance(model_config, dict):
        raise ConversionError("the model config is not a JSON object")
    cls = model_config.get("class_name")
    config = model_config.get("config", model_config)
    layers = (
        config
        if isinstance(config, list)
        else config.get("layers")
        if isinstance(config, dict)
        else None
    )
    if not isinstance(layers, list) or not layers:
        raise ConversionError("the model config lists no layers")
    sequential = cls == "Sequential" or isinstance(config, list)
    nodes = [_node(entry) for entry in layers]
    if not sequential:
        for node, entry in zip(nodes, layers, strict=True):
            node.calls = _calls(entry)
        return KerasGraph(
            nodes,
            _refs(config.get("input_layers", [])),
            _refs(config.get("output_layers", [])),
            sequential=False,
        )
    # Sequential: each layer reads the previous one; an input node is made when none is listed.
    if nodes[0].class_name != INPUT_LAYER:
        nodes.insert(0, Node(SEQUENTIAL_INPUT, INPUT_LAYER, INPUT_LAYER, {}))
    for previous, node in itertools.pairwise(nodes):
        node.calls = [Call(args=[[previous.name, 0, 0]])]
    return KerasGraph(nodes, [[nodes[0].name, 0, 0]], [[nodes[-1].name, 0, 0]], sequential=True)


def json_safe(value: Any) -> Any:
    """Configs keep only JSON values (Keras 3 configs can hold dtype policies as dicts: fine)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
