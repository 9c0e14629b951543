"""Ported layers that look exactly like the torch layer they replace, computing what Keras does."""

from __future__ import annotations

from parity.layers.activations import (
    ACTIVATIONS,
    KERAS_ACTIVATIONS,
    RECURRENT_ACTIVATIONS,
    get_activation,
    hard_sigmoid,
)
from parity.layers.attention import AttentionWeightedAverage
from parity.layers.conv import KERAS_PADDINGS, Conv1D
from parity.layers.core import Activation, Dense, Flatten, SpatialDropout1D
from parity.layers.norm import BatchNormalization, LayerNormalization
from parity.layers.pooling import (
    POOL_PADDINGS,
    AveragePooling1D,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    MaxPooling1D,
)
from parity.layers.recurrent import GRU, LSTM, KerasRNNBase, SimpleRNN

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
    "get_activation",
    "hard_sigmoid",
]
