"""The parity harness: run the PyTorch side, map gradients back to Keras names, compare.

Keras is needed only to produce the Keras side live (reference_keras.golden); golden files let
the comparison run where TensorFlow is absent.
"""

from parity.check.harness import Comparison, compare, compare_to_golden, load_golden, torch_side
from parity.check.tolerances import TOLERANCES, Tolerance, tolerance_for

__all__ = [
    "TOLERANCES",
    "Comparison",
    "Tolerance",
    "compare",
    "compare_to_golden",
    "load_golden",
    "tolerance_for",
    "torch_side",
]
