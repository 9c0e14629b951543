"""The Keras-computing recurrent layers, shaped like torch's nn.LSTM, nn.GRU and nn.RNN, on one
base (``KerasRNNBase``, as torch's nn.RNNBase)."""

from __future__ import annotations

from parity.ports.recurrent.base import KerasRNNBase, operators
from parity.ports.recurrent.gru import GRU
from parity.ports.recurrent.lstm import LSTM
from parity.ports.recurrent.ops import keras_lstm  # registers torch.ops.parity.keras_lstm
from parity.ports.recurrent.simple_rnn import SimpleRNN

__all__ = ["GRU", "LSTM", "KerasRNNBase", "SimpleRNN", "keras_lstm", "operators"]
