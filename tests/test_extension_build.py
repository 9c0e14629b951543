"""The C++ LSTM loop is built at setup, so a first forward needs no compiler and waits on no
lock; where it was not built, a first-use build waits a bounded time on a stale lock, says why
and runs the Python loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity.ports.recurrent.backends import cpp
from tests.conftest import REPO, WEIGHTS

#: A run that waited on the lock would take LOCK_WAIT_SECONDS (60) or, before, forever.
SUBPROCESS_TIMEOUT = 120

FIRST_FORWARD = """
import json, sys, time, warnings
start = time.perf_counter()
import torch, parity
from parity.ports.recurrent.backends import cpp
{setup}
plant = cpp._jit_directory() / cpp.LOCK_NAME
plant.parent.mkdir(parents=True, exist_ok=True)
plant.touch()  # a build killed halfway left its lock
model = parity.load_keras(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with torch.inference_mode():
        probs = model(torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 0, 0]]))
print(json.dumps({{
    "loaded": cpp.loaded(),
    "seconds": time.perf_counter() - start,
    "warnings": [str(w.message) for w in caught],
    "finite": bool(torch.isfinite(probs).all()),
}}))
"""


def _first_forward(tmp_path: Path, setup: str = "") -> dict:
    env = {
        **os.environ,
        "PATH": str(tmp_path / "no-compilers"),  # no c++, no ninja
        "TORCH_EXTENSIONS_DIR": str(tmp_path / "torch_extensions"),
    }
    env.pop(cpp.DISABLE_ENV, None)
    script = FIRST_FORWARD.format(setup=setup)
    model = str(WEIGHTS / "deepmoji_small.keras")
    done = subprocess.run(
        [sys.executable, "-c", script, model],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not cpp.prebuilt_path().is_file(), reason="the setup step did not build it")
def test_first_forward_loads_the_setup_build_without_compiler_or_lock(tmp_path: Path) -> None:
    result = _first_forward(tmp_path)
    assert result["loaded"] and result["finite"]
    assert not any("C++" in w for w in result["warnings"]), result["warnings"]


def test_stale_lock_without_a_setup_build_falls_back_after_a_bounded_wait(tmp_path: Path) -> None:
    setup = f"cpp.PREBUILT_DIR = __import__('pathlib').Path({str(tmp_path / 'empty')!r})\n"
    setup += "cpp.LOCK_WAIT_SECONDS = 1.0\n"
    result = _first_forward(tmp_path, setup)
    assert not result["loaded"] and result["finite"]
    assert any("held" in w and "lock" in w for w in result["warnings"]), result["warnings"]
    assert result["seconds"] < SUBPROCESS_TIMEOUT / 2


def test_library_name_keys_torch_python_source_and_cpu() -> None:
    name = cpp.library_name()
    assert name.startswith(f"parity_lstm_{cpp._capability().lower()}_")
    assert name == cpp.library_name()  # stable within an environment
