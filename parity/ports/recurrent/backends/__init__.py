"""The LSTM's fast loops, and the one place that chooses which loop a forward runs.

Loops (all compute what ``recurrent.lstm.reference_layer``, the readable definition, computes, and
pass the same tests):

- ``python``: the fused in-place inference loop on folded, packed weights (backends.python).
- ``cpp``: the same loop in C++ (backends.cpp, csrc/lstm_cpu.cpp), CPU float32, when the
  extension builds (``PARITY_NO_EXT=1`` skips it), one direction per thread.
- ``python_autograd``: the fused loop out of place, for training (backends.python).
- ``cpp_autograd``: training in C++ (backends.cpp.run_layer_autograd): a forward that keeps the
  gates and a backward written out, per step one GEMM and one fused pass in each.
- ``triton`` / ``triton_autograd``: one Triton kernel per step on CUDA float32 (backends.triton).
- ``packed``: the length-aware inference loop (backends.packed): each row runs its real steps
  only. "fast" takes it on CPU for masked inference when the C++ extension is built (its steps
  are C++ there); ``LSTM(impl="packed")`` asks for it on any device. Batches without padding,
  and rows with holes, go to the usual loops.
- ``packed_autograd``: the length-aware loop for training (backends.packed.run_layer_autograd),
  its steps and their backward in C++ where ``cpp_autograd`` applies (then "fast" takes it too),
  out of place in Python elsewhere (``impl="packed"`` on any device); batches without padding,
  and rows with holes, go to the every-step training loops.

Shared weight preparation (fold, pack, the per-weight-version cache) is backends.prepare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum

import torch
from torch import Tensor

from parity.ports.activations import ACTIVATIONS
from parity.ports.recurrent.backends import cpp, packed, python, triton
from parity.ports.recurrent.backends.prepare import PreparedCache, Weights, pack

#: LSTM(impl=...) choices: "fast" lets ``select`` pick the fastest loop that applies; "op" runs
#: the registered operator parity::keras_lstm (parity.ports.recurrent.ops), as a traced model does;
#: "packed" is "fast" with the length-aware loop for masked inference (backends.packed) on every
#: device ("fast" uses it on CPU with the C++ extension, in training too); "masked" is "fast"
#: without it (every row through every step, padding masked as Keras does: what benchmarks
#: compare it with).
IMPLEMENTATIONS = ("fast", "reference", "op", "packed", "masked")
#: Without the C++ loop, below this batch size a training step is faster through the reference
#: loop: the Python fused loop's per-direction loops record twice the autograd nodes, which
#: dominates at tiny batches (benchmarks/deepmoji_speed.py, training mode, measures it).
FAST_AUTOGRAD_MIN_BATCH = 4


class Loop(StrEnum):
    """The loops an LSTM layer can run."""

    REFERENCE = "reference"
    PYTHON = "python"
    PYTHON_AUTOGRAD = "python_autograd"
    CPP = "cpp"
    CPP_AUTOGRAD = "cpp_autograd"
    TRITON = "triton"
    TRITON_AUTOGRAD = "triton_autograd"
    PACKED = "packed"
    PACKED_AUTOGRAD = "packed_autograd"


def fusable(gate: str, activation: str) -> bool:
    """Whether the fused loops can compute these activations: both have a fused form, and the
    activation has no affine part (only the gate's is folded into the weights; the activation's
    inputs, the g rows and the cell, are not, so a hard sigmoid as ``activation`` runs the
    reference loop)."""
    gate_form, act_form = ACTIVATIONS[gate].fused, ACTIVATIONS[activation].fused
    return gate_form is not None and act_form is not None and not act_form.affine


def cpp_training(
    x: Tensor, h: Tensor, c: Tensor, gate: str, activation: str, *, build: bool = True
) -> bool:
    """Whether a training forward can run the C++ training loop (CPU float32, activations the
    C++ pass knows, extension built; ``build=False``: already loaded, see cpp.applies)."""
    return fusable(gate, activation) and cpp.applies(
        x, h, c, gate, activation, training=True, build=build
    )


def records_grad(tensors: Iterable[Tensor], parameters: Callable[[], Iterable[Tensor]]) -> bool:
    """Whether autograd would record this forward (then the in-place loops will not do)."""
    if not torch.is_grad_enabled():
        return False
    return any(t.requires_grad for t in tensors) or any(p.requires_grad for p in parameters())


def select(
    impl: str,
    gate: str,
    activation: str,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    parameters: Callable[[], Iterable[Tensor]],
) -> Loop:
    """The loop one LSTM forward runs, for every layer. x: (T, B, in); h, c: the initial state;
    ``parameters`` yields the LSTM's parameters (asked only when the answer depends on them)."""
    if impl not in ("fast", "packed", "masked") or not fusable(gate, activation):
        return Loop.REFERENCE
    grad = records_grad((x, h, c), parameters)
    if not grad and (
        impl == "packed" or (impl == "fast" and cpp.applies(x, h, c, gate, activation))
    ):
        return Loop.PACKED
    if grad and impl == "packed":
        return Loop.PACKED_AUTOGRAD
    if triton.applies(x, gate, activation):
        return Loop.TRITON_AUTOGRAD if grad else Loop.TRITON
    if not grad:
        return Loop.CPP if cpp.applies(x, h, c, gate, activation) else Loop.PYTHON
    if cpp_training(x, h, c, gate, activation):
        return Loop.CPP_AUTOGRAD if impl == "masked" else Loop.PACKED_AUTOGRAD
    if x.shape[1] >= FAST_AUTOGRAD_MIN_BATCH:
        return Loop.PYTHON_AUTOGRAD
    return Loop.REFERENCE


