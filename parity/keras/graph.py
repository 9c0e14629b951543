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
- A model used as a layer (a Sequential block, a Keras application base) is inlined: its layers
  join the graph named "outer/inner", one call of theirs per call of the nested model, and
  reads of the nested model's outputs become reads of its inner layers. Each inlined node keeps
  where Keras stored its weights (``Node.scope``, ``Node.storage``).

Nothing here knows about torch or weights.
"""

from __future__ import annotations

import copy
import itertools
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from parity.conventions import (
    MAX_GRAPH_CALLS,
    MAX_GRAPH_DEPTH,
    MAX_GRAPH_LAYERS,
    MAX_INPUT_LENGTH,
    MAX_JSON_DEPTH,
    TRAINABLE_KEY,
)
from parity.errors import ConversionError
from parity.keras.read import snake_case, subclassed_model

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
#: Keras 1's Merge layer, by mode -> the Keras 2+ merge layer computing the same (values and
#: masks: Keras 1 ANDs the masks of elementwise merges, as Keras 2 does). Modes not listed
#: ("cos", a Python function) keep the class "Merge" and are refused by name.
KERAS1_MERGE = "Merge"
KERAS1_MERGE_MODES: dict[str, str] = {
    "concat": "Concatenate",
    "sum": "Add",
    "mul": "Multiply",
    "ave": "Average",
    "max": "Maximum",
    "dot": "Dot",
}
#: Keras 1 Merge config keys -> the Keras 2+ layer's.
KERAS1_MERGE_KEYS: dict[str, str] = {"concat_axis": "axis", "dot_axes": "axes"}
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
#: Config key marking an LSTM read from a CuDNNLSTM: it has two trained biases (input and
#: recurrent, cuDNN's), where Keras' LSTM has one; both train in Keras, so both stay weights.
CUDNN_LSTM_BIASES_KEY = "_cudnn_biases"
INPUT_LAYER = "InputLayer"
#: Prefix of Keras 3 op nodes' classes (see module docstring).
OP_PREFIX = "ops."
#: The input node given to a Sequential model whose config names no InputLayer.
SEQUENTIAL_INPUT = "__input__"
#: Config keys giving an input's fixed shape (Keras 3 InputLayer; Keras 1/2 first layer).
INPUT_SHAPE_KEYS = ("batch_shape", "batch_input_shape")

#: Model classes whose config lists layers; used as a layer, such a model is inlined.
NESTED_MODEL_CLASSES = ("Sequential", "Functional", "Model")
#: Class of an inlined nested model's input: the tensor a call of the model was given, with the
#: mask that came with it or the one the call passed explicitly (an op: no module, no weights).
NESTED_INPUT = f"{OP_PREFIX}nested_input"
#: Separator of a nested model's name and its layer's name in inlined node names ("block/d1");
#: Keras forbids it in layer names.
SCOPE_SEPARATOR = "/"
#: Where Keras 3 files store a container's layers ("layers/<auto name>/...").
KERAS3_LAYERS_GROUP = "layers"

#: A reference to a tensor: [layer name, node index, tensor index].
Ref = list[Any]


#: Tensors a call may pass by keyword, appended to the positional tensors in this order
#: (keras.layers.MultiHeadAttention(query, value, key)), so a converter reads them by position.
TENSOR_KWARGS = ("query", "value", "key")
#: A recurrent layer's initial states, passed by keyword in Keras 3 (a list of tensors); they
#: follow the input among the call's tensors, where Keras 1/2 configs list them.
INITIAL_STATE = "initial_state"
#: Non-tensor keyword arguments recorded for the converters (Call.options): they change what
#: the attention layers compute. Keras 1/2 calls with any other keyword are refused.
CALL_OPTIONS = ("use_causal_mask", "return_attention_scores")
#: Call option recording the structure of the input when Keras 3 shows a layer called on a
#: list of one tensor (``LISTED``): a Lambda's function then receives the list, not the tensor.
#: (Keras 1/2 configs do not record it; tf.keras itself unpacks such a list when it loads.)
INPUT_STRUCTURE = "input_structure"
LISTED = "list of one"


@dataclass
class Call:
    """One call of a layer: the tensors it reads (positional, then TENSOR_KWARGS in order), an
    explicitly passed mask, constant args, and the CALL_OPTIONS it was given."""

    args: list[Ref]
    mask: Ref | None = None
    constants: list[Any] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "args": self.args,
            "mask": self.mask,
            "constants": self.constants,
            "options": self.options,
        }


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
    #: The nested models holding an inlined node, outermost first (() at the top level); the
    #: file stores its weights inside the outermost one's entry.
    scope: tuple[str, ...] = ()
    #: Keras 3 auto names from the top container down to this layer: ("sequential",
    #: "functional", "dense_1") = weights at "layers/functional/layers/dense_1/..." inside the
    #: top-level "sequential" group.
    storage: tuple[str, ...] = ()

    @property
    def local_name(self) -> str:
        """The layer's own name, without the nested models' names."""
        return self.name.rsplit(SCOPE_SEPARATOR, 1)[-1] if self.scope else self.name

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
                length = shape[1]
                if isinstance(length, bool) or not 0 < length <= MAX_INPUT_LENGTH:
                    raise ConversionError(
                        f"the config fixes the input length to {length}; expected 1 to "
                        f"{MAX_INPUT_LENGTH:,}"
                    )
                return length
    return None


def normalise_layer(class_name: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Keras 1 class and config key names -> Keras 2+ names; cuDNN layers -> standard ones."""
    class_name = KERAS1_CLASS_NAMES.get(class_name, class_name)
    if class_name == KERAS1_MERGE:
        return _keras1_merge(config)
    config = {KERAS1_CONFIG_KEYS.get(k, k): v for k, v in config.items()}
    if KERAS1_UNITS_KEY in config and class_name != "Embedding" and "units" not in config:
        config["units"] = config.pop(KERAS1_UNITS_KEY)
    if class_name in CUDNN_AS:
        config = {**CUDNN_DEFAULTS, **config}
        if class_name == "CuDNNGRU":
            config["reset_after"] = CUDNN_GRU_RESET_AFTER
        if class_name == "CuDNNLSTM":
            config[CUDNN_LSTM_BIASES_KEY] = True
        class_name = CUDNN_AS[class_name]
    return class_name, config


