"""Named layout changes between Keras weights and torch parameters.

Each transform has its inverse, so gradients computed in torch can be mapped back to the Keras
weight they came from. No other code in the project transposes or slices weights. The generic
ones are here; a layer port adds its own (``TRANSFORMS`` and ``NORMALISATIONS`` in its family's
file, registered with it by parity.ports.registry), and a name is never given twice.
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


#: (Keras class as stored, number of arrays stored) -> normalisation to the Keras 2+ layout.
Normalisation = Callable[[list[np.ndarray]], list[np.ndarray]]
NORMALISATIONS: dict[tuple[str, int], Normalisation] = {}


def register(
    transforms: dict[str, Transform], normalisations: dict[tuple[str, int], Normalisation]
) -> None:
    """Add a port's transforms and normalisations; a name or key given twice is refused."""
    twice = sorted(set(transforms) & set(TRANSFORMS)) + sorted(
        f"{cls}/{n}" for cls, n in set(normalisations) & set(NORMALISATIONS)
    )
    if twice:
        raise ValueError(f"weight layouts registered twice: {twice}")
    TRANSFORMS.update(transforms)
    NORMALISATIONS.update(normalisations)


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
