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
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from parity.conventions import MAX_GRAPH_CALLS, MAX_GRAPH_DEPTH, MAX_GRAPH_LAYERS, MAX_JSON_DEPTH
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
    "subsample": "strides",
}
#: Keras 1 "output_dim" is "units" everywhere except Embedding, where it kept its name.
KERAS1_UNITS_KEY = "output_dim"
#: Keras 1 class names -> Keras 2+ names.
KERAS1_CLASS_NAMES: dict[str, str] = {"Convolution1D": "Conv1D", "Convolution2D": "Conv2D"}
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
    cls = entry["class_name"]
    return f"{OP_PREFIX}{cls}" if str(entry.get("module", "")).startswith("keras.src.ops") else cls


def _show(value: Any) -> str:
    """A bounded repr of a value from the file, for messages."""
    return reprlib.repr(value)


def _checked_entry(entry: Any, where: str) -> tuple[str, dict[str, Any]]:
    """(class name, config) of a layer entry, or ConversionError naming ``where``."""
    if not isinstance(entry, dict):
        raise ConversionError(f"{where} is a {type(entry).__name__}, not a JSON object")
    cls = entry.get("class_name")
    if not isinstance(cls, str):
        raise ConversionError(f"{where} has class_name {_show(cls)}, not a string")
    raw = entry.get("config", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConversionError(f"{where} ({cls}) has a config that is {type(raw).__name__}")
    return cls, raw


def _node(entry: Any, fallback_name: str = "?") -> Node:
    where = "a layer entry of the model config"
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        where = f"layer {entry['name']!r}"
    _checked_entry(entry, where)
    source = _entry_class(entry)
    name = entry.get("name")
    if name is not None and not isinstance(name, str):
        raise ConversionError(f"{where} has name {_show(name)}, not a string")
    cls, config = normalise_layer(source, copy.deepcopy(entry.get("config") or {}))
    name = name or config.get("name") or fallback_name
    if not isinstance(name, str):
        raise ConversionError(f"{where} has name {_show(name)}, not a string")
    if isinstance(config.get("layer"), dict):  # a wrapper: normalise the wrapped layer too
        inner_source, inner_raw = _checked_entry(config["layer"], f"layer {name!r}'s inner layer")
        inner_cls, inner = normalise_layer(inner_source, inner_raw)
        config["layer"] = {"class_name": inner_cls, "source_class": inner_source, "config": inner}
    return Node(name, cls, source, json_safe(config))


def _ref(value: Any, where: str) -> Ref:
    """A tensor reference [layer name, node index, tensor index (, kwargs)] -> [name, node,
    tensor], or ConversionError naming ``where``."""
    if (
        isinstance(value, list)
        and len(value) >= 3
        and isinstance(value[0], str)
        and all(type(v) is int and v >= 0 for v in value[1:3])
    ):
        return [value[0], value[1], value[2]]
    raise ConversionError(f"{where} has a malformed tensor reference {_show(value)}")


def _refs(value: Any, where: str) -> list[Ref]:
    """Keras' [name, node, tensor] or a list of them -> a list of [name, node, tensor]."""
    if isinstance(value, dict):  # Keras 3 may write {"name": ref}
        value = list(value.values())
    if not isinstance(value, list):
        raise ConversionError(f"the model config's {where} are not lists")
    if value and isinstance(value[0], str):
        return [_ref(value, f"the model config's {where}")]
    return [_ref(v, f"the model config's {where}") for v in value]


def _collect_tensors(value: Any, out: list[Ref], where: str) -> None:
    """Every Keras 3 tensor reference inside a call argument, in order (the value's depth is
    bounded by parse_graph's check)."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            config = value.get("config")
            history = config.get("keras_history") if isinstance(config, dict) else None
            out.append(_ref(history, where))
            return
        for item in value.values():
            _collect_tensors(item, out, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_tensors(item, out, where)


def _calls(entry: dict[str, Any], name: str) -> list[Call]:
    """Every call of a layer in a functional config."""
    where = f"layer {name!r}"
    inbound = entry.get("inbound_nodes") or []
    if not isinstance(inbound, list):
        raise ConversionError(f"{where} has inbound_nodes that are not a list")
    calls = []
    for node in inbound:
        call = Call(args=[])
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            args, kwargs = node.get("args") or [], node.get("kwargs") or {}
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ConversionError(f"{where} has a malformed inbound node")
            for arg in args:
                found: list[Ref] = []
                _collect_tensors(arg, found, where)
                call.args += found
                if not found:
                    call.constants.append(json_safe(arg))
            for key, val in kwargs.items():
                found = []
                _collect_tensors(val, found, where)
                if found and key == "mask" and len(found) == 1:
                    call.mask = found[0]
                elif found:
                    raise ConversionError(
                        f"{where} is called with tensor argument {key!r}; not supported"
                    )
        elif isinstance(node, list):  # Keras 1/2: [[name, node, tensor, kwargs], ...]
            for ref in node:
                if isinstance(ref, list) and len(ref) > 3 and isinstance(ref[3], dict):
                    extra = [k for k in ref[3] if k not in ("training", "mask")]
                    if extra:
                        raise ConversionError(f"{where} is called with {extra}; not supported")
                call.args.append(_ref(ref, where))
        else:
            raise ConversionError(f"{where} has a malformed inbound node")
        calls.append(call)
    return calls


def check_depth(value: Any, limit: int, what: str) -> None:
    """ConversionError when ``value`` nests lists/dicts deeper than ``limit``; walked without
    recursion, so that copying and converting it afterwards cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= limit:
            raise ConversionError(f"{what} nests deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)


Key = tuple[str, int]


def evaluation_order(
    calls: Mapping[str, Sequence[Sequence[Any]]],
    inputs: Sequence[Any],
    outputs: Sequence[Any],
    *,
    whole: bool = False,
) -> list[Key]:
    """The (layer, call index) pairs the outputs need, each after those it reads.

    ``calls`` maps each layer to its calls, each call the refs it reads (args, then the mask). The
    order is the post-order of a depth-first walk from the outputs, reading refs in order: the
    order a recursive evaluation would compute them in. ``whole`` also walks calls the outputs
    do not need (they are checked, not returned). ConversionError for a malformed or dangling
    ref, a cycle, too many calls or a chain deeper than MAX_GRAPH_DEPTH; no recursion.
    """
    total = sum(len(c) for c in calls.values())
    if total > MAX_GRAPH_CALLS:
        raise ConversionError(f"the graph has {total:,} layer calls, over {MAX_GRAPH_CALLS:,}")
    depth: dict[Key, int] = {}
    for ref in inputs:
        name, node, _ = _ref(ref, "the model inputs")
        if name not in calls:
            raise ConversionError(f"the model input {name!r} is not a layer of the model")
        depth[(name, node)] = 0

    def key_of(ref: Any, where: str) -> Key:
        name, node, _ = _ref(ref, where)
        if (name, node) not in depth and not (name in calls and node < len(calls[name])):
            known = "no such layer" if name not in calls else f"it has {len(calls[name])} calls"
            raise ConversionError(f"{where} reads {name!r} call {node} ({known})")
        return name, node

    def reads(key: Key) -> list[Key]:
        name, node = key
        return [key_of(ref, f"layer {name!r}") for ref in calls[name][node]]

    order: list[Key] = []
    roots = [key_of(ref, "the model outputs") for ref in outputs]
    needed = 0
    if whole:
        roots += [(name, node) for name, layer in calls.items() for node in range(len(layer))]
    for index, root in enumerate(roots):
        if index == len(outputs):
            needed = len(order)
        if root in depth:
            continue
        stack = [(root, iter(reads(root)))]
        walking = {root}
        while stack:
            key, pending = stack[-1]
            for child in pending:
                if child in walking:
                    raise ConversionError(f"the graph has a cycle through layer {child[0]!r}")
                if child not in depth:
                    stack.append((child, iter(reads(child))))
                    walking.add(child)
                    break
            else:
                stack.pop()
                walking.discard(key)
                depth[key] = 1 + max((depth[c] for c in reads(key)), default=0)
                if depth[key] > MAX_GRAPH_DEPTH:
                    raise ConversionError(
                        f"the graph is deeper than {MAX_GRAPH_DEPTH:,} layer calls"
                    )
                order.append(key)
    return order[:needed] if whole and len(roots) > len(outputs) else order


def parse_graph(model_config: dict[str, Any]) -> KerasGraph:
    """Any Keras model config -> KerasGraph; ConversionError when it lists no usable layers, a
    value has the wrong type, or the graph is cyclic, dangling or beyond the size limits."""
    if not isinstance(model_config, dict):
        raise ConversionError("the model config is not a JSON object")
    check_depth(model_config, MAX_JSON_DEPTH, "the model config")
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
    if len(layers) > MAX_GRAPH_LAYERS:
        raise ConversionError(
            f"the model config lists {len(layers):,} layers, over {MAX_GRAPH_LAYERS:,}"
        )
    sequential = cls == "Sequential" or isinstance(config, list)
    nodes = [_node(entry) for entry in layers]
    if not sequential:
        for node, entry in zip(nodes, layers, strict=True):
            node.calls = _calls(entry, node.name)
        graph = KerasGraph(
            nodes,
            _refs(config.get("input_layers", []), "inputs"),
            _refs(config.get("output_layers", []), "outputs"),
            sequential=False,
        )
    else:
        # Sequential: each layer reads the previous one; an input node is made when none is listed.
        if nodes[0].class_name != INPUT_LAYER:
            nodes.insert(0, Node(SEQUENTIAL_INPUT, INPUT_LAYER, INPUT_LAYER, {}))
        for previous, node in itertools.pairwise(nodes):
            node.calls = [Call(args=[[previous.name, 0, 0]])]
        graph = KerasGraph(
            nodes, [[nodes[0].name, 0, 0]], [[nodes[-1].name, 0, 0]], sequential=True
        )
    check_graph(graph)
    return graph


def check_graph(graph: KerasGraph) -> None:
    """ConversionError for duplicate layer names, refs to layers or calls that do not exist,
    cycles and over-deep graphs (the whole graph, not only what the outputs need)."""
    calls: dict[str, list[list[Ref]]] = {}
    for node in graph.nodes:
        if node.name in calls:
            raise ConversionError(f"the model config lists layer {node.name!r} twice")
        calls[node.name] = [c.args + ([c.mask] if c.mask is not None else []) for c in node.calls]
    evaluation_order(calls, graph.inputs, graph.outputs, whole=True)


def json_safe(value: Any) -> Any:
    """Configs keep only JSON values (Keras 3 configs can hold dtype policies as dicts: fine)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
