"""The length-aware loop (parity/ports/recurrent/backends/packed.py) computes what the reference
loop computes, in inference and training, for every padding it accepts, and hands rows with holes to
the other loops."""

from __future__ import annotations

import copy

import pytest
import torch

from parity.check import tolerance_for
from parity.ports import LSTM
from parity.ports.recurrent.backends import cpp, packed, prepare
from tests.lstm_oracle import assert_runs_close, outputs_and_grads

_TOL = tolerance_for(torch.float32, "cpu", "output")
STEPS = 11


def _mask(batch: int) -> torch.Tensor:
    """Pre-, post- and both-sided padding, full rows, one-token and all-padding rows."""
    t = torch.arange(STEPS)
    starts = torch.tensor([0, 4, 0, 3, 0, 10, 0, 2])[:batch]
    lengths = torch.tensor([STEPS, 7, 5, 4, 0, 1, 1, 9])[:batch]
    return (t[None, :] >= starts[:, None]) & (t[None, :] < (starts + lengths)[:, None])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("zero_output", [True, False])
@pytest.mark.parametrize("gate", ["hard_sigmoid_keras2", "sigmoid"])
@pytest.mark.parametrize("steps_in", ["cpp", "python"])
def test_packed_loop_matches_reference(
    dtype: torch.dtype,
    bidirectional: bool,
    zero_output: bool,
    gate: str,
    steps_in: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every form of the steps: C++ (where built; float32) with the directions on their
    threads, and Python."""
    if steps_in == "python":
        monkeypatch.setattr(cpp, "applies", lambda *args, **kwargs: False)
    elif dtype != torch.float32 or not cpp.available():
        pytest.skip("the C++ steps run float32 only, where the extension is built")
    preps: list[type] = []
    run_layer = packed.run_layer

    def spied(prep: object, *args: object, **kwargs: object) -> object:
        preps.append(type(prep))
        return run_layer(prep, *args, **kwargs)

    monkeypatch.setattr(packed, "run_layer", spied)
    torch.manual_seed(0)
    lstm = LSTM(
        6,
        20,
        num_layers=2,
        batch_first=True,
        bidirectional=bidirectional,
        gate_activation=gate,
        zero_output_for_mask=zero_output,
        dtype=dtype,
    )
    x = torch.randn(8, STEPS, 6, dtype=dtype)
    hx = tuple(torch.randn(2 * lstm.num_directions, 8, 20, dtype=dtype) for _ in range(2))
    mask = _mask(8)
    results = {}
    for impl in ("reference", "packed"):
        lstm.impl = impl
        with torch.no_grad():
            out, (h, c) = lstm(x, hx, mask=mask)
        results[impl] = (out, h, c)
    tol = {"atol": _TOL.atol, "rtol": _TOL.rtol} if dtype == torch.float32 else {}
    for a, b in zip(results["packed"], results["reference"], strict=True):
        torch.testing.assert_close(a, b, **tol)
    assert set(preps) == {prepare.Packed}, "the length-aware loop did not run in the expected form"


def test_contiguous_rows_refuses_holes() -> None:
    mask = _mask(8).t()  # (T, B)
    start, lengths = packed.contiguous_rows(mask)
    assert lengths.tolist() == [STEPS, 7, 5, 4, 0, 1, 1, 9]
    assert start[1] == 4 and start[5] == 10
    mask[5, 0] = False  # a hole in row 0
    assert packed.contiguous_rows(mask) is None


def test_packed_runs_the_packed_loop_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    run = packed.run_layer

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return run(*args, **kwargs)

    monkeypatch.setattr(packed, "run_layer", counted)
    lstm = LSTM(3, 4, batch_first=True, bidirectional=True, impl="packed").eval()
    x = torch.randn(8, STEPS, 3)
    with torch.no_grad():
        lstm(x, mask=_mask(8))
        assert calls == [1]
        holes = _mask(8)
        holes[0, 3] = False
        lstm(x, mask=holes)  # a row with a hole: the usual loops
        lstm(x)  # no mask: nothing to skip
    assert calls == [1]


@pytest.mark.parametrize("impl", ["fast", "masked"])
def test_default_is_length_aware_on_cpu(impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default takes the length-aware loop for masked CPU inference where the C++ loop is
    built; impl="masked" never does; unpadded batches go to the usual loops either way."""
    if not cpp.available():
        pytest.skip("without the C++ loop the default keeps the every-step loops")
    calls: list[int] = []
    run = packed.run_layer
    monkeypatch.setattr(packed, "run_layer", lambda *a, **k: calls.append(1) or run(*a, **k))
    lstm = LSTM(3, 4, batch_first=True, bidirectional=True, impl=impl).eval()
    x = torch.randn(8, STEPS, 3)
    with torch.no_grad():
        lstm(x, mask=_mask(8))
        lstm(x, mask=torch.ones(8, STEPS, dtype=torch.bool))
    assert calls == ([1] if impl == "fast" else [])


#: (PACK_HH_ROWS, PACK_HH_T_ROWS): the training steps' GEMMs plain, and oneDNN-packed.
PACKING = {"plain": (0, 0), "packed": (1, 1)}


#: How the training steps run: C++ with plain or oneDNN-packed GEMMs (impl="fast", the default),
#: and the Python autograd form (impl="packed" where the C++ pair does not apply).
TRAIN_STEPS = ["cpp-plain", "cpp-packed", "python"]


@pytest.mark.parametrize("steps_in", TRAIN_STEPS)
@pytest.mark.parametrize(
    ("gate", "bidirectional", "zero_output"),
    [
        ("hard_sigmoid_keras2", True, True),
        ("hard_sigmoid_keras2", True, False),
        ("hard_sigmoid_keras3", False, False),
        ("sigmoid", False, True),
    ],
)
def test_packed_training_matches_float64_reference(
    gate: str, bidirectional: bool, zero_output: bool, steps_in: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Training through the length-aware loop (float32) against the reference loop in float64:
    outputs, final states and every gradient (parameters, input, initial state), on pre-, post-
    and both-sided padding with one-token and empty rows."""
    impl = "fast"
    if steps_in == "python":
        monkeypatch.setattr(cpp, "applies", lambda *args, **kwargs: False)
        impl = "packed"
    elif not cpp.available():
        pytest.skip("the C++ steps need the extension")
    else:
        packing = PACKING[steps_in.removeprefix("cpp-")]
        for name, value in zip(("PACK_HH_ROWS", "PACK_HH_T_ROWS"), packing, strict=True):
            monkeypatch.setattr(cpp, name, value)
    calls: list[int] = []
    run = packed.run_layer_autograd
    monkeypatch.setattr(
        packed, "run_layer_autograd", lambda *a, **k: calls.append(1) or run(*a, **k)
    )
    torch.manual_seed(0)
    lstm = LSTM(6, 20, num_layers=2, batch_first=True, bidirectional=bidirectional,
                gate_activation=gate, zero_output_for_mask=zero_output)  # fmt: skip
    n_states = 2 * lstm.num_directions
    x = 2 * torch.randn(8, STEPS, 6)
    hx = tuple(0.5 * torch.randn(n_states, 8, 20) for _ in range(2))
    results = {}
    for name, dtype in (("reference", torch.float64), (impl, torch.float32)):
        model = copy.deepcopy(lstm).to(dtype)
        model.impl = name
        hx_d = tuple(t.to(dtype) for t in hx)
        results[name] = outputs_and_grads(model, x.to(dtype), hx_d, _mask(8))
    assert calls == [1, 1]  # both layers took the length-aware loop
    out_tol = tolerance_for(torch.float32, "cpu", "output")
    grad_tol = tolerance_for(torch.float32, "cpu", "gradient")
    assert_runs_close(results[impl], results["reference"], out_tol, grad_tol, steps_in)


def test_python_training_steps_float64() -> None:
    """The Python training steps in float64 (any dtype, any device: what impl="packed" runs
    off the C++ path) agree with the reference loop to float64 rounding, gradients included."""
    torch.manual_seed(0)
    lstm = LSTM(4, 6, batch_first=True, bidirectional=True, zero_output_for_mask=False,
                dtype=torch.float64)  # fmt: skip
    x = torch.randn(8, STEPS, 4, dtype=torch.float64)
    grads = {}
    for impl in ("reference", "packed"):
        lstm.impl = impl
        lstm.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        out = lstm(xi, mask=_mask(8))[0]
        (
            out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)
        ).sum().backward()
        grads[impl] = [out.detach(), xi.grad, *(p.grad for p in lstm.parameters())]
    for a, b in zip(grads["packed"], grads["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", ["fast", "masked"])
def test_training_is_length_aware_by_default(impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training takes the length-aware loop for padded batches by default, not for
    impl="masked", and never for unpadded batches or rows with holes."""
    if not cpp.available():
        pytest.skip("the length-aware training loop needs the C++ extension")
    calls: list[int] = []
    run = packed.run_layer_autograd
    monkeypatch.setattr(
        packed, "run_layer_autograd", lambda *a, **k: calls.append(1) or run(*a, **k)
    )
    lstm = LSTM(3, 4, batch_first=True, bidirectional=True, impl=impl)
    x = torch.randn(8, STEPS, 3)
    holes = _mask(8)
    holes[0, 3] = False
    for mask in (_mask(8), torch.ones(8, STEPS, dtype=torch.bool), holes):
        lstm(x, mask=mask)[0].sum().backward()
    assert calls == ([1] if impl == "fast" else [])
