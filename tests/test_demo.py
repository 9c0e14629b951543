"""The README's main command works and reports agreement (it is what a new user runs first)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import needs_keras


@needs_keras
@pytest.mark.keras
def test_demo_converts_and_agrees_with_keras(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from reference_keras import demo

    demo.main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "deepmoji_small.safetensors",
        "embedding_dense.safetensors",
    ]
    agree = re.findall(r"predicted labels agree: (\d+)/(\d+)", out)
    assert len(agree) == 2 and all(a == b for a, b in agree), out
    diffs = [float(d) for d in re.findall(r"max \|Keras - PyTorch\| probability: (\S+)", out)]
    assert len(diffs) == 2 and max(diffs) < 1e-6, out
