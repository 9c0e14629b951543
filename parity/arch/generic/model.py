"""Any Keras model made of supported layers, rebuilt from the file's own model config.

No port is written by hand: each Keras layer class has a converter (parity.ports)
that says which weights the class saves, builds the parity/torch module with Keras semantics,
emits that layer's mapping rows and says what happens to the mask. ``GenericModel`` runs the
Keras graph (Sequential or Functional, masks included) over modules named after the Keras
layers, so ``model.dense_1.weight`` is Keras' ``dense_1/kernel`` transposed.

Parity notes:
- Masks follow Keras: Embedding(mask_zero=True) makes one (id != 0); layers that support masking
  in Keras pass it on, layers that do not drop it, as Keras 3 does; each converter's call rule
  says which.
- "hard_sigmoid" in a config means clip(0.2x + 0.5) for a Keras 1/2 file and relu6(x + 3) / 6
  for a Keras 3 file (or what ``hard_sigmoid=`` forces); the choice is made once, at conversion,
  and saved with the model.
- Sizes come from the weights; where the config also states one (units, filters, input_dim), the
  two must agree, so an absurd config fails before anything is allocated.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor, nn

from parity.arch.base import Architecture, Plan, Point
from parity.arch.gates import activation_name, resolve_gate
from parity.conventions import (
    FROZEN_BATCH_NORM_INFERENCE,
    KERAS_MAJOR_KEY,
    MAX_GRAPH_LAYERS,
    TRAINABLE_KEY,
    frozen_batch_norm_rule,
)
from parity.convert.mapping import Row, weight_problem
from parity.convert.stored import node_weights
from parity.convert.transforms import normalise_layer_weights
from parity.errors import ConversionError
from parity.init import keras_init_
from parity.keras.graph import (
    INPUT_LAYER,
    OP_PREFIX,
    KerasGraph,
    Node,
    evaluation_order,
    input_length,
)
from parity.keras.read import KerasFile
from parity.keras.saved_model_tables import lookup_table
from parity.ports import CONVERTERS, KERAS_ACTIVATIONS, BatchNormalization
from parity.ports.lambda_layer import CONVERTERS as LAMBDA_CONVERTERS
from parity.ports.lambda_layer import lambda_translation, model_code_problem
from parity.ports.norm import FROZEN_INFERENCE
from parity.ports.recurrent.port import RNN_CLASSES
from parity.ports.registry import MASK_PASSED_KEY, LayerConverter, Masks
from parity.ports.text_preprocessing import ASSET_CLASSES, vocabulary_from_assets
from parity.ports.wrappers import TIME_DISTRIBUTED, inner_class

#: Layers a classifier head may be followed by on its way to the model output.
HEAD_PASS_THROUGH = ("Dropout", "SpatialDropout1D", "Activation")
#: DeepMoji's convention for a new head: 2 classes = one sigmoid unit, more = softmax.
BINARY_CLASSES = 2


@dataclass
class GenericConfig:
    """A Keras graph as parity rebuilds it: layers (class, config, inbound calls, weight shapes,
    resolved activations), model inputs and outputs. JSON-safe, saved with the weights."""

    layers: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[list[Any]] = field(default_factory=list)
    outputs: list[list[Any]] = field(default_factory=list)
    #: How layers saved with trainable=False run BatchNormalization during training, for the
    #: Keras that wrote the file (conventions.frozen_batch_norm_rule).
    frozen_batch_norm: str = FROZEN_BATCH_NORM_INFERENCE

    def __repr__(self) -> str:
        classes = [layer["class_name"] for layer in self.layers]
        return f"GenericConfig({len(classes)} Keras layers: {', '.join(classes)})"


def module_name(keras_name: str) -> str:
    """A Keras layer name as a torch submodule name (dots are path separators in torch)."""
    return keras_name.replace(".", "_").replace("/", "_")


def module_paths(config: GenericConfig) -> dict[str, str]:
    """Keras layer name -> torch submodule path; names nn.Module already uses get a "_"."""
    taken = set(dir(nn.Module))
    paths: dict[str, str] = {}
    for layer in config.layers:
        path = module_name(layer["name"])
        while path in taken:
            path += "_"
        taken.add(path)
        paths[layer["name"]] = path
    return paths


def _moduleless(cls: str) -> bool:
    return cls == INPUT_LAYER or cls.startswith(OP_PREFIX)


def mapping_rows(config: GenericConfig) -> list[Row]:
    """The mapping table: (Keras weight, torch parameter, transform) for every weight."""
    paths = module_paths(config)
    rows: list[Row] = []
    for layer in config.layers:
        converter = CONVERTERS[layer["config"]["_class"]]
        rows += converter.rows(layer["name"], paths[layer["name"]], layer["config"])
    return rows


class GenericModel(nn.Module):
    """A Keras model (Sequential or Functional) run in torch; submodules are the Keras layers.

    forward(*inputs) takes the Keras model's inputs in order (int ids for an Embedding input) and
    returns its output, or a tuple for several outputs.
    """

    def __init__(self, config: GenericConfig) -> None:
        super().__init__()
        check_config(config)
        self.config = config
        self._layers = {layer["name"]: layer for layer in config.layers}
        self._paths = module_paths(config)
        # Computed once: forward walks this list instead of recursing, so neither a deep graph
        # nor a cyclic one (refused here) can exhaust the stack.
        self._order = evaluation_order(
            {layer["name"]: _call_refs(layer) for layer in config.layers},
            config.inputs,
            config.outputs,
        )
        for layer in config.layers:
            cls = layer["config"]["_class"]
            if _moduleless(cls):
                continue
            shapes = {k: tuple(v) for k, v in layer["shapes"].items()}
            try:
                module = CONVERTERS[cls].build(layer["config"], shapes, layer["activations"])
            except (ConversionError, ValueError, KeyError, TypeError) as exc:
                raise ConversionError(
                    f"layer {layer['name']!r} ({layer['class_name']}): {exc}"
                ) from exc
            self.add_module(self._paths[layer["name"]], module)
            if saved_frozen(layer["config"]):
                module.requires_grad_(False)  # Keras' trainable=False: no optimizer moves it

    @property
    def mapping(self) -> list[Row]:
        return mapping_rows(self.config)

    def train(self, mode: bool = True) -> GenericModel:
        """As nn.Module.train, then what Keras' fit does to a layer saved with trainable=False
        while it stays frozen (none of its parameters made trainable since, as fine-tuning
        does): its BatchNormalization runs in inference mode (Keras 3, tf.keras), or for
        standalone Keras 1/2 files on batch statistics, the moving ones kept (GenericConfig)."""
        super().train(mode)
        inference = self.config.frozen_batch_norm == FROZEN_BATCH_NORM_INFERENCE
        for layer in self.config.layers:
            module = getattr(self, self._paths[layer["name"]], None)
            if module is None or not saved_frozen(layer["config"]):
                continue
            frozen = not any(p.requires_grad for p in module.parameters())
            for sub in module.modules():
                if isinstance(sub, BatchNormalization):
                    sub.update_statistics = inference or not frozen
                if mode and inference and frozen and isinstance(sub, FROZEN_INFERENCE):
                    sub.eval()
        return self

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if len(inputs) != len(self.config.inputs):
            raise ValueError(f"expected {len(self.config.inputs)} inputs, got {len(inputs)}")
        cache: dict[tuple[str, int], tuple[list[Tensor], Masks]] = {}
        for (name, node, _), x in zip(self.config.inputs, inputs, strict=True):
            cache[(name, node)] = ([x], [None])

        def value(ref: Sequence[Any]) -> tuple[Tensor, Tensor | None]:
            outs, masks = cache[(ref[0], ref[1])]
            return outs[ref[2]], masks[ref[2]]

        for name, node in self._order:
            layer = self._layers[name]
            call = layer["inbound"][node]
            args = [value(r) for r in call["args"]]
            masks = [a[1] for a in args]
            if call["mask"] is not None:  # Keras 3 passes some masks explicitly
                masks[0] = value(call["mask"])[0]
            converter = CONVERTERS[layer["config"]["_class"]]
            module = getattr(self, self._paths[name], None)
            config = {
                **layer["config"],
                "_constants": call["constants"],
                "_options": call.get("options", {}),  # graph.CALL_OPTIONS (attention layers)
                MASK_PASSED_KEY: call["mask"] is not None,
            }
            cache[(name, node)] = converter.call(module, config, [a[0] for a in args], masks)
        results = tuple(value(ref)[0] for ref in self.config.outputs)
        return results[0] if len(results) == 1 else results


def saved_frozen(config: dict[str, Any]) -> bool:
    """Whether a layer's saved config says trainable=False (a wrapper's inner layer too)."""
    if config.get(TRAINABLE_KEY, True) is False:
        return True
    inner = config.get("layer")
    inner_config = inner.get("config") if isinstance(inner, dict) else None
    return isinstance(inner_config, dict) and inner_config.get(TRAINABLE_KEY, True) is False


def _call_refs(layer: dict[str, Any]) -> list[list[Any]]:
    """The refs each call of a layer reads, in the order forward evaluates them."""
    return [c["args"] + ([c["mask"]] if c["mask"] is not None else []) for c in layer["inbound"]]


def _is_list_of(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)


def _layer_problem(layer: Any) -> str | None:
    """What is wrong with one saved layer entry's types, or None."""
    if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
        return "a layer entry is not an object with a string name"
    config = layer.get("config")
    if not isinstance(layer.get("class_name"), str) or not isinstance(config, dict):
        return f"layer {layer['name']!r} has no class_name string or config object"
    cls = config.get("_class")
    if not isinstance(cls, str) or not (cls in CONVERTERS or _moduleless(cls)):
        return f"layer {layer['name']!r} has unknown class {cls!r}"
    shapes, activations = layer.get("shapes"), layer.get("activations")
    if not isinstance(shapes, dict) or not all(
        _is_list_of(v, int) and all(type(d) is int and d >= 0 for d in v) for v in shapes.values()
    ):
        return f"layer {layer['name']!r} has malformed weight shapes"
    if not isinstance(activations, dict) or not all(
        isinstance(v, str) for v in activations.values()
    ):
        return f"layer {layer['name']!r} has malformed activations"
    inbound = layer.get("inbound")
    if not _is_list_of(inbound, dict) or not all(
        _is_list_of(c.get("args"), list)
        and (c.get("mask") is None or isinstance(c.get("mask"), list))
        and isinstance(c.get("constants"), list)
        for c in inbound
    ):
        return f"layer {layer['name']!r} has malformed inbound calls"
    return None


