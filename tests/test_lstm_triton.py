"""The CUDA LSTM kernels (parity.ports.recurrent.backends.triton) against the reference loop in
float64.

On a GPU these run the compiled kernels (LSTM(impl="fast") on float32 CUDA tensors takes them);
where Triton is installed but no GPU is, the same checks run on CPU tensors under Triton's
interpreter, in a subprocess (TRITON_INTERPRET must be set before Triton is imported). Machines
with neither (a CPU build of torch) skip them; the CPU paths have their own tests.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from parity.check.tolerances import tolerance_for
from parity.ports import LSTM

IN, HID, T, B = 6, 16, 5, 3
#: (B, T) masks: none, pre-padded (one row fully masked), holes.
MASKS = {
    "none": None,
    "pre": [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]],
    "holes": [[1, 0, 1, 0, 1], [0, 1, 1, 0, 0], [1, 1, 1, 1, 0]],
}
CASES = [
    # gate, activation, bidirectional, layers, mask, zero_output_for_mask
    ("hard_sigmoid_keras2", "tanh", True, 2, "pre", True),
    ("hard_sigmoid_keras2", "tanh", True, 1, "holes", False),
    ("hard_sigmoid_keras2", "tanh", False, 2, "holes", False),
    ("hard_sigmoid_keras2", "tanh", True, 1, "none", True),
    ("hard_sigmoid_keras3", "tanh", True, 1, "holes", True),
    ("sigmoid", "tanh", True, 2, "holes", False),
    ("sigmoid", "tanh", False, 1, "pre", False),
    ("sigmoid", "relu", True, 1, "holes", False),
    ("hard_sigmoid_keras2", "linear", False, 1, "pre", True),
]


def _run(module: LSTM, x, hx, mask, dtype, device):
    """Outputs, final states and every gradient of a fixed random projection of them."""
    xi = x.to(device, dtype).detach().clone().requires_grad_()
    hi = tuple(t.to(device, dtype).detach().clone().requires_grad_() for t in hx)
    m = None if mask is None else mask.to(device)
    out, (h_n, c_n) = module(xi, hi, mask=m)
    g = torch.Generator().manual_seed(1)
    cot = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (out, h_n, c_n)]
    sum((t * c.to(t)).sum() for t, c in zip((out, h_n, c_n), cot, strict=True)).backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    grads.update(x=xi.grad, h0=hi[0].grad, c0=hi[1].grad)
    with torch.no_grad():  # the inference loop
        n_out, (n_h, n_c) = module(xi.detach(), tuple(t.detach() for t in hi), mask=m)
    values = {"output": out, "h_n": h_n, "c_n": c_n}
    values.update({"no-grad output": n_out, "no-grad h_n": n_h, "no-grad c_n": n_c})
    return values, grads


def check_case(case: tuple, device: str) -> None:
    """Raise AssertionError if the kernels' float32 results leave the float32 tolerance."""
    gate, act, bidirectional, layers, mask_name, zero_output = case
    torch.manual_seed(0)
    kwargs = dict(
        bidirectional=bidirectional,
        gate_activation=gate,
        activation=act,
        zero_output_for_mask=zero_output,
    )
    ref = LSTM(IN, HID, layers, impl="reference", dtype=torch.float64, **kwargs)
    for p in ref.parameters():  # wide enough that hard sigmoids saturate and clamp
        torch.nn.init.uniform_(p, -0.8, 0.8)
    ours = LSTM(IN, HID, layers, impl="fast", **kwargs).to(device)
    ours.load_state_dict(ref.state_dict())
    n_states = layers * (2 if bidirectional else 1)
    x = torch.randn(T, B, IN, dtype=torch.float64)
    hx = tuple(torch.randn(n_states, B, HID, dtype=torch.float64) for _ in range(2))
    mask = None if MASKS[mask_name] is None else torch.tensor(MASKS[mask_name], dtype=torch.bool)
    want, want_grads = _run(ref, x, hx, mask, torch.float64, "cpu")
    got, got_grads = _run(ours, x, hx, mask, torch.float32, device)
    out_tol = tolerance_for(torch.float32, device, "output")
    grad_tol = tolerance_for(torch.float32, device, "gradient")
    for name, value in want.items():
        torch.testing.assert_close(
            got[name].cpu().double(), value, atol=out_tol.atol, rtol=out_tol.rtol,
            msg=lambda m, name=name: f"{case} {name}: {m}",
        )  # fmt: skip
    for name, value in want_grads.items():
        torch.testing.assert_close(
            got_grads[name].cpu().double(), value, atol=grad_tol.atol, rtol=grad_tol.rtol,
            msg=lambda m, name=name: f"{case} grad {name}: {m}",
        )  # fmt: skip


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@needs_cuda
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_kernels_match_reference_on_cuda(case):
    from parity.ports.recurrent.backends import triton as _lstm_triton

    x = torch.zeros(1, device="cuda")
    if not _lstm_triton.applies(x, case[0], case[1]):
        pytest.skip("Triton is not installed beside this CUDA torch")
    check_case(case, "cuda")


@needs_cuda
def test_cuda_takes_the_kernels():
    """The fast CUDA path really is the Triton one (not the CPU-oriented loop)."""
    from parity.ports.recurrent.backends import triton as _lstm_triton

    if _lstm_triton.triton is None:
        pytest.skip("Triton is not installed beside this CUDA torch")
    lstm = LSTM(IN, HID, bidirectional=True, gate_activation="hard_sigmoid_keras2").cuda()
    with torch.no_grad():
        lstm(torch.randn(T, B, IN, device="cuda"))
    assert lstm._prepared.keys() == [(0, "triton")]


@pytest.mark.skipif(
    torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
    reason="runs where Triton is installed without a GPU (interpreter mode)",
)
def test_kernels_match_reference_in_triton_interpreter():
    code = (
        "from tests.test_lstm_triton import CASES, check_case\n"
        "for case in CASES:\n"
        "    check_case(case, 'cpu')\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
