"""The one interface every architecture implements, and the plan a conversion follows.

An architecture is everything parity knows about one kind of model, in one place: how to tell a
file holds it and read its sizes (``plan``), how to build the torch module (``build``), the
mapping table between Keras weights and torch parameters (``mapping``), where each Keras layer's
output is found for `parity check` (``check_points``), and what fine-tuning and running the
model on texts need (``head``, ``head_layer``, ``with_head``, ``layer_groups``,
``token_embedding``, ``input_length``). Registered pairs (a hand-written port with a Keras
reference) and the generic architecture (any model of supported layers, rebuilt from the file's
config) implement the same interface, so conversion, checks, initialisation, fine-tuning and
scoring treat them alike.

A conversion is: read the file once, parse its config once, ``plan`` (match + sizes + weights in
canonical names, nothing allocated), build an empty module, apply the mapping strictly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from parity.conventions import TRAINABLE_KEY
from parity.convert.mapping import Row, apply_mapping, build_empty, collect_weights, resolve_layers
from parity.errors import ConversionError
from parity.init import keras_init_
from parity.keras.graph import KerasGraph
from parity.keras.read import KerasFile, KerasLayer

#: A pair config's field listing the Keras layers saved with trainable=False.
FROZEN_LAYERS_FIELD = "frozen_layers"


@dataclass(frozen=True)
class Point:
    """How to read one Keras layer's output from the torch model (for `parity check`)."""

    #: Submodule path in the torch model ("" = the model itself).
    module: str
    #: "output" (forward hook) or "input" (forward pre-hook: the first positional argument).
    hook: str = "output"
    #: Element of a tuple output to take (LSTM: 0 = the sequence output); None = as is.
    pick: int | None = None
    #: Activation applied afterwards: a name in parity.ports.activations, or "config.<attr>"
    #: naming one from the model config.
    then: str | None = None
    #: Default-rule points are dropped, not failed, when their shape differs from Keras'.
    optional: bool = False