def check_config(config: GenericConfig) -> None:
    """ConversionError when a config (possibly from a tampered file) has values of the wrong
    types, duplicate layers, or a graph that is cyclic, dangling or too large."""
    if not _is_list_of(config.layers, dict) or not config.layers:
        raise ConversionError("the generic config has no list of layers")
    if len(config.layers) > MAX_GRAPH_LAYERS:
        raise ConversionError(f"the generic config has over {MAX_GRAPH_LAYERS:,} layers")
    for layer in config.layers:
        problem = _layer_problem(layer)
        if problem:
            raise ConversionError(f"the generic config: {problem}")
    if len({layer["name"] for layer in config.layers}) != len(config.layers):
        raise ConversionError("the generic config lists a layer name twice")
    if not _is_list_of(config.inputs, list) or not _is_list_of(config.outputs, list):
        raise ConversionError("the generic config's inputs/outputs are not lists of refs")
    calls = {layer["name"]: _call_refs(layer) for layer in config.layers}
    evaluation_order(calls, config.inputs, config.outputs, whole=True)


# --- from a parsed Keras graph ------------------------------------------------------------------


def unsupported_layers(graph: KerasGraph) -> list[str]:
    """'name (Class)' of every layer the generic path cannot convert."""
    out = []
    code_problem = model_code_problem(n.config for n in graph.nodes if n.class_name == "Lambda")
    for node in graph.nodes:
        if node.class_name not in CONVERTERS:
            out.append(f"{node.name} ({node.source_class})")
        elif node.class_name == "Bidirectional":
            inner = node.inner
            if inner is None or inner.class_name not in RNN_CLASSES:
                out.append(f"{node.name} ({node.label})")
        elif node.class_name == TIME_DISTRIBUTED and inner_class(node.config) is None:
            out.append(f"{node.name} ({node.label})")
        elif node.class_name in CODE_LAYERS and CONVERTERS[node.class_name] is LAMBDA_CONVERTER:
            if code_problem is not None:
                out.append(f"{node.name} ({node.source_class}; {code_problem})")
                continue
            try:  # translated from its bytecode, never run: untranslatable ones say why
                lambda_translation(node.config)
            except ConversionError as exc:
                reason = str(exc).removeprefix(f"Lambda {node.config.get('name', '?')!r}: ")
                out.append(f"{node.name} ({node.source_class}; {reason})")
    return out


