"""The recurrent layers' port: SimpleRNN, LSTM, GRU (reset_after either way), their CuDNN forms and
Bidirectional, shaped like torch's nn.RNN, nn.LSTM and nn.GRU on one base (``KerasRNNBase``, as
torch's nn.RNNBase).

base.py lstm.py gru.py simple_rnn.py   the torch modules
ops.py        the registered operators parity::keras_lstm / keras_rnn (what export traces)
backends/     the LSTM's fast loops (C++, Python, Triton, length-aware) and the choice among them
layouts.py    gate orders and the weight layouts: transforms, Keras 1 and cuDNN normalisations
port.py       the Keras classes: weights, mapping rows, build, call and mask rules, init rules
onnx.py       the operators' ONNX translations
diagnosis.py  what parity check tries when a recurrent conversion fails
"""

from __future__ import annotations

from parity.ports.recurrent.base import KerasRNNBase, operators
from parity.ports.recurrent.diagnosis import DIAGNOSES
from parity.ports.recurrent.gru import GRU
from parity.ports.recurrent.layouts import NORMALISATIONS, TRANSFORMS
from parity.ports.recurrent.lstm import LSTM
from parity.ports.recurrent.onnx import ONNX_TRANSLATIONS
from parity.ports.recurrent.ops import keras_lstm  # registers torch.ops.parity.keras_lstm
from parity.ports.recurrent.port import CONVERTERS, INIT_RULES
from parity.ports.recurrent.simple_rnn import SimpleRNN

__all__ = [
    "CONVERTERS",
    "DIAGNOSES",
    "GRU",
    "INIT_RULES",
    "LSTM",
    "NORMALISATIONS",
    "ONNX_TRANSLATIONS",
    "TRANSFORMS",
    "KerasRNNBase",
    "SimpleRNN",
    "keras_lstm",
    "operators",
]
