"""Custom layers: teach parity a Keras class it does not ship, from the user's own code.

A file holding a layer of the user's own (a subclassed keras.layers.Layer) or a Lambda is
refused by name. ``register_layer`` adds a converter for that class name to the generic path's
table, exactly as the built-in families do (parity.ports.registry.LayerConverter: which
weights the class saves, the torch module, the mapping rows, how it is called and what happens
to the mask); optionally the Keras classes themselves, so that ``parity check`` can load the
file in live Keras, Keras-default initializers for the new torch modules (parity.init), and the
converter's ``emit``, so that ``parity port`` writes the layer (its class's source goes into the
generated keras_layers.py; tests/plugin_example.py shows one).

From the command line, ``parity --plugin mypackage.parity_plugin convert ...`` imports the
module (which calls register_layer) before the command runs.

Registration lasts for the process. A model converted with a plug-in layer and saved with
parity.save needs the same plug-in registered to be loaded again.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from parity.ports import CONVERTERS
from parity.ports.registry import (
    Emitted,
    Example,
    InitRule,
    KerasObjects,
    LayerConverter,
    call_drop_mask,
    call_keep_mask,
    no_rows,
    no_weights,
    simple_rows,
    with_bias,
)

__all__ = [
    "Emitted",
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


def register_layer(
    class_name: str,
    converter: LayerConverter,
    *,
    keras_objects: KerasObjects | None = None,
    keras2_objects: KerasObjects | None = None,
    init_rules: Mapping[type, InitRule] | None = None,
    replace: bool = False,
) -> None:
    """Convert Keras layers of class ``class_name`` (as the file's config names it) with
    ``converter``: one entry in the registry every built-in port is in (parity.ports.CONVERTERS).

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
    CONVERTERS.register(
        class_name,
        converter,
        init_rules=init_rules,
        keras_objects=keras_objects,
        keras2_objects=keras2_objects,
        replace=replace,
    )


def unregister_layer(class_name: str) -> None:
    """Undo register_layer for ``class_name`` (the converter it replaced, if any, returns)."""
    CONVERTERS.unregister(class_name)


def load_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import each named module (it registers its layers when imported); ImportError names it."""
    for name in modules:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ImportError(f"plug-in {name!r} is not a module name (an absolute dotted name)")
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"plug-in {name!r} cannot be imported: {exc}") from exc