@dataclass
class Plan:
    """What a conversion will do, decided before anything is allocated."""

    arch: Architecture
    config: Any
    #: Keras weights named as the mapping's rows name them, in canonical (Keras 2) layout.
    weights: dict[str, np.ndarray]
    mapping: Sequence[Row]
    notes: list[str] = field(default_factory=list)
    source: str = ""
    #: The file's parsed model config, when it has a usable one.
    graph: KerasGraph | None = None

    def build(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        """The module, filled strictly from the plan's weights (no random init, no copy)."""
        try:
            model = build_empty(lambda: self.arch.build(self.config), dtype)
        except ConversionError as exc:
            raise ConversionError(f"{self.source}: {exc}") from exc
        apply_mapping(model, self.mapping, self.weights, source=self.source, assign=True)
        return model.eval()


class Architecture:
    """Base of every architecture; see the module docstring."""

    name: str
    config_cls: type
    #: Module of the Keras half under reference_keras/, when there is one.
    reference: str | None = None
    #: The config fields holding the (embedding, final) dropout rates fine-tuning sets
    #: (DeepMoji's); None: the model keeps the rates its file has.
    dropout_fields: tuple[str, str] | None = None

    def build(self, config: Any) -> nn.Module:
        raise NotImplementedError

    def plan(
        self, kfile: KerasFile, graph: KerasGraph | None, hard_sigmoid: str | None = None
    ) -> Plan:
        """Match the file to this architecture and collect its sizes and weights; raises
        ConversionError naming what does not fit."""
        raise NotImplementedError

    def owns(self, model: nn.Module) -> bool:
        return type(model) is getattr(self, "model_cls", None)

    def mapping(self, model: nn.Module | None = None) -> Sequence[Row]:
        """The rows converting ``model``'s weights; without a model, the architecture's own
        table (a pair's, or the one a zoo entry's default layers produce)."""
        raise NotImplementedError

    def keras_weights(self, model: nn.Module | None = None) -> dict[str, tuple[str, ...]]:
        """Keras layer (as the mapping names it) -> its weights in Keras' saved order."""
        layers: dict[str, list[str]] = {}
        for keras_name, _, _ in self.mapping(model):
            if keras_name is not None:
                layer, weight = keras_name.split("/", 1)
                layers.setdefault(layer, []).append(weight)
        return {layer: tuple(weights) for layer, weights in layers.items()}

    def check_points(self, model: nn.Module) -> Sequence[tuple[str, Point]]:
        """(Keras layer name, where its output is in ``model``), in model order."""
        raise NotImplementedError

    # --- fine-tuning -----------------------------------------------------------------------

    def head(self, model: nn.Module) -> str:
        """The top-level submodule that is the classifier (replaced per task)."""
        raise NotImplementedError

    def with_head(self, model: nn.Module, num_classes: int) -> nn.Module:
        """The same model with a new, Keras-initialized head for ``num_classes`` (2 = one
        sigmoid unit); every other weight is shared."""
        raise NotImplementedError

    def head_layer(self, model: nn.Module) -> nn.Module:
        """The classifier module itself (``head`` names it): what running a model for its
        encoding reads the input of, and what fine-tuning replaces."""
        return model.get_submodule(self.head(model))

    def layer_groups(self, model: nn.Module) -> list[str]:
        """Top-level submodules that hold parameters, in model order (chain-thaw's order)."""
        return [n for n, m in model.named_children() if any(True for _ in m.parameters())]

    def token_embedding(self, model: nn.Module) -> nn.Embedding:
        """The Embedding the model's token ids go into: its first weighted layer (ValueError
        naming that layer when it is not one). Its rows bound the ids a text may encode to."""
        groups = self.layer_groups(model)
        first = model.get_submodule(groups[0]) if groups else None
        if not isinstance(first, nn.Embedding):
            found = f"{groups[0]} ({type(first).__name__})" if groups else "no weighted layer"
            raise ValueError(f"the model does not take token ids: its first layer is {found}")
        return first

    def input_length(self, model: nn.Module) -> int | None:
        """The token sequence length the model is fixed to (a Flatten after the embedding, a
        config that states it), or None when it takes any length."""
        return None


@dataclass(frozen=True)
class PairArch(Architecture):
    """A hand-written port with a Keras reference, linked by a fixed mapping table."""

    name: str
    config_cls: type
    model_cls: type[nn.Module]
    #: Keras layers with weights, in model order: (layer name in the reference, Keras class).
    keras_layers: Sequence[tuple[str, str]]
    #: Keras class -> the weights it saves, in saved order.
    layer_weights: dict[str, tuple[str, ...]]
    rows: Sequence[Row]
    #: (kfile, resolved layers, weights, hard_sigmoid) -> (config, notes on assumptions)
    config_from_keras: Callable[..., tuple[Any, list[str]]]
    #: (Keras layer name in the reference, point), in model order.
    points: Sequence[tuple[str, Point]]
    #: The classifier submodule and the config field that sizes it.
    head_module: str
    reference: str | None = None
    #: The model config's layer classes in order (InputLayer left out) when the pair is exactly
    #: a model of standard layers: such a file converts as this pair only if its layers are
    #: these; None = the pair is recognised by its weighted layers.
    keras_structure: tuple[str, ...] | None = None
    #: A Keras class only this pair's models hold (DeepMoji's attention): a file with it
    #: converts as this pair when the pair accepts it, though the generic path could too.
    own_class: str | None = None
    #: config field holding the number of classes (with_head changes it).
    classes_field: str = "num_classes"
    #: config field holding the fixed input length, for a pair that has one.
    length_field: str | None = None
    #: config fields holding the (embedding, final) dropout rates, for a pair that has them.
    dropout_fields: tuple[str, str] | None = None

    def build(self, config: Any) -> nn.Module:
        model = self.model_cls(config)
        frozen = getattr(config, FROZEN_LAYERS_FIELD, [])
        roles = {role for role, _ in self.keras_layers}
        if not isinstance(frozen, list) or not all(r in roles for r in frozen):
            raise ConversionError(f"{self.name}: {FROZEN_LAYERS_FIELD} {frozen!r} names no layers")
        for keras_name, torch_name, _ in self.rows:
            if keras_name is not None and keras_name.split("/", 1)[0] in frozen:
                model.get_parameter(torch_name).requires_grad_(False)
        return model

    def plan(
        self, kfile: KerasFile, graph: KerasGraph | None, hard_sigmoid: str | None = None
    ) -> Plan:
        if (
            self.keras_structure is not None
            and graph is not None
            and tuple(graph.layer_classes()) != self.keras_structure
        ):
            raise ConversionError(
                f"{kfile.path}: not a {self.name} model (its layers are "
                f"{graph.layer_classes()}, {self.name} is {list(self.keras_structure)})"
            )
        layers = self.resolve(kfile)
        weights = collect_weights(kfile, layers, self.keras_layers, self.layer_weights)
        config, notes = self.config_from_keras(kfile, layers, weights, hard_sigmoid)
        frozen = [
            role
            for role, layer in layers.items()
            if layer.config is not None and layer.config.get(TRAINABLE_KEY, True) is False
        ]
        if frozen:
            config = dataclasses.replace(config, **{FROZEN_LAYERS_FIELD: frozen})
        fixed = graph.input_length() if graph is not None else None
        if fixed is not None and self.length_field and getattr(config, self.length_field) is None:
            config = dataclasses.replace(config, **{self.length_field: fixed})
        return Plan(self, config, weights, self.rows, notes, str(kfile.path))

    def resolve(self, kfile: KerasFile) -> dict[str, KerasLayer]:
        """Reference layer name -> the file's layer."""
        return resolve_layers(kfile, self.keras_layers)

    def mapping(self, model: nn.Module | None = None) -> Sequence[Row]:
        return self.rows

    def keras_weights(self, model: nn.Module | None = None) -> dict[str, tuple[str, ...]]:
        return {role: self.layer_weights[cls] for role, cls in self.keras_layers}

    def check_points(self, model: nn.Module | None = None) -> Sequence[tuple[str, Point]]:
        return self.points

    def head(self, model: nn.Module | None = None) -> str:
        return self.head_module

    def input_length(self, model: nn.Module) -> int | None:
        return None if self.length_field is None else getattr(model.config, self.length_field)

    def with_head(self, model: nn.Module, num_classes: int) -> nn.Module:
        config = dataclasses.replace(model.config, **{self.classes_field: num_classes})
        dtype = next(model.parameters()).dtype
        new = self.build(config).to(dtype)
        kept = {
            k: v for k, v in model.state_dict().items() if not k.startswith(f"{self.head_module}.")
        }
        missing, unexpected = new.load_state_dict(kept, strict=False)
        if unexpected or not all(k.startswith(f"{self.head_module}.") for k in missing):
            raise ValueError(f"{self.name}: a new head changed more than the head: {missing}")
        keras_init_(new.get_submodule(self.head_module))
        return new
