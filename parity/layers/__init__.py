"""Ported layers that look exactly like the torch layer they replace, computing what Keras does."""

from __future__ import annotations

from parity.layers.activations import GATE_ACTIVATIONS, get_activation, hard_sigmoid
from parity.layers.attention import AttentionWeightedAverage
from parity.layers.conv import KERAS_PADDINGS, Conv1D
from parity.layers.core import KERAS_ACTIVATIONS, Activation, Dense, Flatten, SpatialDropout1D
from parity.layers.lstm import LSTM
from parity.layers.norm import BatchNormalization, LayerNormalization
from parity.layers.pooling import (
    POOL_PADDINGS,
    AveragePooling1D,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    MaxPooling1D,
)
from parity.layers.rnn import GRU, SimpleRNN

__all__ = [
    "GATE_ACTIVATIONS",
    "GRU",
    "KERAS_ACTIVATIONS",
    "KERAS_PADDINGS",
    "LSTM",
    "POOL_PADDINGS",
    "Activation",
    "AttentionWeightedAverage",
    "AveragePooling1D",
    "BatchNormalization",
    "Conv1D",
    "Dense",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "LayerNormalization",
    "MaxPooling1D",
    "SimpleRNN",
    "SpatialDropout1D",
    "get_activation",
    "hard_sigmoid",
]
