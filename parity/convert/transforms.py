"""Named layout changes between Keras weights and torch parameters.

Each transform has its inverse, so gradients computed in torch can be mapped back to the Keras
weight they came from. No other code in the project transposes or slices weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


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
