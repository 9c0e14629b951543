"""Layer ports: one file per Keras layer family, each holding, per Keras class, the torch module,
the weights it reads and its mapping rows, build and call (with the mask rule), its Keras init
rule, its ONNX translation where it has one, its diagnosis alternatives and its examples.

registry.py   what one Keras class needs (LayerConverter) and the one registry, CONVERTERS,
              which refuses duplicate class names, for built-ins and plug-ins alike
activations.py core.py conv.py pooling.py norm.py merge.py structure.py wrappers.py noise.py
attention.py preprocessing.py text_preprocessing.py vision.py unit_normalization.py
lambda_layer.py   the families
recurrent/    SimpleRNN, LSTM, GRU and Bidirectional: base, layouts, ops, backends, port entries

Adding a Keras class: a port in its family's file, or a new file and its name in FAMILY_NAMES
(ports/unit_normalization.py is the worked example).
"""

from __future__ import annotations

import importlib

from parity.ports.activations import (
    ACTIVATIONS,
    KERAS_ACTIVATIONS,
    RECURRENT_ACTIVATIONS,
    get_activation,
    hard_sigmoid,
)
from parity.ports.attention import AttentionWeightedAverage
from parity.ports.conv import KERAS_PADDINGS, Conv1D
from parity.ports.core import Activation, Dense, Flatten, SpatialDropout1D
from parity.ports.norm import BatchNormalization, LayerNormalization
from parity.ports.pooling import (
    POOL_PADDINGS,
    AveragePooling1D,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    MaxPooling1D,
)
from parity.ports.recurrent import GRU, LSTM, KerasRNNBase, SimpleRNN
from parity.ports.registry import CONVERTERS, INPUT_KINDS, Example, LayerConverter

#: The family files, in the order their ports are added to CONVERTERS (duplicates refused):
#: adding a family is one name here.
FAMILY_NAMES = (
    "core",
    "conv",
    "pooling",
    "norm",
    "unit_normalization",
    "recurrent",
    "merge",
    "structure",
    "activations",
    "vision",
    "preprocessing",
    "text_preprocessing",
    "noise",
    "attention",
    "wrappers",
    "lambda_layer",
)
FAMILIES = tuple(importlib.import_module(f"{__name__}.{name}") for name in FAMILY_NAMES)
for _family in FAMILIES:
    CONVERTERS.add_family(_family)

__all__ = [
    "ACTIVATIONS",
    "CONVERTERS",
    "FAMILIES",
    "GRU",
    "INPUT_KINDS",
    "KERAS_ACTIVATIONS",
    "KERAS_PADDINGS",
    "LSTM",
    "POOL_PADDINGS",
    "RECURRENT_ACTIVATIONS",
    "Activation",
    "AttentionWeightedAverage",
    "AveragePooling1D",
    "BatchNormalization",
    "Conv1D",
    "Dense",
    "Example",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "KerasRNNBase",
    "LayerConverter",
    "LayerNormalization",
    "MaxPooling1D",
    "SimpleRNN",
    "SpatialDropout1D",
    "get_activation",
    "hard_sigmoid",
]
