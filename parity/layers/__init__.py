"""Ported layers that look exactly like the torch layer they replace, computing what Keras does."""

from __future__ import annotations

from parity.layers.activations import GATE_ACTIVATIONS, get_activation, hard_sigmoid
from parity.layers.attention import AttentionWeightedAverage
from parity.layers.lstm import LSTM

__all__ = ["GATE_ACTIVATIONS", "LSTM", "AttentionWeightedAverage", "get_activation", "hard_sigmoid"]