def _keras1_merge(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A Keras 1 Merge as the Keras 2+ layer of its mode. A Sequential Merge of branch models
    (config "layers") or a mode given as Python code stays "Merge": refused by name."""
    mode = config.get("mode", "sum")
    if (
        not isinstance(mode, str)
        or mode not in KERAS1_MERGE_MODES
        or config.get("mode_type", "raw") != "raw"
        or config.get("layers")
    ):
        return KERAS1_MERGE, config
    renamed = {KERAS1_MERGE_KEYS.get(k, k): v for k, v in config.items()}
    keep = ("name", "trainable", *KERAS1_MERGE_KEYS.values())
    return KERAS1_MERGE_MODES[mode], {k: v for k, v in renamed.items() if k in keep}


def _entry_class(entry: dict[str, Any]) -> str:
    cls = entry["class_name"]
    return f"{OP_PREFIX}{cls}" if _is_op(entry) else cls


def _is_op(entry: dict[str, Any]) -> bool:
    """A Keras 3 op node: its module says so (.keras); Keras 3's legacy .h5 writer drops the
    module, and there an op is told by a Keras 3 call (a dict) and a config without the
    "trainable" key every Keras 3 layer config has (InputLayer's excepted)."""
    if "module" in entry:
        return str(entry["module"]).startswith("keras.src.ops")
    calls, config = entry.get("inbound_nodes"), entry.get("config")
    return (
        entry["class_name"] != INPUT_LAYER
        and isinstance(calls, list)
        and bool(calls)
        and all(isinstance(call, dict) for call in calls)
        and isinstance(config, dict)
        and "trainable" not in config
    )


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
    if isinstance(entry, dict) and entry.get("class_name") in NESTED_MODEL_CLASSES:
        return _model_node(entry, where, fallback_name)
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


def _model_node(entry: dict[str, Any], where: str, fallback_name: str) -> Node:
    """A model used as a layer: its config (a Keras 1 Sequential's is a list) is kept whole, to
    be parsed as a graph of its own and inlined."""
    config = entry.get("config")
    if not isinstance(config, dict | list):
        raise ConversionError(f"{where} ({entry['class_name']}) has no model config")
    name = entry.get("name")
    if name is None and isinstance(config, dict):
        name = config.get("name")
    if not isinstance(name, str):
        name = fallback_name
    cls = entry["class_name"]
    return Node(name, cls, cls, {"model": json_safe(config)})


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
            if len(args) == 1 and isinstance(args[0], list):
                if any(isinstance(item, list) for item in args[0]):
                    raise ConversionError(
                        f"{where} is called on nested lists of tensors; not supported"
                    )
                if len(args[0]) == 1:
                    call.options[INPUT_STRUCTURE] = LISTED
            for arg in args:
                found: list[Ref] = []
                _collect_tensors(arg, found, where)
                call.args += found
                if not found:
                    call.constants.append(json_safe(arg))
            named: dict[str, Ref] = {}
            states: list[Ref] = []
            for key, val in kwargs.items():
                found = []
                _collect_tensors(val, found, where)
                single = len(found) == 1 and isinstance(val, dict)  # a tensor, not a list
                if found and key == INITIAL_STATE:
                    states = found  # after the input, as Keras 2 lists them
                elif not found and key in CALL_OPTIONS:
                    call.options[key] = json_safe(val)
                elif single and key == "mask":
                    call.mask = found[0]
                elif single and key in TENSOR_KWARGS:
                    named[key] = found[0]
                elif found:
                    raise ConversionError(
                        f"{where} is called with tensor argument {key!r}; not supported"
                    )
            call.args += [named[key] for key in TENSOR_KWARGS if key in named] + states
        elif isinstance(node, list):  # Keras 1/2: [[name, node, tensor, kwargs], ...]
            named = {}
            for ref in node:
                if isinstance(ref, list) and len(ref) > 3 and isinstance(ref[3], dict):
                    extra = []
                    for key, val in ref[3].items():
                        if key in TENSOR_KWARGS:  # tf.keras writes them as [name, node, tensor]
                            named[key] = _ref(val, where)
                        elif key in CALL_OPTIONS and not isinstance(val, list | dict):
                            call.options[key] = json_safe(val)
                        elif key not in ("training", "mask") and val is not None:
                            extra.append(key)  # None: tf.keras' record of an unused argument
                    if extra:
                        raise ConversionError(f"{where} is called with {extra}; not supported")
                call.args.append(_ref(ref, where))
            call.args += [named[key] for key in TENSOR_KWARGS if key in named]
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
        raise ConversionError(subclassed_model(model_config) or "the model config lists no layers")
    if len(layers) > MAX_GRAPH_LAYERS:
        raise ConversionError(
            f"the model config lists {len(layers):,} layers, over {MAX_GRAPH_LAYERS:,}"
        )
    sequential = cls == "Sequential" or isinstance(config, list)
    nodes = [_node(entry) for entry in layers]
    stored = [node for node in nodes if not node.class_name.startswith(OP_PREFIX)]
    for node, auto in zip(stored, keras3_auto_names([n.source_class for n in stored]), strict=True):
        node.storage = (auto,)
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
    if any(node.class_name in NESTED_MODEL_CLASSES for node in graph.nodes):
        legacy_refs = not sequential and any(
            isinstance(call, list)
            for entry in layers
            for call in (entry.get("inbound_nodes") or [])
        )
        graph = inline_nested(graph, legacy_refs)
    check_graph(graph)
    return graph


def keras3_auto_names(classes: Sequence[str]) -> list[str]:
    """The names Keras 3 gives a container's layers in its weight files: the snake_case class,
    then _1, _2, ... for later layers of the same class."""
    counts: dict[str, int] = {}
    names = []
    for cls in classes:
        key = snake_case(cls)
        names.append(key if key not in counts else f"{key}_{counts[key]}")
        counts[key] = counts.get(key, 0) + 1
    return names


def inline_nested(graph: KerasGraph, legacy_refs: bool = False) -> KerasGraph:
    """The graph with every model-as-a-layer replaced by its own layers (see module docstring).

    Call j of inner layer L in call i of nested model N becomes call i * len(L.calls) + j of
    node "N/L"; the nested model's inputs are the tensors that call passed, its outputs what its
    inner graph outputs. Nested models inside nested models were inlined when their own config
    was parsed. ``legacy_refs``: the config is Keras 1/2's, whose reads of a nested model count
    its construction as call 0 (``first_call_index``). ConversionError when a call passes the
    wrong number of tensors or a read points at a call the nested model never made.
    """
    inner: dict[str, KerasGraph] = {}
    for node in graph.nodes:
        if node.class_name in NESTED_MODEL_CLASSES:
            sub = parse_graph({"class_name": node.class_name, "config": node.config["model"]})
            for call in node.calls:
                if len(call.args) != len(sub.inputs):
                    raise ConversionError(
                        f"nested model {node.name!r} ({node.class_name}) is called with "
                        f"{len(call.args)} tensors; it takes {len(sub.inputs)}"
                    )
            inner[node.name] = sub
    # Bounded before anything is built: a nested model called n times multiplies its calls by n.
    total = sum(len(node.calls) for node in graph.nodes if node.name not in inner) + sum(
        len(by_call.calls) * (len(sub.inputs) + sum(len(n.calls) for n in sub.nodes))
        for by_call in graph.nodes
        if (sub := inner.get(by_call.name)) is not None
    )
    layers = len(graph.nodes) + sum(len(sub.nodes) for sub in inner.values())
    if total > MAX_GRAPH_CALLS or layers > MAX_GRAPH_LAYERS:
        raise ConversionError(
            f"inlining the nested models gives {layers:,} layers and {total:,} layer calls, over "
            f"{MAX_GRAPH_LAYERS:,} / {MAX_GRAPH_CALLS:,}"
        )
    calls_of = {name: {n.name: len(n.calls) for n in sub.nodes} for name, sub in inner.items()}
    by_name = {node.name: node for node in graph.nodes}
    reads = [
        ref
        for node in graph.nodes
        for call in node.calls
        for ref in call.args + ([call.mask] if call.mask is not None else [])
    ] + list(graph.outputs)
    first = {
        name: first_call_index(by_name[name], [r[1] for r in reads if r[0] == name], legacy_refs)
        for name in inner
    }

    def outer_ref(ref: Ref, where: str) -> Ref:
        """A ref of the outer graph, with reads of nested models' outputs resolved."""
        name, index, tensor = ref
        sub = inner.get(name)
        if sub is None:
            return list(ref)
        index -= first[name]
        if not 0 <= index < len(by_name[name].calls) or tensor >= len(sub.outputs):
            raise ConversionError(
                f"{where} reads output {tensor} of call {index} of nested model {name!r}, "
                f"which has {len(by_name[name].calls)} calls and {len(sub.outputs)} outputs"
            )
        return inner_ref(name, index, sub.outputs[tensor])

    def inner_ref(name: str, index: int, ref: Ref) -> Ref:
        """A ref inside nested model ``name``'s graph, as read in that model's call ``index``
        (its inputs are NESTED_INPUT nodes, one call per call of the model)."""
        inputs = {input_ref[0] for input_ref in inner[name].inputs}
        count = 1 if ref[0] in inputs else calls_of[name][ref[0]]
        node = 0 if ref[0] in inputs else ref[1]
        return [f"{name}{SCOPE_SEPARATOR}{ref[0]}", index * count + node, ref[2]]

    nodes: list[Node] = []
    for node in graph.nodes:
        sub = inner.get(node.name)
        where = f"layer {node.name!r}"
        if sub is None:
            node.calls = [_mapped_call(call, outer_ref, where) for call in node.calls]
            nodes.append(node)
            continue
        for position, (input_name, _, _) in enumerate(sub.inputs):
            calls = [
                Call(
                    args=[outer_ref(call.args[position], where)],
                    mask=outer_ref(call.mask, where)
                    if call.mask is not None and position == 0
                    else None,
                )
                for call in node.calls
            ]
            name = f"{node.name}{SCOPE_SEPARATOR}{input_name}"
            nodes.append(Node(name, NESTED_INPUT, INPUT_LAYER, {}, calls, scope=(node.name,)))
        input_names = {ref[0] for ref in sub.inputs}
        frozen = node.config.get(TRAINABLE_KEY, True) is False
        for member in sub.nodes:
            if member.name in input_names:
                continue
            config = {**member.config, TRAINABLE_KEY: False} if frozen else member.config
            calls = [
                _mapped_call(call, lambda ref, _, i=i, n=node.name: inner_ref(n, i, ref), where)
                for i in range(len(node.calls))
                for call in member.calls
            ]
            nodes.append(
                Node(
                    f"{node.name}{SCOPE_SEPARATOR}{member.name}",
                    member.class_name,
                    member.source_class,
                    config,
                    calls,
                    scope=(node.name, *member.scope),
                    storage=node.storage + member.storage,
                )
            )
    inputs = [outer_ref(ref, "the model inputs") for ref in graph.inputs]
    outputs = [outer_ref(ref, "the model outputs") for ref in graph.outputs]
    return KerasGraph(nodes, inputs, outputs, graph.sequential)


def first_call_index(node: Node, read: Sequence[int], legacy_refs: bool) -> int:
    """The node index by which a config reads a nested model's first call.

    Keras 3 counts calls from 0. Keras 1/2 count the nested model's own construction as node 0,
    so their reads start at 1: always for a functional model and for a Sequential whose config
    lists its InputLayer (tf.keras), and in standalone Keras 1/2 for a Sequential too. A
    Sequential built without an input shape in tf.keras has no construction node: its reads
    start at 0. Where the config does not say, the reads decide; ConversionError when they fit
    both or neither, rather than reading the wrong call.
    """
    if not legacy_refs or not read:  # nothing reads it: the numbering does not matter
        return 0
    layers = node.config["model"]
    if isinstance(layers, dict):
        layers = layers.get("layers") if node.class_name == "Sequential" else None
    if layers is None or (
        isinstance(layers, list)
        and layers
        and isinstance(layers[0], dict)
        and layers[0].get("class_name") == INPUT_LAYER
    ):
        return 1
    fits = [start for start in (0, 1) if all(start <= i < start + len(node.calls) for i in read)]
    if len(fits) != 1:
        raise ConversionError(
            f"nested model {node.name!r} ({node.class_name}) is read as calls {sorted(set(read))} "
            f"of its {len(node.calls)}; which call each read means cannot be told"
        )
    return fits[0]


def _mapped_call(call: Call, resolve: Any, where: str) -> Call:
    return Call(
        args=[resolve(ref, where) for ref in call.args],
        mask=None if call.mask is None else resolve(call.mask, where),
        constants=list(call.constants),
    )


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
