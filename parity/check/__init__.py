"""The parity harness: run the PyTorch side, map gradients back to Keras names, compare.

``check(subject_for(model, kfile)[0], golden)`` is what `parity check` runs and what the tests
call: activations (per Keras layer with a torch counterpart), outputs and gradients compared
under the one tolerance table, a report, and a diagnosis when it fails. Keras is needed only to
produce the Keras side live (parity.check.keras_side, which imports it on first use); golden
files let the comparison run where TensorFlow is absent.
"""

from parity.check.diagnose import ALTERNATIVES, diagnose
from parity.check.harness import (
    Comparison,
    Subject,
    compare,
    compare_to_golden,
    load_golden,
    torch_side,
)
from parity.check.report import Report
from parity.check.run import check, subject_for
from parity.check.tolerances import TOLERANCES, Tolerance, tolerance_for

__all__ = [
    "ALTERNATIVES",
    "TOLERANCES",
    "Comparison",
    "Report",
    "Subject",
    "Tolerance",
    "check",
    "compare",
    "compare_to_golden",
    "diagnose",
    "load_golden",
    "subject_for",
    "tolerance_for",
    "torch_side",
]
