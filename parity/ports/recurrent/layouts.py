"""The recurrent layers' weight layouts: gate orders (Keras, Keras 1, torch, ONNX) and the named
transforms and normalisations between them.

Keras 1 stored an LSTM or GRU as per-gate (W, U, b) triples, and CuDNNLSTM/CuDNNGRU files hold
cuDNN's layout with doubled biases: both are normalised to the Keras 2+ layout before mapping
(``NORMALISATIONS``), so one set of mapping rows (parity.ports.recurrent.port) serves every
version. The GRU's gate blocks differ between Keras (z, r, h) and torch (r, z, n).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from parity.conventions import (
    GRU_GATES,
    KERAS1_GRU_GATE_ORDER,
    KERAS1_LSTM_GATE_ORDER,
    KERAS_LSTM_GATE_ORDER,
)
from parity.convert.transforms import Transform
from parity.errors import ConversionError

#: torch's LSTM gate blocks (i, f, g, o) are Keras' (i, f, c, o): weights map without reordering.
TORCH_LSTM_GATE_ORDER = KERAS_LSTM_GATE_ORDER
#: ONNX's LSTM operator stacks its gates i, o, f, c.
ONNX_LSTM_GATE_ORDER = ("i", "o", "f", "c")
#: Keras' GRU stacks z, r, h (KERAS1_GRU_GATE_ORDER, unchanged since); torch's and parity's r, z, n.
KERAS_GRU_GATE_ORDER = KERAS1_GRU_GATE_ORDER
TORCH_GRU_GATE_ORDER = ("r", "z", "h")
#: ONNX's GRU operator stacks z, r, h, as Keras does.
ONNX_GRU_GATE_ORDER = KERAS_GRU_GATE_ORDER


def blocks(source: tuple[str, ...], target: tuple[str, ...]) -> tuple[int, ...]:
    """Which of ``source``'s gate blocks stands at each position of ``target``."""
    return tuple(source.index(gate) for gate in target)


def _swap_first_two_blocks(array: np.ndarray) -> np.ndarray:
    # Keras GRU gates z, r, h <-> torch r, z, n along the last axis (its own inverse).
    parts = np.split(array, GRU_GATES, axis=-1)
    order = blocks(KERAS_GRU_GATE_ORDER, TORCH_GRU_GATE_ORDER)
    return np.concatenate([parts[i] for i in order], axis=-1)


def _gru_kernel_to_torch(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(_swap_first_two_blocks(array).T)


def _gru_kernel_to_keras(array: np.ndarray) -> np.ndarray:
    return _swap_first_two_blocks(np.ascontiguousarray(array.T))


TRANSFORMS: dict[str, Transform] = {
    "gru_kernel": Transform(_gru_kernel_to_torch, _gru_kernel_to_keras),
    "gru_bias": Transform(_swap_first_two_blocks, _swap_first_two_blocks),
}


# --- normalisations: old layouts of a whole layer's weights -> the Keras 2+ layout ------------
# They run before mapping, on the arrays one layer saved, so the mapping table only ever sees
# kernel / recurrent_kernel / bias in Keras 2+ layout. Each consumes every array it is given.


def _fuse_gates(arrays: list[np.ndarray], stored: tuple[str, ...], fused: tuple[str, ...]):
    """Keras 1 per-gate (W, U, b) triples in ``stored`` gate order -> fused kernel,
    recurrent_kernel, bias with gate blocks in ``fused`` order."""
    by_gate = {gate: arrays[3 * i : 3 * i + 3] for i, gate in enumerate(stored)}
    shapes = {tuple(a.shape) for gate in stored for a in by_gate[gate][:1]}
    if len(shapes) != 1:
        raise ConversionError(f"per-gate input kernels differ in shape: {sorted(shapes)}")
    return [np.concatenate([by_gate[g][part] for g in fused], axis=-1) for part in range(3)]


def _keras1_lstm(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return _fuse_gates(arrays, KERAS1_LSTM_GATE_ORDER, KERAS_LSTM_GATE_ORDER)


def _keras1_gru(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return _fuse_gates(arrays, KERAS1_GRU_GATE_ORDER, KERAS_GRU_GATE_ORDER)


def _cudnn_kernel(kernel: np.ndarray, gates: int) -> np.ndarray:
    """A CuDNN layer's (fan_in, gates * units) kernel -> the Keras LSTM/GRU kernel.

    Keras' CuDNNLSTM/CuDNNGRU hand each gate's (fan_in, units) block to cuDNN flattened in C
    order *without* transposing (tf_keras gru_lstm_utils.canonical_to_params), and cuDNN reads
    that memory as its (units, fan_in) matrix W, computing W @ x. So the equivalent Keras block is
    block.reshape(units, fan_in).T: a reshuffle, not the identity (for the square recurrent
    blocks it is the transpose).
    """
    fan_in = kernel.shape[0]
    blocks = np.split(kernel, gates, axis=-1)
    return np.concatenate([b.reshape(b.shape[1], fan_in).T for b in blocks], axis=-1)


def _cudnn_lstm(arrays: list[np.ndarray]) -> list[np.ndarray]:
    # cuDNN keeps an input and a recurrent bias (8u,), both trained: they stay two weights
    # (kernel, recurrent_kernel, bias, recurrent_bias), which the LSTM adds.
    kernel, recurrent, bias = arrays
    half = bias.shape[0] // 2
    if bias.ndim != 1 or 2 * half != bias.shape[0] or half != recurrent.shape[-1]:
        raise ConversionError(f"CuDNNLSTM bias has shape {bias.shape}, expected (8 * units,)")
    gates = len(KERAS_LSTM_GATE_ORDER)
    return [
        _cudnn_kernel(kernel, gates),
        _cudnn_kernel(recurrent, gates),
        bias[:half],
        bias[half:],
    ]


def _cudnn_gru(arrays: list[np.ndarray]) -> list[np.ndarray]:
    # CuDNNGRU's (6u,) bias = [input; recurrent] = GRU(reset_after=True)'s (2, 3u) bias; gate
    # blocks are in Keras' z, r, h order (the layer reorders them for cuDNN when it runs).
    kernel, recurrent, bias = arrays
    if bias.ndim != 1 or bias.shape[0] != 2 * recurrent.shape[-1]:
        raise ConversionError(f"CuDNNGRU bias has shape {bias.shape}, expected (6 * units,)")
    return [
        _cudnn_kernel(kernel, GRU_GATES),
        _cudnn_kernel(recurrent, GRU_GATES),
        bias.reshape(2, -1),
    ]


#: (Keras class as stored, number of arrays stored) -> normalisation to the Keras 2+ layout.
NORMALISATIONS: dict[tuple[str, int], Callable[[list[np.ndarray]], list[np.ndarray]]] = {
    ("LSTM", 12): _keras1_lstm,
    ("GRU", 9): _keras1_gru,
    ("CuDNNLSTM", 3): _cudnn_lstm,
    ("CuDNNGRU", 3): _cudnn_gru,
}