#: What every fast loop is given: (weights, cache, layer, x, h, c, mask, gate, activation,
#: zero_output_for_mask) -> (output, h_n, c_n).
Runner = Callable[
    [Weights, PreparedCache, int, Tensor, Tensor, Tensor, Tensor | None, str, str, bool],
    tuple[Tensor, Tensor, Tensor],
]


def _python(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask):
    prep = cache.get(layer, "packed", weights, gate, pack, h.shape[-1])
    return python.run_layer(
        prep, x.contiguous(), h, c, mask, gate=gate, activation=activation,
        zero_output_for_mask=zero_output_for_mask,
    )  # fmt: skip


def _cpp(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask):
    prep = cache.get(layer, "packed", weights, gate, pack, h.shape[-1])
    return cpp.run_layer(
        prep, x.contiguous(), h, c, mask, gate=gate, activation=activation,
        zero_output_for_mask=zero_output_for_mask,
    )  # fmt: skip


def _packed(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask):
    rows = packed.skippable_rows(None if mask is None else mask[..., 0])
    if rows is None:
        # No padding (nothing to skip) or a row with a hole: the usual loops.
        inner = _cpp if cpp.applies(x, h, c, gate, activation) else _python
        return inner(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask)
    prep = cache.get(layer, "packed", weights, gate, pack, h.shape[-1])
    return packed.run_layer(
        prep, x.contiguous(), h, c, *rows, gate=gate, activation=activation,
        zero_output_for_mask=zero_output_for_mask,
    )  # fmt: skip


def _packed_autograd(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask):
    rows = packed.skippable_rows(None if mask is None else mask[..., 0])
    if rows is None:
        # No padding (nothing to skip) or a row with a hole: every step, masked.
        if cpp_training(x, h, c, gate, activation):
            inner = _cpp_autograd
        else:
            inner = _triton_autograd if triton.applies(x, gate, activation) else _python_autograd
        return inner(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask)
    return packed.run_layer_autograd(
        weights, x, h, c, *rows, gate=gate, activation=activation,
        zero_output_for_mask=zero_output_for_mask,
    )  # fmt: skip


def _python_autograd(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask):
    return python.run_layer_autograd(
        weights, x, h, c, mask, gate=gate, activation=activation,
        zero_output_for_mask=zero_output_for_mask,
    )  # fmt: skip


def _cpp_autograd(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask):
    return cpp.run_layer_autograd(
        weights, x, h, c, mask, gate=gate, activation=activation,
        zero_output_for_mask=zero_output_for_mask,
    )  # fmt: skip


def _triton(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask):
    prepared = cache.get(layer, "triton", weights, gate, triton.prepare, h.shape[-1])
    return triton.run_layer(
        weights, prepared, x, h, c, mask, gate=gate, activation=activation,
        zero_output_for_mask=zero_output_for_mask,
    )  # fmt: skip


def _triton_autograd(weights, cache, layer, x, h, c, mask, gate, activation, zero_output_for_mask):
    return triton.run_layer(
        weights, None, x, h, c, mask, gate=gate, activation=activation,
        zero_output_for_mask=zero_output_for_mask,
    )  # fmt: skip


#: Loop -> the function that runs one layer through it (the reference loop is the LSTM's own).
RUNNERS: dict[Loop, Runner] = {
    Loop.PYTHON: _python,
    Loop.CPP: _cpp,
    Loop.PYTHON_AUTOGRAD: _python_autograd,
    Loop.CPP_AUTOGRAD: _cpp_autograd,
    Loop.TRITON: _triton,
    Loop.TRITON_AUTOGRAD: _triton_autograd,
    Loop.PACKED: _packed,
    Loop.PACKED_AUTOGRAD: _packed_autograd,
}

__all__ = [
    "FAST_AUTOGRAD_MIN_BATCH",
    "IMPLEMENTATIONS",
    "RUNNERS",
    "Loop",
    "PreparedCache",
    "Weights",
    "cpp_training",
    "fusable",
    "records_grad",
    "select",
]
