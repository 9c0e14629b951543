"""The generic architecture: any Keras model of supported layers, rebuilt from its config.

converter.py  what one layer class needs (LayerConverter) and shared helpers
core.py conv.py pooling.py norm.py recurrent.py merge.py vision.py structure.py
activations.py preprocessing.py noise.py    converters by layer family
table.py      every family's converters in one CONVERTERS table
model.py      GenericConfig, GenericModel (runs the Keras graph), GenericArch
"""

from parity.arch.generic.converter import INPUT_KINDS, Example, LayerConverter
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
from parity.arch.generic.table import CONVERTERS

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
