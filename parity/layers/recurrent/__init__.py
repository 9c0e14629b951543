"""The Keras-computing recurrent layers, shaped like torch's nn.LSTM, nn.GRU and nn.RNN, on one
base (``KerasRNNBase``, as torch's nn.RNNBase)."""

from __future__ import annotations

from parity.layers.recurrent.base import KerasRNNBase, operators
from parity.layers.recurrent.gru import GRU
from parity.layers.recurrent.lstm import LSTM
from parity.layers.recurrent.ops import keras_lstm  # registers torch.ops.parity.keras_lstm
from parity.layers.recurrent.simple_rnn import SimpleRNN

__all__ = ["GRU", "LSTM", "KerasRNNBase", "SimpleRNN", "keras_lstm", "operators"]
