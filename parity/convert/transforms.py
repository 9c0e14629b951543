"""Named layout changes between Keras weights and torch parameters.

Each transform has its inverse, so gradients computed in torch can be mapped back to the Keras
weight they came from. No other code in the project transposes or slices weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from parity.conventions import (
    GRU_GATES,
    KERAS1_GRU_GATE_ORDER,
    KERAS1_LSTM_GATE_ORDER,
    KERAS_LSTM_GATE_ORDER,
)
from parity.errors import ConversionError


@dataclass(frozen=True)
class Transform:
    """keras -> torch layout (``to_torch``) and back (``to_keras``)."""

    to_torch: Callable[[np.ndarray], np.ndarray]
    to_keras: Callable[[np.ndarray], np.ndarray]


def _identity(array: np.ndarray) -> np.ndarray:
    return array


def _transpose(array: np.ndarray) -> np.ndarray:
    # Keras Dense/RNN kernels are (in, out); torch Linear/RNN weights are (out, in).
    return np.ascontiguousarray(array.T)


TRANSFORMS: dict[str, Transform] = {
    "identity": Transform(_identity, _identity),
    "transpose": Transform(_transpose, _transpose),
}

#: A mapping row whose Keras side is None fills a torch parameter Keras does not have with this
#: constant: e.g. torch LSTM's second bias (bias_hh), which Keras folds into its single bias.
CONSTANT_FILLS: dict[str, Callable[[tuple[int, ...]], np.ndarray]] = {
    "zeros": lambda shape: np.zeros(shape),
}


def _conv1d_kernel(array: np.ndarray) -> np.ndarray:
    # Keras Conv1D kernel (k, in, out) <-> torch Conv1d weight (out, in, k): reverse the axes.
    return np.ascontiguousarray(array.transpose(2, 1, 0))


def _swap_first_two_blocks(array: np.ndarray) -> np.ndarray:
    # Keras GRU gates z, r, h <-> torch r, z, n along the last axis (its own inverse).
    z, r, h = np.split(array, GRU_GATES, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


def _gru_kernel_to_torch(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(_swap_first_two_blocks(array).T)


def _gru_kernel_to_keras(array: np.ndarray) -> np.ndarray:
    return _swap_first_two_blocks(np.ascontiguousarray(array.T))


TRANSFORMS.update(
    {
        "conv1d_kernel": Transform(_conv1d_kernel, _conv1d_kernel),
        "gru_kernel": Transform(_gru_kernel_to_torch, _gru_kernel_to_keras),
        "gru_bias": Transform(_swap_first_two_blocks, _swap_first_two_blocks),
    }
)


def _conv2d_kernel_to_torch(array: np.ndarray) -> np.ndarray:
    # Keras Conv2D kernel (kh, kw, in, out) -> torch Conv2d weight (out, in, kh, kw). The same
    # permutation takes Conv2DTranspose's (kh, kw, out, in) to ConvTranspose2d's (in, out, kh, kw).
    return np.ascontiguousarray(array.transpose(3, 2, 0, 1))


def _conv2d_kernel_to_keras(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))


def _depthwise2d_kernel(array: np.ndarray) -> np.ndarray:
    # Keras DepthwiseConv2D kernel (kh, kw, in, mult) <-> parity's DepthwiseConv2D weight
    # (in, mult, kh, kw) (torch's grouped (in * mult, 1, kh, kw) before flattening, so the
    # inverse needs no sizes): swap the two pairs of axes, its own inverse.
    return np.ascontiguousarray(array.transpose(2, 3, 0, 1))


TRANSFORMS.update(
    {
        "conv2d_kernel": Transform(_conv2d_kernel_to_torch, _conv2d_kernel_to_keras),
        "conv2d_transpose_kernel": Transform(_conv2d_kernel_to_torch, _conv2d_kernel_to_keras),
        "depthwise2d_kernel": Transform(_depthwise2d_kernel, _depthwise2d_kernel),
    }
)


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
    return _fuse_gates(arrays, KERAS1_GRU_GATE_ORDER, KERAS1_GRU_GATE_ORDER)


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


def normalise_layer_weights(
    source_class: str, inner_source_class: str | None, arrays: list[np.ndarray], expected: int
) -> list[np.ndarray]:
    """One layer's stored arrays in the Keras 2+ layout; ``source_class`` as the file names it
    (a wrapper's halves are normalised by the wrapped ``inner_source_class``)."""
    if inner_source_class is not None:
        half = len(arrays) // 2
        if 2 * half != len(arrays):
            return arrays  # the count check reports it
        return [
            *normalise_layer_weights(inner_source_class, None, arrays[:half], expected // 2),
            *normalise_layer_weights(inner_source_class, None, arrays[half:], expected // 2),
        ]
    how = NORMALISATIONS.get((source_class, len(arrays)))
    if how is None or (len(arrays) == expected and not source_class.startswith("CuDNN")):
        return arrays
    return how(arrays)
