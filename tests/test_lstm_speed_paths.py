"""The LSTM's fast inference loop computes what the reference loop computes.

The oracle tests in test_layers.py run both implementations; these add what is particular to the
fast one: Keras' golden outputs through it (oneDNN-packed and plain matmuls), a sweep against the
reference over gates, layers, directions, dtypes and masks, and its cache of prepared weights
(rebuilt when weights change, left out of pickles and deep copies).
"""

from __future__ import annotations

import copy
import io
import itertools

import pytest
import torch

import parity
from parity.check import load_golden, tolerance_for
from parity.ports import ACTIVATIONS, LSTM
from parity.ports.recurrent.backends import FAST_AUTOGRAD_MIN_BATCH as LSTM_FAST_AUTOGRAD_MIN_BATCH
from parity.ports.recurrent.backends import Loop, prepare, select
from parity.ports.recurrent.backends import cpp as cpp_loops
from parity.ports.recurrent.backends import python as python_loops
from tests.golden_cases import CASES
from tests.lstm_oracle import assert_runs_close, outputs_and_grads

DEEPMOJI_CASES = [case for case in CASES if case.pair == "deepmoji"]
DTYPES = {"float32": torch.float32, "float64": torch.float64}
BACKENDS = ["onednn", "dense"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fast loop with oneDNN's packed matmul (where it applies) or plain addmm."""
    monkeypatch.setattr(prepare, "USE_ONEDNN", request.param == "onednn")
    return request.param


@pytest.mark.parametrize("case", DEEPMOJI_CASES, ids=[c.id for c in DEEPMOJI_CASES])
def test_golden_outputs_without_grad(case, backend, device):
    """Keras' outputs and attention from a no-grad forward, i.e. through the fused loop (the
    golden tests in test_parity.py run forward and backward, i.e. the reference loop)."""
    dtype = DTYPES[case.floatx]
    golden = load_golden(case.golden_file)
    model = parity.load_keras(case.model_file, arch=case.pair, dtype=dtype).to(device)
    assert model.bi_lstm_0.impl == model.bi_lstm_1.impl == "fast"
    ids = torch.from_numpy(golden["ids"]).long().to(device)
    with torch.inference_mode():
        probs, att = model(ids, return_attention=True)
    tol = tolerance_for(dtype, device, "output")
    for name, ours in (("output", probs), ("attention", att)):
        expected = torch.from_numpy(golden[f"output/{name}"]).to(device, dtype)
        torch.testing.assert_close(ours, expected, rtol=tol.rtol, atol=tol.atol, msg=name)


def _masks(batch: int, steps: int) -> dict[str, torch.Tensor | None]:
    lengths = torch.tensor([steps, 1, 3, steps - 2])[:batch]
    t = torch.arange(steps)
    g = torch.Generator().manual_seed(5)
    return {
        "none": None,
        "full": torch.ones(batch, steps, dtype=torch.bool),
        "pre": t[None, :] >= steps - lengths[:, None],
        "post": t[None, :] < lengths[:, None],
        "holes": torch.rand(batch, steps, generator=g) > 0.4,
    }


SWEEP = list(
    itertools.product(
        ["sigmoid", "hard_sigmoid_keras2", "hard_sigmoid_keras3"],
        [(1, False), (2, True), (1, True)],  # (num_layers, bidirectional)
        [torch.float32, torch.float64],
        [None, False],  # zero_output_for_mask: default, or a plain LSTM's carried outputs
    )
)


@pytest.mark.parametrize(("gate", "shape", "dtype", "zero_output"), SWEEP)
def test_fast_equals_reference(gate, shape, dtype, zero_output, backend, device):
    num_layers, bidirectional = shape
    torch.manual_seed(0)
    lstm = LSTM(5, 7, num_layers, batch_first=True, bidirectional=bidirectional, dtype=dtype,
                gate_activation=gate, zero_output_for_mask=zero_output,
                bias=num_layers == 1).to(device)  # fmt: skip
    n_states = num_layers * (2 if bidirectional else 1)
    x = 3 * torch.randn(4, 9, 5, dtype=dtype, device=device)  # reaches the flat parts
    hx = tuple(torch.randn(n_states, 4, 7, dtype=dtype, device=device) for _ in range(2))
    tol = tolerance_for(dtype, device, "output")
    for mask_name, mask in _masks(4, 9).items():
        mask = None if mask is None else mask.to(device)
        results = {}
        for impl in ("reference", "fast"):
            lstm.impl = impl
            with torch.no_grad():
                results[impl] = lstm(x, hx, mask=mask)
        (out_r, (h_r, c_r)), (out_f, (h_f, c_f)) = results["reference"], results["fast"]
        for what, a, b in (("output", out_f, out_r), ("h_n", h_f, h_r), ("c_n", c_f, c_r)):
            torch.testing.assert_close(
                a,
                b,
                rtol=tol.rtol,
                atol=tol.atol,
                msg=lambda m, w=f"{mask_name} {what}": f"{w}: {m}",
            )
        if mask is not None and lstm.zero_output_for_mask:  # exact zeros at masked steps
            assert torch.all(out_f[~mask] == 0)


@pytest.mark.parametrize(("gate", "shape", "dtype", "zero_output"), SWEEP)
def test_fast_gradients_equal_reference(gate, shape, dtype, zero_output, device):
    """Under autograd "fast" runs its out-of-place loop: same outputs and gradients (of the
    parameters, the input and the initial state) as the reference loop, masks included."""
    num_layers, bidirectional = shape
    torch.manual_seed(0)
    lstm = LSTM(5, 7, num_layers, bidirectional=bidirectional, dtype=dtype, gate_activation=gate,
                zero_output_for_mask=zero_output, bias=num_layers == 1).to(device)  # fmt: skip
    n_states = num_layers * (2 if bidirectional else 1)
    x = 3 * torch.randn(9, 4, 5, dtype=dtype, device=device)
    hx = tuple(torch.randn(n_states, 4, 7, dtype=dtype, device=device) for _ in range(2))
    out_tol = tolerance_for(dtype, device, "output")
    grad_tol = tolerance_for(dtype, device, "gradient")
    for mask_name in ("none", "pre", "holes"):
        mask = _masks(4, 9)[mask_name]
        mask = None if mask is None else mask.to(device)
        results = {}
        for impl in ("reference", "fast"):
            lstm.impl = impl
            results[impl] = outputs_and_grads(lstm, x, hx, mask)
        assert_runs_close(results["fast"], results["reference"], out_tol, grad_tol, mask_name)


def _fast_and_reference(lstm: LSTM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    outs = []
    for impl in ("fast", "reference"):
        lstm.impl = impl
        with torch.no_grad():
            outs.append(lstm(x)[0])
    return outs[0], outs[1]


def test_cache_follows_weight_changes(backend):
    """Prepared weights are rebuilt after an optimizer step, load_state_dict, in-place edits
    and a dtype change; never a stale result."""
    torch.manual_seed(0)
    lstm = LSTM(
        5, 7, 2, batch_first=True, bidirectional=True, gate_activation="hard_sigmoid_keras2"
    )
    x = torch.randn(3, 6, 5)
    tol = tolerance_for(torch.float32, "cpu", "output")

    def check(what: str) -> None:
        fast, ref = _fast_and_reference(lstm, x)
        torch.testing.assert_close(fast, ref, rtol=tol.rtol, atol=tol.atol, msg=what)

    check("initial")
    before = _fast_and_reference(lstm, x)[0]
    optimizer = torch.optim.SGD(lstm.parameters(), lr=0.5)
    lstm.impl = "fast"
    lstm(x)[0].square().sum().backward()
    optimizer.step()
    check("after an optimizer step")
    assert not torch.allclose(_fast_and_reference(lstm, x)[0], before)
    other = LSTM(
        5, 7, 2, batch_first=True, bidirectional=True, gate_activation="hard_sigmoid_keras2"
    )
    lstm.load_state_dict(other.state_dict())
    check("after load_state_dict")
    with torch.no_grad():
        lstm.weight_hh_l1_reverse.mul_(2.0)
    check("after an in-place edit")
    lstm.double()
    x = x.double()
    tol = tolerance_for(torch.float64, "cpu", "output")
    check("after .double()")


def test_copies_and_pickles_after_inference():
    """The cache (oneDNN-packed, opaque tensors) stays out of deepcopy and torch.save."""
    torch.manual_seed(0)
    lstm = LSTM(5, 7, bidirectional=True, gate_activation="hard_sigmoid_keras2").eval()
    x = torch.randn(4, 2, 5)
    with torch.inference_mode():
        out = lstm(x)[0]
    twin = copy.deepcopy(lstm)
    buffer = io.BytesIO()
    torch.save(lstm, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for module in (twin, loaded):
        with torch.inference_mode():
            assert torch.equal(module(x)[0], out)


def test_weights_made_in_inference_mode():
    """Inference tensors have no version counter: no caching, still correct."""
    with torch.inference_mode():
        torch.manual_seed(0)
        lstm = LSTM(5, 7, bidirectional=True, gate_activation="hard_sigmoid_keras2")
        x = torch.randn(4, 2, 5)
        fast = lstm(x)[0]
        lstm.impl = "reference"
        torch.testing.assert_close(fast, lstm(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [1, LSTM_FAST_AUTOGRAD_MIN_BATCH])
def test_training_dispatch_by_batch_size(batch, monkeypatch):
    """Without the C++ loop, tiny training batches take the reference loop (faster there);
    larger ones the Python fast loop's autograd form, which the sweep above compares with the
    reference."""
    monkeypatch.setattr(cpp_loops, "applies", lambda *args, **kwargs: False)
    calls = []
    real = python_loops.run_layer_autograd
    monkeypatch.setattr(
        python_loops, "run_layer_autograd", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    lstm = LSTM(5, 7, bidirectional=True, gate_activation="hard_sigmoid_keras2")
    lstm(torch.randn(3, batch, 5))[0].sum().backward()
    assert bool(calls) == (batch >= LSTM_FAST_AUTOGRAD_MIN_BATCH)


@pytest.mark.parametrize("without_cpp", [False, True], ids=["any", "python-loop"])
@pytest.mark.parametrize("activation", sorted(n for n, a in ACTIVATIONS.items() if a.fused))
def test_every_activation_fast_equals_reference(activation, without_cpp, device, monkeypatch):
    """Any ``activation`` (the g rows and the cell), hard sigmoids included, whose affine part
    the fast loops do not fold: outputs and gradients as the reference loop's. ``python-loop``:
    inference through the Python loop, as where the C++ extension cannot be built."""
    if without_cpp:
        from parity.ports.recurrent.backends import cpp

        monkeypatch.setattr(cpp, "applies", lambda *args, **kwargs: False)
    torch.manual_seed(0)
    lstm = LSTM(5, 7, bidirectional=True, gate_activation="hard_sigmoid_keras2",
                activation=activation).to(device)  # fmt: skip
    x = torch.randn(9, 4, 5, device=device)
    mask = _masks(4, 9)["holes"].to(device)
    tol = tolerance_for(torch.float32, device, "output")
    grad_tol = tolerance_for(torch.float32, device, "gradient")
    results = {}
    for impl in ("reference", "fast"):
        lstm.impl = impl
        lstm.zero_grad(set_to_none=True)
        with torch.no_grad():
            no_grad = lstm(x, mask=mask)[0]
        out = lstm(x, mask=mask)[0]
        (out * torch.linspace(-1, 1, out.numel(), device=device).view(out.shape)).sum().backward()
        results[impl] = (no_grad, out, {n: p.grad for n, p in lstm.named_parameters()})
    for a, b in zip(results["fast"][:2], results["reference"][:2], strict=True):
        torch.testing.assert_close(a, b, rtol=tol.rtol, atol=tol.atol)
    for name, grad in results["reference"][2].items():
        torch.testing.assert_close(
            results["fast"][2][name], grad, rtol=grad_tol.rtol, atol=grad_tol.atol, msg=name
        )


needs_cpp = pytest.mark.skipif(not cpp_loops.available(), reason="C++ loop not built here")


@needs_cpp
@pytest.mark.parametrize(
    ("impl", "expected"), [("fast", Loop.PACKED_AUTOGRAD), ("masked", Loop.CPP_AUTOGRAD)]
)
def test_cpu_float32_training_runs_in_cpp(impl, expected):
    """Under autograd on CPU float32 a C++ training loop runs, at every batch size: the
    length-aware one by default (every step, masked, where a batch has no padding or a row has
    a hole), the every-step one for impl="masked"."""
    lstm = LSTM(5, 7, bidirectional=True, gate_activation="hard_sigmoid_keras2")
    for batch in (1, 32):
        x, h = torch.randn(3, batch, 5), torch.zeros(2, batch, 7)
        loop = select(impl, lstm.gate_activation, lstm.activation, x, h, h, lstm.parameters)
        assert loop is expected


#: (PACK_IH_ROWS, PACK_HH_ROWS, PACK_HH_T_ROWS): each GEMM plain, and each oneDNN-packed.
PACKING = {"plain": (0, 0, 0), "packed": (1, 1, 1)}


@needs_cpp
@pytest.mark.parametrize("impl", ["masked", "fast"])
@pytest.mark.parametrize("packing", sorted(PACKING))
@pytest.mark.parametrize(
    ("gate", "activation", "bidirectional", "zero_output", "batch"),
    [
        ("hard_sigmoid_keras2", "tanh", True, None, 4),
        ("hard_sigmoid_keras3", "tanh", True, False, 4),
        ("sigmoid", "tanh", False, None, 1),
        ("hard_sigmoid_keras2", "relu", False, True, 3),
        ("sigmoid", "linear", True, False, 1),
    ],
)
def test_cpp_training_equals_float64_reference(
    gate, activation, bidirectional, zero_output, batch, packing, impl, monkeypatch
):
    """The C++ training loops (float32) against the reference loop in float64, outputs and
    every gradient (parameters, input, initial state), over every mask shape: pre- and
    post-padding, holes, a row with no real step, and Keras' two masked-output rules. The
    reference loop is what the golden tests hold to Keras' numbers. impl="masked": every step,
    masked; "fast": the length-aware loop where the padding allows it (pre, post, empty row)."""
    names = ("PACK_IH_ROWS", "PACK_HH_ROWS", "PACK_HH_T_ROWS")
    for name, value in zip(names, PACKING[packing], strict=True):
        monkeypatch.setattr(cpp_loops, name, value)
    torch.manual_seed(0)
    steps, n_dir = 9, 2 if bidirectional else 1
    lstm = LSTM(5, 7, 2, bidirectional=bidirectional, gate_activation=gate,
                activation=activation, zero_output_for_mask=zero_output)  # fmt: skip
    x = 3 * torch.randn(steps, batch, 5)
    hx = tuple(0.5 * torch.randn(2 * n_dir, batch, 7) for _ in range(2))
    masks = _masks(4, steps) | {"empty row": torch.ones(4, steps, dtype=torch.bool)}
    masks["empty row"][0] = False
    out_tol = tolerance_for(torch.float32, "cpu", "output")
    grad_tol = tolerance_for(torch.float32, "cpu", "gradient")
    for mask_name, mask in masks.items():
        mask = None if mask is None else mask[:batch]  # (B, T) whatever batch_first says
        results = {}
        for name, dtype in (("reference", torch.float64), (impl, torch.float32)):
            model = copy.deepcopy(lstm).to(dtype)
            model.impl = name
            hx_d = tuple(t.to(dtype) for t in hx)
            results[name] = outputs_and_grads(model, x.to(dtype), hx_d, mask)
        assert_runs_close(results[impl], results["reference"], out_tol, grad_tol, mask_name)


@needs_cpp
def test_cpp_training_without_input_gradient():
    """An input that needs no gradient gets none (the C++ backward skips that product); the
    parameters' gradients are unchanged by it."""
    torch.manual_seed(0)
    lstm = LSTM(5, 7, bidirectional=True, gate_activation="hard_sigmoid_keras2")
    x = torch.randn(6, 3, 5)
    grads = []
    for needs in (False, True):
        lstm.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(needs)
        lstm(xi)[0].pow(2).sum().backward()
        assert (xi.grad is None) != needs
        grads.append([p.grad.clone() for p in lstm.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