#: Classes that hold Python code saved with the model: never run; translated from their bytecode
#: (parity.ports.lambda_layer) or refused with the reason and the plug-in route.
CODE_LAYERS = ("Lambda",)
#: The built-in Lambda converter (a plug-in registered for "Lambda" replaces the translation).
LAMBDA_CONVERTER = LAMBDA_CONVERTERS["Lambda"]


def unsupported_message(kfile: KerasFile, bad: Sequence[str]) -> str:
    """Why a file with these unsupported layers ('name (Class)') is refused, and what to do."""
    message = f"{kfile.path}: unsupported layer(s) {', '.join(bad)}"
    if any(f"({cls}" in entry for entry in bad for cls in CODE_LAYERS):
        message += (
            "; a Lambda layer is Python code saved in the file and is never executed here (its "
            "bytecode is translated only when every instruction and function is on parity's "
            "whitelist, see the README's 'Lambda layers'): register a converter for it "
            "(parity.plugins.register_layer, see the README's "
            "'Custom layers') or rebuild the model without it"
        )
    else:
        message += (
            "; a class parity does not convert can be added with "
            "parity.plugins.register_layer (see the README's 'Custom layers')"
        )
    return message


def _activation_converter(node: Node) -> LayerConverter:
    """The converter whose activation keys a layer's config holds (a wrapper's: the wrapped
    layer's)."""
    inner = node.inner
    if node.class_name == TIME_DISTRIBUTED and inner is not None:
        return CONVERTERS[inner.class_name]
    return CONVERTERS[node.class_name]


