"""The C++ inference loop (parity/ports/recurrent/backends/cpp.py, csrc/lstm_cpu.cpp) computes what
the Python fast loop and the reference loop compute, and everything falls back to Python without
it.

CPU float32 only: that is all the C++ loop runs. The sweep covers gates, layers, directions,
batch sizes, masks (none, pre- and post-padded, holes, all-masked rows), both masked-output
modes, oneDNN-packed and dense weights, the directions in parallel or one after the other, and
input projections computed all at once or a step at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from parity.check import tolerance_for
from parity.ports import LSTM
from parity.ports.activations import CppTail
from parity.ports.recurrent.backends import cpp as _lstm_cpp
from parity.ports.recurrent.backends import prepare

#: The fallback tests run everywhere; the others need the extension built here.
needs_ext = pytest.mark.skipif(not _lstm_cpp.available(), reason="C++ LSTM loop not built")

TOL = tolerance_for(torch.float32, "cpu", "output")
STEPS, INPUT, HIDDEN = 9, 5, 20  # HIDDEN: one full AVX-512 vector and a partial one


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Counts the calls of backends.cpp's function ``name`` (one per layer)."""
    calls: list[int] = []
    run = getattr(_lstm_cpp, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return run(*args, **kwargs)

    monkeypatch.setattr(_lstm_cpp, name, counted)
    return calls


@pytest.fixture
def cpp_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the layers run by the C++ loop, so a test knows it did not fall back."""
    return _count_calls(monkeypatch, "run_layer")


def _masks(batch: int) -> dict[str, torch.Tensor | None]:
    t = torch.arange(STEPS)
    lengths = torch.tensor([STEPS, 1, 3, 0, STEPS - 2] * 7)[:batch]  # 0: an all-masked row
    g = torch.Generator().manual_seed(5)
    holes = torch.rand(batch, STEPS, generator=g) > 0.4
    holes[-1] = False
    return {
        "none": None,
        "pre": t[None, :] >= STEPS - lengths[:, None],
        "post": t[None, :] < lengths[:, None],
        "holes": holes,
        "all_masked": torch.zeros(batch, STEPS, dtype=torch.bool),
    }


def _run(lstm: LSTM, x: torch.Tensor, hx: tuple, mask: torch.Tensor | None, impl: str) -> tuple:
    """(output, h_n, c_n) of one no-grad forward through the "python" fast loop, "cpp" or
    "reference"."""
    lstm.impl = "reference" if impl == "reference" else "masked"  # every step: the loops here
    with torch.no_grad():
        if impl == "python":
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(_lstm_cpp, "available", lambda: False)
                out, (h_n, c_n) = lstm(x, hx, mask=mask)
        else:
            out, (h_n, c_n) = lstm(x, hx, mask=mask)
    return out, h_n, c_n


def _assert_close(ours: tuple, expected: tuple, where: str) -> None:
    for what, a, b in zip(("output", "h_n", "c_n"), ours, expected, strict=True):
        torch.testing.assert_close(
            a, b, rtol=TOL.rtol, atol=TOL.atol, msg=lambda m, w=f"{where} {what}": f"{w}: {m}"
        )


SWEEP = list(
    itertools.product(
        ["hard_sigmoid_keras2", "hard_sigmoid_keras3", "sigmoid"],
        [(1, False), (1, True), (2, True)],  # (num_layers, bidirectional)
        [1, 3, 32],  # batch
        [None, False],  # zero_output_for_mask: default, or a plain LSTM's carried outputs
    )
)


@pytest.fixture(params=["onednn", "dense"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Weights packed for oneDNN (where it applies) or dense, as prepare.pack makes them."""
    monkeypatch.setattr(prepare, "USE_ONEDNN", request.param == "onednn")
    return request.param


@needs_ext
@pytest.mark.parametrize(("gate", "shape", "batch", "zero_output"), SWEEP)
def test_cpp_equals_python_and_reference(gate, shape, batch, zero_output, backend, cpp_calls):
    num_layers, bidirectional = shape
    torch.manual_seed(0)
    lstm = LSTM(INPUT, HIDDEN, num_layers, batch_first=True, bidirectional=bidirectional,
                gate_activation=gate, zero_output_for_mask=zero_output,
                bias=num_layers == 1)  # fmt: skip
    n_states = num_layers * (2 if bidirectional else 1)
    x = 3 * torch.randn(batch, STEPS, INPUT)  # reaches the flat parts of the hard sigmoids
    hx = tuple(torch.randn(n_states, batch, HIDDEN) for _ in range(2))
    for mask_name, mask in _masks(batch).items():
        calls = len(cpp_calls)
        cpp = _run(lstm, x, hx, mask, "cpp")
        assert len(cpp_calls) == calls + num_layers, "the C++ loop did not run"
        _assert_close(cpp, _run(lstm, x, hx, mask, "python"), f"{mask_name} vs python")
        _assert_close(cpp, _run(lstm, x, hx, mask, "reference"), f"{mask_name} vs reference")
        if mask is not None and lstm.zero_output_for_mask:  # exact zeros at masked steps
            assert torch.all(cpp[0][~mask] == 0)


@needs_ext
@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("chunk_rows", [1, 4, 0])  # a step at a time, partial chunks, all
def test_schedules_agree(parallel, chunk_rows, monkeypatch, cpp_calls):
    """Directions on their own threads or one after the other; projections in chunks or not."""
    monkeypatch.setattr(_lstm_cpp, "CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(_lstm_cpp, "parallel_directions", lambda n_dir: parallel)
    torch.manual_seed(1)
    lstm = LSTM(INPUT, HIDDEN, 2, bidirectional=True, gate_activation="hard_sigmoid_keras2")
    x = 3 * torch.randn(STEPS, 3, INPUT)
    hx = tuple(torch.randn(4, 3, HIDDEN) for _ in range(2))
    mask = _masks(3)["holes"]
    _assert_close(_run(lstm, x, hx, mask, "cpp"), _run(lstm, x, hx, mask, "reference"), "holes")
    assert cpp_calls


@needs_ext
@pytest.mark.parametrize("batch", [1, 8, 32])
def test_every_batch_runs_directions_on_their_threads(batch, monkeypatch, cpp_calls):
    """With two threads, a bidirectional layer runs each direction's whole time loop as one
    task at every batch size (no loop that meets the other thread every step), and the
    answer does not depend on the thread count, the projection chunk or whether the threads
    are pinned to their CPUs: whatever a machine gives the loop, the outputs are the same to
    the last bit."""
    torch.manual_seed(4)
    lstm = LSTM(16, 64, 2, batch_first=True, bidirectional=True,
                gate_activation="hard_sigmoid_keras2")  # fmt: skip
    x = torch.randn(batch, STEPS, 16)
    mask = _masks(batch)["holes"] if batch > 1 else None  # one row: its holes are all steps
    outputs = []
    threads_before = torch.get_num_threads()
    try:
        for threads, chunk_rows, pin in ((2, 512, True), (1, 512, True), (2, 4, True),
                                         (1, 0, True), (2, 512, False)):  # fmt: skip
            torch.set_num_threads(threads)
            _lstm_cpp.pin_threads(pin)
            assert _lstm_cpp.parallel_directions(2)  # one task per direction, 1 or 2 threads
            monkeypatch.setattr(_lstm_cpp, "CHUNK_ROWS", chunk_rows)
            with torch.no_grad():
                out, (h, c) = lstm(x, mask=mask)
            outputs.append((out, h, c))
    finally:
        torch.set_num_threads(threads_before)
        _lstm_cpp.pin_threads(True)
    assert len(cpp_calls) == 2 * len(outputs), "the C++ loop did not run"
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other, strict=True):
            assert torch.equal(a, b)
    lstm.impl = "reference"
    with torch.no_grad():
        expected = lstm(x, mask=mask)
    _assert_close((outputs[0][0], *outputs[0][1:]), (expected[0], *expected[1]), f"B{batch}")


def _affinities() -> dict[str, str]:
    """Each thread of this process: its allowed CPUs, as the kernel lists them."""
    tasks = Path("/proc/self/task")
    found = {}
    for task in tasks.iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            for line in (task / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    found[task.name] = line.split(":", 1)[1].strip()
    return found


@needs_ext
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux's /proc")
@pytest.mark.parametrize("allowed", ["all", "one"])
def test_pinned_threads_get_their_cpus_back(allowed, monkeypatch):
    """Pinned for a layer, every thread has its own affinity back afterwards (forward and
    backward, two threads), also when the process may run on one CPU only (there is then no
    second CPU to pin to); the numbers equal the unpinned loop's to the last bit."""
    calls = _count_calls(monkeypatch, "train_forward")
    own = os.sched_getaffinity(0)
    if allowed == "one":
        try:
            os.sched_setaffinity(0, {min(own)})
        except OSError as exc:  # a sandbox that forbids it
            pytest.skip(f"cannot set this process' affinity: {exc}")
    threads_before = torch.get_num_threads()
    torch.manual_seed(6)
    lstm = LSTM(8, 32, bidirectional=True, gate_activation="hard_sigmoid_keras2")
    x = torch.randn(3, STEPS, 8)
    try:
        torch.set_num_threads(2)
        results = []
        for pin in (False, True):
            _lstm_cpp.pin_threads(pin)
            before = _affinities()
            lstm.zero_grad()
            out, _ = lstm(x)
            out.square().sum().backward()
            after = _affinities()
            assert {t: after[t] for t in before if t in after} == {
                t: before[t] for t in before if t in after
            }
            results.append((out.detach(), *(p.grad.clone() for p in lstm.parameters())))
    finally:
        _lstm_cpp.pin_threads(True)
        torch.set_num_threads(threads_before)
        os.sched_setaffinity(0, own)
    assert len(calls) == 2, "the C++ training loop did not run"
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@needs_ext
@pytest.mark.parametrize(
    ("gate", "activation"),
    [("sigmoid", "relu"), ("sigmoid", "linear"), ("tanh", "sigmoid"), ("linear", "tanh")],
)
def test_other_activations(gate, activation, cpp_calls):
    torch.manual_seed(2)
    lstm = LSTM(INPUT, HIDDEN, bidirectional=True, gate_activation=gate, activation=activation)
    x = torch.randn(STEPS, 3, INPUT)
    hx = tuple(0.5 * torch.randn(2, 3, HIDDEN) for _ in range(2))
    mask = _masks(3)["pre"]
    _assert_close(_run(lstm, x, hx, mask, "cpp"), _run(lstm, x, hx, mask, "reference"), "pre")
    assert cpp_calls


@needs_ext
def test_falls_back_where_it_does_not_apply(cpp_calls):
    """float64, an activation with an affine part, or autograd: the Python loops run."""
    x = torch.randn(STEPS, 2, INPUT)
    cases = [
        (LSTM(INPUT, HIDDEN, dtype=torch.float64), x.double()),
        (LSTM(INPUT, HIDDEN, activation="hard_sigmoid_keras2"), x),
    ]
    for lstm, inp in cases:
        with torch.no_grad():
            lstm(inp)
    LSTM(INPUT, HIDDEN)(x)  # records gradients: the autograd loop
    assert not cpp_calls


def _ulps(ours: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Distance in units of float32's spacing at the exact value."""
    spacing = torch.finfo(torch.float32).eps * exact.abs().clamp_min(1e-30)
    return (ours.double() - exact).abs() / spacing


@needs_ext
@pytest.mark.parametrize(("tail", "exact"), [(CppTail.TANH, torch.tanh),
                                             (CppTail.SIGMOID, torch.sigmoid)])  # fmt: skip
def test_vector_tails_are_accurate(tail, exact):
    """The step's vectorized tanh and sigmoid against float64, densely over the range that
    matters, tiny arguments included: a few ulp at most, as std::tanh."""
    x = torch.cat(
        [
            torch.linspace(-12.0, 12.0, 2_000_001),
            torch.logspace(-30, 0, 100_001),
            -torch.logspace(-30, 0, 100_001),
            torch.tensor([0.0, -0.0, 20.0, -20.0, 100.0, -100.0, float("inf"), float("-inf")]),
        ]
    )
    ours = torch.ops.parity_lstm.apply_tail(x, tail)
    ulps = _ulps(ours, exact(x.double()))
    assert ulps.max().item() <= 2.0, f"worst at x={x[ulps.argmax()].item()}"


@needs_ext
def test_clamp_tail():
    x = torch.tensor([-2.0, -0.0, 0.25, 1.0, 3.0, float("nan")])
    ours = torch.ops.parity_lstm.apply_tail(x, CppTail.CLAMP01)
    torch.testing.assert_close(ours, x.clamp(0.0, 1.0), equal_nan=True)


_FALLBACK_SCRIPT = textwrap.dedent(
    """
    import warnings
    warnings.simplefilter("error")  # the fallback must not warn on an explicit opt-out
    import torch
    import parity
    from parity.ports import LSTM
    from parity.ports.recurrent.backends import cpp as _lstm_cpp
    assert not _lstm_cpp.available()
    torch.manual_seed(0)
    lstm = LSTM(5, 7, bidirectional=True, gate_activation="hard_sigmoid_keras2")
    x = torch.randn(6, 2, 5)
    with torch.no_grad():
        fast = lstm(x)[0]
        lstm.impl = "reference"
        ref = lstm(x)[0]
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    print("ok")
    """
)


def test_no_ext_env_falls_back():
    """PARITY_NO_EXT=1: no build, no warning, the Python loop runs (fresh process)."""
    env = {**_clean_env(), _lstm_cpp.DISABLE_ENV: "1"}
    result = subprocess.run(
        [sys.executable, "-c", _FALLBACK_SCRIPT], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_broken_compiler_warns_and_falls_back(tmp_path):
    """A real failed build (no usable compiler, empty extensions cache): import works, the
    forward warns once and runs the Python loop (fresh process)."""
    script = _FALLBACK_SCRIPT.replace('warnings.simplefilter("error")', "")
    # no library from the setup step: the first use must build, and cannot
    script = script.replace(
        "assert not _lstm_cpp.available()",
        f"_lstm_cpp.PREBUILT_DIR = __import__('pathlib').Path({str(tmp_path / 'none')!r})",
    )
    script += textwrap.dedent(
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.no_grad():
                lstm(x)
        assert not caught, caught  # warned once, on the first forward
        assert not _lstm_cpp.available()
        """
    )
    env = {**_clean_env(), "CXX": "/nonexistent/c++", "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", script], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
    assert result.stderr.count("C++ LSTM loop is unavailable") == 1, result.stderr


def test_build_failure_warns_once(monkeypatch, tmp_path):
    """The build raising (here: as torch does without ninja) gives one warning, then the
    Python loop."""

    def no_ninja(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.delenv(_lstm_cpp.DISABLE_ENV, raising=False)
    monkeypatch.setattr(cpp_extension, "load", no_ninja)
    monkeypatch.setattr(_lstm_cpp, "_available", None)
    monkeypatch.setattr(_lstm_cpp, "PREBUILT_DIR", tmp_path)  # no library from the setup step
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "torch_extensions"))
    torch.manual_seed(0)
    lstm = LSTM(INPUT, HIDDEN, gate_activation="hard_sigmoid_keras2")
    x = torch.randn(STEPS, 2, INPUT)
    with pytest.warns(RuntimeWarning, match="Ninja is required"), torch.no_grad():
        fast = lstm(x)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            lstm(x)
    assert _lstm_cpp.available() is False
    lstm.impl = "reference"
    with torch.no_grad():
        ref = lstm(x)[0]
    torch.testing.assert_close(fast, ref, rtol=TOL.rtol, atol=TOL.atol)


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != _lstm_cpp.DISABLE_ENV}
