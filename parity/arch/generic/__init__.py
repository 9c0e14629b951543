"""The generic architecture: any Keras model of supported layers, rebuilt from its config.

model.py      GenericConfig, GenericModel (runs the Keras graph over the layer ports), GenericArch

The Keras classes it converts are parity.ports' (CONVERTERS, re-exported here).
"""

from parity.arch.generic.model import (
    GenericArch,
    GenericConfig,
    GenericModel,
    config_from_graph,
    default_rows,
    default_weights,
    mapping_rows,
    module_name,
    unsupported_layers,
)
from parity.ports import CONVERTERS, INPUT_KINDS, Example, LayerConverter

__all__ = [
    "CONVERTERS",
    "INPUT_KINDS",
    "Example",
    "GenericArch",
    "GenericConfig",
    "GenericModel",
    "LayerConverter",
    "config_from_graph",
    "default_rows",
    "default_weights",
    "mapping_rows",
    "module_name",
    "unsupported_layers",
]
