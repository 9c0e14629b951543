"""The ported torch layers under their former import path (``parity.layers.LSTM`` and so on).

The layers now live in parity.ports, one file per Keras layer family beside their conversion;
this package keeps the old names importable.
"""

from __future__ import annotations

from parity.ports import (
    ACTIVATIONS,
    GRU,
    KERAS_ACTIVATIONS,
    KERAS_PADDINGS,
    LSTM,
    POOL_PADDINGS,
    RECURRENT_ACTIVATIONS,
    Activation,
    AttentionWeightedAverage,
    AveragePooling1D,
    BatchNormalization,
    Conv1D,
    Dense,
    Flatten,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    KerasRNNBase,
    LayerNormalization,
    MaxPooling1D,
    SimpleRNN,
    SpatialDropout1D,
    get_activation,
    hard_sigmoid,
    recurrent,
)
from parity.ports.recurrent import backends

__all__ = [
    "ACTIVATIONS",
    "GRU",
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
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "KerasRNNBase",
    "LayerNormalization",
    "MaxPooling1D",
    "SimpleRNN",
    "SpatialDropout1D",
    "backends",
    "get_activation",
    "hard_sigmoid",
    "recurrent",
]
