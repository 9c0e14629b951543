"""What one Keras layer class needs to become torch (``LayerConverter``), the helpers the ports
share, and the one registry of every port (``CONVERTERS``).

A family file (parity/ports/<family>.py) holds its ``CONVERTERS`` (Keras class -> converter)
and, beside its modules, optional ``INIT_RULES`` (module type -> Keras default initialization)
and ``DIAGNOSES`` (the conventions a conversion of its classes can get wrong, tried by parity
check when a gap appears), ``TRANSFORMS`` and ``NORMALISATIONS`` (weight layouts) and
``ONNX_TRANSLATIONS``; ``CONVERTERS.add_family`` takes them all, and plug-ins go through
``CONVERTERS.register``: one registry, which refuses duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from parity.conventions import CHANNELS_LAST, KERAS1_CHANNELS_LAST, KERAS_MAJOR_KEY
from parity.convert import transforms
from parity.convert.mapping import Row
from parity.errors import ConversionError
from parity.ports.diagnosis import Alternative

Masks = list[Tensor | None]
#: module -> None: re-initialize it in place as Keras initializes the layer it mirrors.
InitRule = Callable[[nn.Module], None]
#: custom_objects for loading a plug-in's files in live Keras: a mapping, or a function returning
#: one (called only when a check loads a file, so that converting never imports Keras).
KerasObjects = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
Config = dict[str, Any]
Shapes = dict[str, tuple[int, ...]]
#: (module, config, inputs, input masks) -> (outputs, output masks).
CallRule = Callable[[nn.Module, Config, list[Tensor], Masks], tuple[list[Tensor], Masks]]

#: The Keras major version assumed when a file does not say: only Keras 1/2 writers omit it.
UNVERSIONED_KERAS_MAJOR = 2

#: Key in the config a call rule receives: True when the call passed mask= explicitly (Keras 3
#: records it), rather than carrying its input's.
MASK_PASSED_KEY = "_mask_passed"

#: Bound on any size a config declares before it is compared with the weights.
MAX_DECLARED_SIZE = 2**31


@dataclass(frozen=True)
class LayerConverter:
    """How one Keras layer class becomes torch: its saved weights, module, rows and call."""

    #: config -> the weights the class saves, in Keras' saved order.
    weights: Callable[[Config], tuple[str, ...]]
    #: (config, weight shapes, resolved activations) -> module.
    build: Callable[[Config, Shapes, dict[str, str]], nn.Module]
    #: (Keras layer name, torch module path, config) -> mapping rows.
    rows: Callable[[str, str, Config], list[Row]]
    #: How the module is applied and what happens to the Keras mask (the mask rule).
    call: CallRule
    #: config keys naming activations, resolved at conversion (hard_sigmoid by Keras version).
    activations: tuple[str, ...] = ()
    #: Activation defaults where the config omits a key (Keras' class defaults).
    activation_defaults: tuple[tuple[str, str], ...] = (("activation", "linear"),)
    #: How many tensors one call reads (None: any number, as Concatenate). A call that passes
    #: more (an RNN given initial_state as extra inbound tensors) is refused, never run on its
    #: first input alone: dropping a tensor would silently change the answer.
    inputs: int | None = 1
    #: Small Keras configs of this class with the input each takes (an ``INPUT_KINDS`` key):
    #: the test suite builds each in live Keras and checks the conversion's outputs and
    #: gradients, so a new converter is tested by its own entry.
    examples: tuple[Example, ...] = ()
    #: Whether the call rule depends on the Keras major version that wrote the file (merge
    #: masks differ between Keras 2 and 3): conversion stores it in the config under
    #: parity.conventions.KERAS_MAJOR_KEY (None when the file does not say).
    versioned: bool = False
    #: The conventions a conversion of this class can get wrong, by name (a ``DIAGNOSES`` entry
    #: of some family, or one of parity.check.diagnose's own): parity check tries them when a
    #: file with this class fails.
    diagnoses: tuple[str, ...] = ()
    #: The code ``parity port`` writes for a call of this class (None: the class is refused
    #: there by name): (module, config, which inputs carry a mask) -> Emitted.
    emit: Emitter | None = None


@dataclass(frozen=True)
class Emitted:
    """One Keras call as standalone PyTorch code (torch, numpy and keras_layers.py only).

    ``lines`` and ``masks`` are templates: {self} is the submodule, {x0}, {x1}, ... the inputs,
    {m0}, ... their masks (a name, or None), {out0}, ... the outputs to assign.
    """

    #: The submodule's constructor expression, or None when the call needs no module.
    module: str | None
    #: Statements that assign every {outN}.
    lines: tuple[str, ...]
    #: Each output's mask, as an expression ("None" for none).
    masks: tuple[str, ...] = ("None",)
    #: Names the code imports from keras_layers.py.
    helpers: tuple[str, ...] = ()
    #: The submodule's state_dict from the converted module (default: its own state_dict).
    state: Callable[[nn.Module], dict[str, Tensor]] | None = None
    #: Python source of definitions keras_layers.py must hold besides its own (a plug-in's
    #: module class): written with torch, nn and F only, as the file imports them.
    sources: tuple[str, ...] = ()


#: (converted module, config, which inputs carry a mask) -> the call's code.
Emitter = Callable[[nn.Module | None, "Config", tuple[bool, ...]], Emitted]


@dataclass(frozen=True)
class Example:
    """A Keras layer config (as keras.layers.deserialize takes it) and the input it runs on."""

    config: Config
    input: str = "sequence"


#: What an example's layer is applied to (the test suite builds these in Keras):
#: ids (int token ids), embedded (a masked Embedding's output), sequence (float (B, T, C)),
#: vector (float (B, C)), two_sequences (two float (B, T, C) tensors, 3 and 2 channels),
#: paired_sequences (two float (B, T, 3)), two_vectors (two float (B, 4)), masked_pair (two
#: (B, T, 4) from ids: a masked Embedding through a Dense, and an unmasked Embedding),
#: image (float channels-last (B, H, W, C)), texts ((B, 1) strings into the layer, an Embedding
#: or Dense after it), integers ((B, 3) int64 into the layer, an Embedding after it).
#: Attention inputs, all from ids, "masked" = carrying the Embedding's mask: masked_value_pair
#: ([unmasked query, masked value]), masked_triple ([masked query, masked value, unmasked
#: key]), and called as layer(query, value, key=...): query_value (masked query,
#: unmasked 5-feature value), query_value_key (query=unmasked, value=masked, key=unmasked with
#: 5 features, all keywords), masked_query_value (both masked).
INPUT_KINDS = (
    "ids",
    "embedded",
    "sequence",
    "vector",
    "two_sequences",
    "paired_sequences",
    "two_vectors",
    "masked_pair",
    "image",
    "masked_value_pair",
    "masked_triple",
    "query_value",
    "query_value_key",
    "masked_query_value",
    "texts",
    "integers",
)


def no_weights(config: Config) -> tuple[str, ...]:
    return ()


def no_rows(layer: str, path: str, config: Config) -> list[Row]:
    return []


def no_module(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    return nn.Identity()


def with_bias(*names: str) -> Callable[[Config], tuple[str, ...]]:
    """The class saves ``names``, then "bias" unless use_bias=False."""

    def weights(config: Config) -> tuple[str, ...]:
        return names + (("bias",) if config.get("use_bias", True) else ())

    return weights


def simple_rows(
    weights: Callable[[Config], tuple[str, ...]], *pairs: tuple[str, str, str]
) -> Callable[[str, str, Config], list[Row]]:
    """Rows (keras weight, torch parameter, transform) for the weights the config has."""

    def rows(layer: str, path: str, config: Config) -> list[Row]:
        present = set(weights(config))
        return [(f"{layer}/{k}", f"{path}.{t}", how) for k, t, how in pairs if k in present]

    return rows


def declared(config: Config, key: str, found: int, what: str) -> None:
    """A size the config states must be sane and agree with the weights."""
    value = config.get(key)
    if value is None:
        return
    if not isinstance(value, int) or not 0 < value <= MAX_DECLARED_SIZE:
        raise ConversionError(f"config declares {key}={value!r}, not a sane size")
    if value != found:
        raise ConversionError(f"config declares {key}={value} but {what} has {found}")


def single(value: Any) -> Any:
    """Keras writes 1-D sizes as 3 or [3]."""
    return value[0] if isinstance(value, list | tuple) else value


def call_keep_mask(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """Layers that support masking in Keras pass the mask on."""
    return [module(xs[0])], [masks[0]]


def call_drop_mask(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """Layers that do not support masking drop it, as Keras 3 does."""
    return [module(xs[0])], [None]


def require_channels_last(config: Config, cls: str) -> None:
    """Refuse, by name, any layout but Keras' default channels-last (the ports take Keras' own
    input layout)."""
    if config.get("data_format") not in CHANNELS_LAST:
        raise ConversionError(
            f"{cls} data_format={config['data_format']!r} is not supported (channels_last only)"
        )
    if config.get("dim_ordering") not in KERAS1_CHANNELS_LAST:
        raise ConversionError(
            f"{cls}: Keras 1 dim_ordering={config['dim_ordering']!r} is not supported (Theano "
            "layout, kernels possibly flipped); only 'tf' is"
        )


def written_by_keras3(config: Config) -> bool:
    """Whether a versioned converter's layer comes from a Keras 3 file (see ``versioned``)."""
    return (config.get(KERAS_MAJOR_KEY) or UNVERSIONED_KERAS_MAJOR) >= 3