def _resolve_activations(
    kfile: KerasFile, node: Node, source: dict[str, Any], hard_sigmoid: str | None, notes: list[str]
) -> dict[str, str]:
    converter = _activation_converter(node)
    defaults = dict(converter.activation_defaults)
    resolved: dict[str, str] = {}
    for key in converter.activations:
        raw = source.get(key, defaults.get(key))
        name = activation_name(raw) if raw is not None else "linear"
        if name.startswith("hard_sigmoid"):
            name, extra = resolve_gate(kfile, raw, hard_sigmoid, default=name, layer=node.name)
            notes += extra
        elif name not in KERAS_ACTIVATIONS:
            raise ConversionError(
                f"{kfile.path}: layer {node.name!r} ({node.source_class}) uses activation "
                f"{name!r}; supported: {', '.join(KERAS_ACTIVATIONS)}, hard_sigmoid"
            )
        resolved[key] = name
    return resolved


def _layer_config(node: Node) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(the config saved with the model, the config its activations are read from, the wrapped
    layer's class as the file names it)."""
    config = copy.deepcopy(node.config)
    config["_class"] = node.class_name
    inner = node.inner
    if node.class_name == "Bidirectional" and inner is not None:
        config["layer"] = {"class_name": inner.class_name, "config": inner.config}
        config["_rnn_class"] = inner.class_name
        return config, inner.config, node.config["layer"].get("source_class", inner.class_name)
    if node.class_name == TIME_DISTRIBUTED and inner is not None:
        return config, inner.config, node.config["layer"].get("source_class", inner.class_name)
    if node.class_name in RNN_CLASSES:
        config["_rnn_class"] = node.class_name
    if node.class_name.startswith(OP_PREFIX):
        config["_op"] = node.class_name.removeprefix(OP_PREFIX)
    return config, config, None


def config_from_graph(
    kfile: KerasFile, graph: KerasGraph, hard_sigmoid: str | None = None
) -> tuple[GenericConfig, dict[str, np.ndarray], list[str]]:
    """(graph config, Keras weights named "layer/weight" in canonical layout, notes)."""
    bad = unsupported_layers(graph)
    if bad:
        raise ConversionError(unsupported_message(kfile, bad))
    stored, problems = node_weights(kfile, graph)
    notes: list[str] = []
    layers: list[dict[str, Any]] = []
    weights: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        config, activation_source, inner_source = _layer_config(node)
        converter = CONVERTERS[node.class_name]
        if node.class_name in ASSET_CLASSES:  # the vocabulary: config or the archive's assets
            directory = "".join(f"layers/{auto}/" for auto in node.storage)
            where = f"{kfile.path}: layer {node.name!r} ({node.source_class})"
            table = None
            if kfile.saved_model is not None and not node.scope:
                table = functools.partial(
                    lookup_table, kfile.saved_model, node.name, node.class_name
                )
            config.update(
                vocabulary_from_assets(
                    config,
                    kfile.assets,
                    directory,
                    node.class_name,
                    where,
                    kfile.format,
                    table,
                    kfile.keras_major,
                )
            )
        if converter.versioned:
            config[KERAS_MAJOR_KEY] = kfile.keras_major
        for call in node.calls:
            if converter.inputs is not None and len(call.args) > converter.inputs:
                problems.append(
                    f"layer {node.name!r} ({node.label}) is called with {len(call.args)} "
                    f"tensors; it takes {converter.inputs} (initial states or other extra "
                    "inputs are not supported)"
                )
            if call.constants and not node.moduleless:  # only recorded ops take constants
                problems.append(
                    f"layer {node.name!r} ({node.label}) is called with non-tensor arguments "
                    f"{call.constants!r}; not supported"
                )
        activations = _resolve_activations(kfile, node, activation_source, hard_sigmoid, notes)
        names = converter.weights(config)
        found = stored[node.name]
        try:
            arrays = normalise_layer_weights(
                node.source_class, inner_source, [w.array for w in found], len(names)
            )
        except ConversionError as exc:
            problems.append(f"layer {node.name!r} ({node.source_class}): {exc}")
            arrays = None
        if arrays is not None and len(arrays) != len(names):
            problems.append(
                f"layer {node.name!r} ({node.source_class}): expected {len(names)} weights "
                f"{list(names)}, found {len(found)} {[w.name for w in found]}"
            )
            arrays = None
        shapes = {}
        for weight_name, array in zip(names, arrays or [], strict=False):
            weights[f"{node.name}/{weight_name}"] = array
            shapes[weight_name] = list(array.shape)
        layers.append(
            {
                "name": node.name,
                "class_name": node.source_class,
                "config": config,
                "inbound": [call.to_dict() for call in node.calls],
                "shapes": shapes,
                "activations": activations,
            }
        )
    known = {node.scope[0] if node.scope else node.name for node in graph.nodes}
    for layer in kfile.layers:  # weights of layers the config does not list: reported unused
        if layer.name not in known:
            for weight in layer.weights:
                weights[f"{layer.name}/{weight.name}"] = weight.array
    for key, array in weights.items():
        problem = weight_problem(array)
        if problem:
            layer_name, weight_name = key.rsplit("/", 1)
            problems.append(f"layer {layer_name!r}: weight {weight_name!r} {problem}")
    if problems:
        raise ConversionError(f"{kfile.path}: " + "; ".join(problems))
    config = GenericConfig(
        layers=layers,
        inputs=graph.inputs,
        outputs=graph.outputs,
        frozen_batch_norm=frozen_batch_norm_rule(kfile.keras_version),
    )
    return config, weights, notes


def default_rows(layer: str, cls: str) -> list[Row]:
    """The rows a layer of class ``cls`` ("LSTM", "Bidirectional(GRU)") with default config gets,
    its module named after the layer."""
    outer, _, inner = cls.partition("(")
    config: dict[str, Any] = {"_class": outer}
    if inner:
        inner = inner.rstrip(")")
        config |= {"_rnn_class": inner, "layer": {"class_name": inner, "config": {}}}
    elif outer in RNN_CLASSES:
        config["_rnn_class"] = outer
    return CONVERTERS[outer].rows(layer, module_name(layer), config)


def default_weights(cls: str) -> tuple[str, ...]:
    """The weights a layer of class ``cls`` with default config saves, in saved order."""
    return tuple(keras.split("/", 1)[1] for keras, _, _ in default_rows("x", cls) if keras)


# --- the architecture ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GenericArch(Architecture):
    """The generic path as an architecture. Zoo entries are generic architectures with a name, a
    Keras reference and the weighted layers they must have (the seed models' test matrix)."""

    name: str
    reference: str | None = None
    #: Weighted layers (role, class) the model must have; empty for the open-ended "generic".
    keras_layers: Sequence[tuple[str, str]] = ()
    config_cls: type = GenericConfig
    model_cls: type[nn.Module] = GenericModel

    @property
    def rows(self) -> list[Row]:
        """The rows the converters produce for ``keras_layers`` (default configs)."""
        return [row for role, cls in self.keras_layers for row in default_rows(role, cls)]

    def build(self, config: GenericConfig) -> nn.Module:
        return GenericModel(config)

    def plan(
        self, kfile: KerasFile, graph: KerasGraph | None, hard_sigmoid: str | None = None
    ) -> Plan:
        if graph is None:
            raise ConversionError(
                f"{kfile.path}: the file has no model config ({kfile.format} stores weights "
                "only), so the architecture cannot be rebuilt from it; pass arch= a registered "
                "architecture, or config= the full-model file (.keras, or a legacy .h5 written "
                "by model.save)"
            )
        config, weights, notes = config_from_graph(kfile, graph, hard_sigmoid)
        rows = mapping_rows(config)
        if self.keras_layers and {r[0] for r in rows} != {r[0] for r in self.rows}:
            raise ConversionError(
                f"{kfile.path}: not a {self.name} model (its layers map to "
                f"{sorted({r[0].split('/')[0] for r in rows if r[0]})}, {self.name} has "
                f"{[role for role, _ in self.keras_layers]})"
            )
        return Plan(self, config, weights, rows, notes, str(kfile.path))

    def owns(self, model: nn.Module) -> bool:
        return isinstance(model, GenericModel)

    def mapping(self, model: nn.Module | None = None) -> Sequence[Row]:
        """A built model's rows; without one, the rows a zoo entry's default layers produce."""
        return self.rows if model is None else model.mapping

    def check_points(self, model: nn.Module) -> Sequence[tuple[str, Point]]:
        """Each Keras layer with a module: that module's output (the first element of a tuple);
        optional, since a layer's torch output may be laid out differently."""
        paths = module_paths(model.config)
        modules = dict(model.named_children())
        return [
            (layer["name"], Point(paths[layer["name"]], optional=True))
            for layer in model.config.layers
            if paths[layer["name"]] in modules
        ]

    # --- fine-tuning -----------------------------------------------------------------------

    def _head_chain(self, model: nn.Module) -> list[dict[str, Any]]:
        """The output layer back to the Dense that produces it, through dropouts/activations."""
        if len(model.config.outputs) != 1:
            raise ValueError("fine-tuning needs a model with one output")
        layers = {layer["name"]: layer for layer in model.config.layers}
        chain = [layers[model.config.outputs[0][0]]]
        while chain[-1]["config"]["_class"] in HEAD_PASS_THROUGH:
            calls = chain[-1]["inbound"]
            if len(calls) != 1 or len(calls[0]["args"]) != 1:
                break
            chain.append(layers[calls[0]["args"][0][0]])
        if chain[-1]["config"]["_class"] != "Dense":
            found = " <- ".join(f"{c['name']} ({c['class_name']})" for c in chain)
            raise ValueError(
                f"no classifier head: the model output comes from {found}, not a Dense layer"
            )
        return chain

    def head(self, model: nn.Module) -> str:
        return module_paths(model.config)[self._head_chain(model)[-1]["name"]]

    def input_length(self, model: nn.Module) -> int | None:
        """The length the file's config fixes the input to (Keras was fed that), if any."""
        return input_length(layer["config"] for layer in model.config.layers)

    def with_head(self, model: nn.Module, num_classes: int) -> nn.Module:
        chain = self._head_chain(model)
        units = 1 if num_classes <= BINARY_CLASSES else num_classes
        activation = "sigmoid" if units == 1 else "softmax"
        config = copy.deepcopy(model.config)
        layers = {layer["name"]: layer for layer in config.layers}
        head = layers[chain[-1]["name"]]
        fan_in = head["shapes"]["kernel"][0]
        head["shapes"]["kernel"] = [fan_in, units]
        if "bias" in head["shapes"]:
            head["shapes"]["bias"] = [units]
        head["config"]["units"] = units
        head["activations"]["activation"] = activation
        for passed in chain[:-1]:  # the new head's activation is the output's
            if passed["config"]["_class"] == "Activation":
                layers[passed["name"]]["activations"]["activation"] = "linear"
        new = GenericModel(config).to(next(model.parameters()).dtype)
        path = module_paths(config)[head["name"]]
        kept = {k: v for k, v in model.state_dict().items() if not k.startswith(f"{path}.")}
        missing, unexpected = new.load_state_dict(kept, strict=False)
        if unexpected or not all(k.startswith(f"{path}.") for k in missing):
            raise ValueError(f"a new head changed more than the head: {missing} {unexpected}")
        keras_init_(new.get_submodule(path))
        return new
