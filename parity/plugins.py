"""Custom layers: teach parity a Keras class it does not ship, from the user's own code.

A file holding a layer of the user's own (a subclassed keras.layers.Layer) or a Lambda is
refused by name. ``register_layer`` adds a converter for that class name to the generic path's
table, exactly as the built-in families do (parity.ports.registry.LayerConverter: which
weights the class saves, the torch module, the mapping rows, how it is called and what happens
to the mask); optionally the Keras classes themselves, so that ``parity check`` can load the
file in live Keras, and Keras-default initializers for the new torch modules (parity.init).

From the command line, ``parity --plugin mypackage.parity_plugin convert ...`` imports the
module (which calls register_layer) before the command runs.

Registration lasts for the process. A model converted with a plug-in layer and saved with
parity.save needs the same plug-in registered to be loaded again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from torch import nn

from parity.check import keras_side
from parity.init import RULES
from parity.ports import CONVERTERS
from parity.ports.registry import (
    Example,
    LayerConverter,
    call_drop_mask,
    call_keep_mask,
    no_rows,
    no_weights,
    simple_rows,
    with_bias,
)

__all__ = [
    "Example",
    "LayerConverter",
    "call_drop_mask",
    "call_keep_mask",
    "load_plugins",
    "no_rows",
    "no_weights",
    "register_layer",
    "simple_rows",
    "unregister_layer",
    "with_bias",
]

#: Classes registered here (built-in converters are never replaced silently).
_REGISTERED: dict[str, tuple[LayerConverter | None, list[type]]] = {}


def register_layer(
    class_name: str,
    converter: LayerConverter,
    *,
    keras_objects: keras_side.PluginObjects | None = None,
    keras2_objects: keras_side.PluginObjects | None = None,
    init_rules: Mapping[type, Callable[[nn.Module], None]] | None = None,
    replace: bool = False,
) -> None:
    """Convert Keras layers of class ``class_name`` (as the file's config names it) with
    ``converter``.

    ``keras_objects`` / ``keras2_objects``: custom_objects for loading such files in Keras 3 /
    tf_keras during live checks (``{"MyLayer": MyLayer}``, or a function returning that, called
    only when a check loads a file, so converting never imports Keras; names a file registers
    under a package, "pkg>MyLayer", are matched by their class part). ``init_rules``: torch
    module type -> Keras-default initialization (parity.init.keras_init_ refuses modules
    without one). ``replace``: allow replacing a built-in or earlier converter for the same class.
    """
    if not isinstance(class_name, str) or not class_name:
        raise ValueError("register_layer: class_name must be a non-empty string")
    if not isinstance(converter, LayerConverter):
        raise TypeError("register_layer: converter must be a parity.plugins.LayerConverter")
    if class_name in CONVERTERS and not replace:
        raise ValueError(
            f"register_layer: {class_name!r} is already converted; pass replace=True to "
            "replace its converter"
        )
    previous = _REGISTERED[class_name][0] if class_name in _REGISTERED else None
    if class_name not in _REGISTERED:
        previous = CONVERTERS.get(class_name)
    CONVERTERS[class_name] = converter
    added_rules = [t for t in (init_rules or {}) if t not in RULES]
    RULES.update(init_rules or {})
    if keras_objects is not None:
        keras_side.PLUGIN_OBJECTS[class_name] = keras_objects
    if keras2_objects is not None:
        keras_side.PLUGIN_OBJECTS_KERAS2[class_name] = keras2_objects
    _REGISTERED[class_name] = (previous, added_rules)


def unregister_layer(class_name: str) -> None:
    """Undo register_layer for ``class_name`` (the converter it replaced, if any, returns)."""
    previous, rules = _REGISTERED.pop(class_name)
    if previous is None:
        CONVERTERS.pop(class_name, None)
    else:
        CONVERTERS[class_name] = previous
    for rule in rules:
        RULES.pop(rule, None)
    for objects in (keras_side.PLUGIN_OBJECTS, keras_side.PLUGIN_OBJECTS_KERAS2):
        objects.pop(class_name, None)


def load_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import each named module (it registers its layers when imported); ImportError names it."""
    for name in modules:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ImportError(f"plug-in {name!r} is not a module name (an absolute dotted name)")
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"plug-in {name!r} cannot be imported: {exc}") from exc