@dataclass(frozen=True)
class _Plugin:
    """What one ``CONVERTERS.register`` call changed, so that ``unregister`` restores it."""

    previous: LayerConverter | None
    init_rules: tuple[type, ...]


class ConverterRegistry(dict[str, LayerConverter]):
    """Keras class name (as parity.keras.graph normalises it) -> its converter, with the ports'
    init rules and diagnoses: the one table the generic path, wrappers, keras_init_, parity check
    and plug-ins read. ``add_family`` refuses a class (or module type) that another family
    already has, so one family can never silently shadow another."""

    def __init__(self) -> None:
        super().__init__()
        self._family: dict[str, str] = {}
        #: module type -> its Keras default initialization.
        self.init_rules: dict[type, InitRule] = {}
        #: diagnosis name -> the alternative a family defines (parity.ports.diagnosis).
        self.diagnoses: dict[str, Alternative] = {}
        #: registered torch operator -> its ONNX translation (torch.onnx's custom translation).
        self.onnx_translations: dict[Any, Callable[..., Any]] = {}
        #: class name -> custom_objects for Keras 3 and for tf_keras (plug-ins only).
        self.keras_objects: dict[str, tuple[KerasObjects | None, KerasObjects | None]] = {}
        self._plugins: dict[str, _Plugin] = {}

    def add_family(self, module: ModuleType) -> None:
        """Add a family file's ports: its ``CONVERTERS``, and the optional tables beside them
        (``INIT_RULES``, ``DIAGNOSES``, ``TRANSFORMS`` and ``NORMALISATIONS``,
        ``ONNX_TRANSLATIONS``)."""
        family = module.__name__.rsplit(".", 1)[-1]
        converters: Mapping[str, LayerConverter] = module.CONVERTERS
        twice = sorted(name for name in converters if name in self)
        if twice:
            owners = ", ".join(f"{name} (already from {self._family[name]})" for name in twice)
            raise ValueError(f"family {family} converts classes another family does: {owners}")
        rules: Mapping[type, InitRule] = getattr(module, "INIT_RULES", {})
        onnx: Mapping[Any, Callable[..., Any]] = getattr(module, "ONNX_TRANSLATIONS", {})
        diagnoses: Mapping[str, Alternative] = getattr(module, "DIAGNOSES", {})
        doubled = sorted(t.__name__ for t in rules if t in self.init_rules)
        doubled += sorted(str(op) for op in onnx if op in self.onnx_translations)
        doubled += sorted(name for name in diagnoses if name in self.diagnoses)
        if doubled:
            raise ValueError(f"family {family} gives rules other families give: {doubled}")
        transforms.register(
            getattr(module, "TRANSFORMS", {}), getattr(module, "NORMALISATIONS", {})
        )
        self.update(converters)
        self._family.update(dict.fromkeys(converters, family))
        self.init_rules.update(rules)
        self.onnx_translations.update(onnx)
        self.diagnoses.update(diagnoses)

    def register(
        self,
        class_name: str,
        converter: LayerConverter,
        *,
        init_rules: Mapping[type, InitRule] | None = None,
        keras_objects: KerasObjects | None = None,
        keras2_objects: KerasObjects | None = None,
        replace: bool = False,
    ) -> None:
        """Add (or, with ``replace``, replace) one class from outside the built-in families."""
        if class_name in self and not replace:
            raise ValueError(
                f"register_layer: {class_name!r} is already converted; pass replace=True to "
                "replace its converter"
            )
        if class_name in self._plugins:
            previous = self._plugins[class_name].previous
        else:
            previous = self.get(class_name)
        rules = dict(init_rules or {})
        self[class_name] = converter
        added = tuple(t for t in rules if t not in self.init_rules)
        self.init_rules.update(rules)
        if keras_objects is not None or keras2_objects is not None:
            self.keras_objects[class_name] = (keras_objects, keras2_objects)
        self._plugins[class_name] = _Plugin(previous, added)

    def unregister(self, class_name: str) -> None:
        """Undo ``register`` for ``class_name`` (the converter it replaced, if any, returns)."""
        plugin = self._plugins.pop(class_name)
        if plugin.previous is None:
            self.pop(class_name, None)
        else:
            self[class_name] = plugin.previous
        for rule in plugin.init_rules:
            self.init_rules.pop(rule, None)
        self.keras_objects.pop(class_name, None)

    def diagnosed_classes(self, name: str) -> frozenset[str]:
        """The Keras classes whose ports list the diagnosis ``name``."""
        return frozenset(cls for cls, conv in self.items() if name in conv.diagnoses)

    def init_rule(self, module: nn.Module) -> InitRule | None:
        """The Keras initialization of ``module``'s type, resolved through its MRO."""
        for cls in type(module).__mro__:
            if cls in self.init_rules:
                return self.init_rules[cls]
        return None


