"""Parity against Keras' own numbers: every golden case, on every device, outputs and gradients.

Golden files hold Keras' outputs and gradients (tests/golden_cases.py makes them), so these run
without TensorFlow; test_live_golden_matches_keras re-runs Keras and cross-checks the files.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import parity
from parity.arch import get_arch
from parity.check import load_golden, tolerance_for
from parity.check.harness import compare
from parity.check.report import Report
from parity.check.run import check, subject_for
from parity.keras.read import read_keras_file
from tests.conftest import SHARED_DATA, needs_keras
from tests.golden_cases import CASES, GoldenCase, keras_golden

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _ids(cases: list[GoldenCase]) -> list[str]:
    return [case.id for case in cases]


def _check(case: GoldenCase, model: torch.nn.Module, device: str = "cpu") -> Report:
    """The CLI's path (`parity check --golden`): subject from the model and its file, then
    the shared harness; no diagnosis (these tests only need the verdict)."""
    subject, _ = subject_for(model, read_keras_file(case.model_file))
    golden = load_golden(case.golden_file)
    return check(subject, golden, device=device, dtype=DTYPES[case.floatx], explain=False)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_golden_outputs_and_gradients(case: GoldenCase, device: str) -> None:
    dtype = DTYPES[case.floatx]
    model = parity.load_keras(case.model_file, arch=case.pair, dtype=dtype)
    report = _check(case, model, device)
    rows = report.rows
    failed = [str(row) for row in rows if not row.passed]
    assert rows and not failed, "\n".join(failed)
    kinds = {row.kind for row in rows}
    has_activations = any(k.startswith("activation/") for k in load_golden(case.golden_file))
    assert kinds == {"output", "gradient"} | ({"activation"} if has_activations else set()), kinds
    # every Keras weight of the pair was compared
    keras_weights = {f"grad/{k}" for k, _, _ in get_arch(case.pair).mapping() if k is not None}
    assert keras_weights <= {row.name for row in rows}


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_golden_catches_a_perturbed_weight(case: GoldenCase) -> None:
    """The comparison can fail: nudge one weight by 1e-3 and some row must fail."""
    dtype = DTYPES[case.floatx]
    model = parity.load_keras(case.model_file, arch=case.pair, dtype=dtype)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert any(not row.passed for row in _check(case, model).rows)


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_live_golden_matches_keras(case: GoldenCase) -> None:
    """Keras, run now on the committed model file, reproduces the committed golden file."""
    golden = load_golden(case.golden_file)
    live = keras_golden(case, write_model=False, ids=golden["ids"])
    assert set(live) == set(golden)
    for key in golden:
        if key in ("ids", "meta"):
            continue
        quantity = "output" if key.startswith("output/") else "gradient"
        tol = tolerance_for(DTYPES[case.floatx], "cpu", quantity)
        row = compare(key, quantity, live[key], golden[key], tol)
        assert row.passed, str(row)


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared data not present")
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_golden_inputs_are_reproducible(case: GoldenCase) -> None:
    """The committed inputs are what the case definition makes (real texts included)."""
    np.testing.assert_array_equal(case.ids(), load_golden(case.golden_file)["ids"])