#: Every class the generic path converts; parity.ports fills it family by family.
CONVERTERS = ConverterRegistry()


# --- code emission helpers the ports share (parity port) -------------------------------------

#: Keras activations torch names directly; any other comes from keras_layers.ACTIVATIONS.
TORCH_ACTIVATIONS = {
    "relu": "torch.relu({})",
    "tanh": "torch.tanh({})",
    "sigmoid": "torch.sigmoid({})",
    "softmax": "torch.softmax({}, dim=-1)",
}


def literal(value: Any) -> str:
    """``value`` as Python source in the generated code's style (double-quoted strings)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def activation_code(name: str, expr: str) -> tuple[str, tuple[str, ...]]:
    """``expr`` under the Keras activation ``name``, as code, and the helpers it imports."""
    if name == "linear":
        return expr, ()
    if name in TORCH_ACTIVATIONS:
        return TORCH_ACTIVATIONS[name].format(expr), ()
    return f"ACTIVATIONS[{literal(name)}]({expr})", ("ACTIVATIONS",)


def emit_keep_mask(code: str, module: str | None = None) -> Emitter:
    """A one-line call ({x0} -> {out0}) that passes its input's mask on."""
    return lambda m, config, masked: Emitted(module, (f"{{out0}} = {code}",), ("{m0}",))


def emit_drop_mask(code: str) -> Emitter:
    """A one-line call without a module that ends the mask."""
    return lambda m, config, masked: Emitted(None, (f"{{out0}} = {code}",), ("None",))
