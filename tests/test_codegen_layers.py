"""parity/codegen/templates/keras_layers.py, the readable layers ``parity port`` copies into a
standalone model.py, computes what parity's own recurrent modules compute: outputs, final states
and every gradient, with parity's weights loaded by name.

Each case builds a parity module (as conversion builds it), copies its state_dict into the
standalone class (minus the zero ``bias_hh`` buffers Keras' one-bias layers carry), runs both on
the same input, mask and initial state, and compares the outputs, the final state and the
gradients of one scalar with respect to the input, the initial state and every parameter.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import parity
from parity.ports.activations import ACTIVATIONS as PARITY_ACTIVATIONS
from parity.ports.recurrent import GRU, LSTM, SimpleRNN

#: Loaded from its path, as the standalone file it is copied as: without parity.codegen's
#: package (its driver), so these tests check the layers and nothing else.
SOURCE = Path(parity.__file__).parent / "codegen" / "templates" / "keras_layers.py"
_spec = importlib.util.spec_from_file_location("keras_layers_standalone", SOURCE)
assert _spec is not None and _spec.loader is not None
kl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kl)
ALLOWED_IMPORTS = {"__future__", "torch", "math", "typing", "collections"}

BATCH, STEPS, FEATURES, UNITS = 5, 6, 3, 4
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
GATES = ("sigmoid", "hard_sigmoid_keras2", "hard_sigmoid_keras3")
#: "gru" is reset_after=True, "gru_before" reset_after=False.
CELLS = ("lstm", "gru", "gru_before", "simple")
MASKS = ("none", "pre", "post", "holes", "all_padding", "mixed")


def make_mask(kind: str) -> Tensor | None:
    """A (BATCH, STEPS) Keras mask of one kind; "mixed" has one row of every kind."""
    if kind == "none":
        return None
    full = [True] * STEPS
    rows = {
        "pre": [False, False] + [True] * (STEPS - 2),
        "post": [True] * (STEPS - 3) + [False] * 3,
        "holes": [True, False, True, False, False, True],
        "all_padding": [False] * STEPS,
    }
    if kind == "mixed":
        return torch.tensor([full, rows["pre"], rows["post"], rows["holes"], rows["all_padding"]])
    return torch.tensor([rows[kind]] * BATCH)


@dataclass(frozen=True)
class Case:
    cell: str
    dtype: torch.dtype = torch.float64
    bidirectional: bool = False
    mask: str = "mixed"
    gate: str = "sigmoid"
    activation: str = "tanh"
    zero_output_for_mask: bool | None = None
    initial_state: bool = False
    two_biases: bool = False
    bias: bool = True
    lstm_impl: str = "fast"

    def __str__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        parts = [self.cell, dtype, "bi" if self.bidirectional else "uni", f"mask={self.mask}"]
        if self.cell != "simple":
            parts.append(self.gate)
        if self.activation != "tanh":
            parts.append(f"act={self.activation}")
        if self.zero_output_for_mask is not None:
            parts.append(f"zero_output={self.zero_output_for_mask}")
        if self.initial_state:
            parts.append("h0")
        if self.two_biases:
            parts.append("two_biases")
        if not self.bias:
            parts.append("no_bias")
        if self.cell == "lstm" and self.lstm_impl != "fast":
            parts.append(self.lstm_impl)
        return "-".join(parts)


def cases() -> list[Case]:
    """The grid, kept small: every mask on every cell and direction in both dtypes, then each
    other option crossed with the mixed mask (which holds a row of every mask kind)."""
    out = [
        Case(cell, dtype, bi, mask)
        for cell in CELLS
        for dtype in TOLERANCE
        for bi in (False, True)
        for mask in MASKS
    ]
    for dtype in TOLERANCE:
        for bi in (False, True):
            out += [
                Case(cell, dtype, bi, gate=gate)
                for cell in CELLS
                if cell != "simple"
                for gate in GATES[1:]
            ]
            out += [
                Case(cell, dtype, bi, zero_output_for_mask=zero)
                for cell in CELLS
                for zero in (False, True)
            ]
            out += [
                Case(cell, dtype, bi, mask=mask, initial_state=True)
                for cell in CELLS
                for mask in ("none", "mixed")
            ]
            out += [
                Case(cell, dtype, bi, mask=mask, two_biases=True)
                for cell in ("lstm", "simple")
                for mask in ("none", "mixed")
            ]
            out += [Case(cell, dtype, bi, bias=False) for cell in CELLS]
            out += [Case("lstm", dtype, bi, gate=gate, lstm_impl="reference") for gate in GATES]
            out += [
                Case("lstm", dtype, bi, gate="hard_sigmoid_keras2", activation="relu"),
                Case("gru", dtype, bi, activation="relu"),
                Case("simple", dtype, bi, activation="relu"),
            ]
    return out


def build_pair(case: Case) -> tuple[nn.Module, nn.Module]:
    """(parity's module, the standalone one) with the same weights, in ``case.dtype``."""
    common = {"bidirectional": case.bidirectional, "bias": case.bias}
    zero = {"zero_output_for_mask": case.zero_output_for_mask, "activation": case.activation}
    if case.cell == "lstm":
        theirs = LSTM(
            FEATURES,
            UNITS,
            batch_first=True,
            dtype=case.dtype,
            gate_activation=case.gate,
            trainable_bias_hh=case.two_biases,
            impl=case.lstm_impl,
            **common,
            **zero,
        )
        ours = kl.KerasLSTM(
            FEATURES, UNITS, gate_activation=case.gate, two_biases=case.two_biases, **common, **zero
        )
    elif case.cell in ("gru", "gru_before"):
        reset_after = case.cell == "gru"
        theirs = GRU(
            FEATURES,
            UNITS,
            dtype=case.dtype,
            gate_activation=case.gate,
            reset_after=reset_after,
            **common,
            **zero,
        )
        ours = kl.KerasGRU(
            FEATURES, UNITS, gate_activation=case.gate, reset_after=reset_after, **common, **zero
        )
    else:
        theirs = SimpleRNN(
            FEATURES, UNITS, dtype=case.dtype, trainable_bias_hh=case.two_biases, **common, **zero
        )
        ours = kl.KerasSimpleRNN(FEATURES, UNITS, two_biases=case.two_biases, **common, **zero)
    ours = ours.to(case.dtype)
    buffers = dict(theirs.named_buffers())
    # Strict: every parameter of ours has parity's name and shape, and nothing is left over.
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if k not in buffers})
    return theirs, ours


def test_case_grid_is_what_the_brief_covers() -> None:
    grid = cases()
    assert len({str(c) for c in grid}) == len(grid)
    for cell in CELLS:
        assert {c.mask for c in grid if c.cell == cell} == set(MASKS)
    assert any(c.two_biases and c.cell == "lstm" for c in grid)


@pytest.mark.parametrize("case", cases(), ids=str)
def test_matches_parity(case: Case) -> None:
    torch.manual_seed(0)
    theirs, ours = build_pair(case)
    if case.two_biases and case.bias:
        # The second bias must be a real, nonzero parameter on both sides.
        assert dict(theirs.named_parameters())["bias_hh_l0"].abs().sum() > 0
    directions = 2 if case.bidirectional else 1
    n_state = 2 if case.cell == "lstm" else 1
    x = torch.randn(BATCH, STEPS, FEATURES, dtype=case.dtype) * 1.5
    mask = make_mask(case.mask)
    state = None
    if case.initial_state:
        state = tuple(
            torch.randn(directions, BATCH, UNITS, dtype=case.dtype) for _ in range(n_state)
        )

    def run(module: nn.Module, is_parity: bool) -> tuple[Tensor, tuple[Tensor, ...], dict]:
        xi = x.clone().requires_grad_(True)
        si = None if state is None else tuple(s.clone().requires_grad_(True) for s in state)
        if is_parity:
            hx = si if si is None or n_state == 2 else si[0]
            out, h = module(xi, hx, mask=mask)
            final = (h,) if isinstance(h, Tensor) else tuple(h)
        else:
            out, final = module(xi, mask=mask, initial_state=si)
        # One scalar touching every output and final state element with distinct weights.
        gen = torch.Generator().manual_seed(1)
        loss = (out * torch.randn(out.shape, generator=gen, dtype=case.dtype)).sum()
        for f in final:
            loss = loss + (f * torch.randn(f.shape, generator=gen, dtype=case.dtype)).sum()
        loss.backward()
        grads = {"input": xi.grad}
        if si is not None:
            grads |= {f"state{i}": s.grad for i, s in enumerate(si)}
        grads |= {name: p.grad for name, p in module.named_parameters()}
        return out.detach(), tuple(f.detach() for f in final), grads

    out_p, final_p, grads_p = run(theirs, True)
    out_o, final_o, grads_o = run(ours, False)

    tol = TOLERANCE[case.dtype]
    assert out_o.shape == (BATCH, STEPS, directions * UNITS)
    assert out_o.dtype == case.dtype
    torch.testing.assert_close(out_o, out_p, atol=tol, rtol=0)
    assert len(final_o) == n_state
    for f_o, f_p in zip(final_o, final_p, strict=True):
        assert f_o.shape == (directions, BATCH, UNITS)
        torch.testing.assert_close(f_o, f_p, atol=tol, rtol=0)
    assert set(grads_o) == set(grads_p)
    for name, g_p in grads_p.items():
        g_o = grads_o[name]
        assert g_o is not None and g_p is not None, name
        torch.testing.assert_close(g_o, g_p, atol=tol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize(
    ("cell", "two_biases"),
    # A GRU keeps Keras' bias layout (bias_l0) either way: no two_biases option.
    [
        (cell, two)
        for cell in CELLS
        for two in (False, True)
        if not (two and cell.startswith("gru"))
    ],
)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_parameter_names_and_shapes_are_paritys(
    cell: str, two_biases: bool, bidirectional: bool
) -> None:
    """The same parameters, in the same (state_dict) order; no bias_hh unless two_biases."""
    theirs, ours = build_pair(Case(cell, bidirectional=bidirectional, two_biases=two_biases))
    shapes_p = [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    shapes_o = [(n, tuple(p.shape)) for n, p in ours.named_parameters()]
    assert shapes_o == shapes_p
    assert list(ours.buffers()) == []
    if cell in ("lstm", "simple"):
        assert ("bias_hh_l0" in dict(ours.named_parameters())) == two_biases


def test_expected_parameter_names() -> None:
    """The names spelled out, for the generator's sake."""
    u, c = UNITS, FEATURES
    lstm = kl.KerasLSTM(c, u, bidirectional=True, two_biases=True)
    assert {n: tuple(p.shape) for n, p in lstm.named_parameters()} == {
        "weight_ih_l0": (4 * u, c),
        "weight_hh_l0": (4 * u, u),
        "bias_ih_l0": (4 * u,),
        "bias_hh_l0": (4 * u,),
        "weight_ih_l0_reverse": (4 * u, c),
        "weight_hh_l0_reverse": (4 * u, u),
        "bias_ih_l0_reverse": (4 * u,),
        "bias_hh_l0_reverse": (4 * u,),
    }
    gru = kl.KerasGRU(c, u)
    assert {n: tuple(p.shape) for n, p in gru.named_parameters()} == {
        "weight_ih_l0": (3 * u, c),
        "weight_hh_l0": (3 * u, u),
        "bias_l0": (2, 3 * u),
    }
    gru_before = kl.KerasGRU(c, u, reset_after=False)
    assert tuple(gru_before.bias_l0.shape) == (3 * u,)
    rnn = kl.KerasSimpleRNN(c, u)
    assert {n: tuple(p.shape) for n, p in rnn.named_parameters()} == {
        "weight_ih_l0": (u, c),
        "weight_hh_l0": (u, u),
        "bias_ih_l0": (u,),
    }


def test_activations_match_paritys() -> None:
    """Every name parity's table has, the same function: values and float64 gradients."""
    assert set(PARITY_ACTIVATIONS) <= set(kl.ACTIVATIONS)
    torch.manual_seed(0)
    x = torch.linspace(-7, 7, 141, dtype=torch.float64).reshape(3, 47)
    for name, spec in PARITY_ACTIVATIONS.items():
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        ya, yb = kl.ACTIVATIONS[name](xa), spec.fn(xb)
        torch.testing.assert_close(ya, yb, atol=0, rtol=0, msg=name)
        w = torch.randn(ya.shape, dtype=torch.float64)
        (ya * w).sum().backward()
        (yb * w).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, atol=1e-15, rtol=0, msg=name)


def test_hard_sigmoids() -> None:
    x = torch.tensor([-4.0, -2.5, -1.0, 0.0, 1.0, 2.5, 4.0], dtype=torch.float64)
    expected2 = torch.tensor([0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(kl.hard_sigmoid_keras2(x), expected2)
    torch.testing.assert_close(kl.hard_sigmoid_keras3(x), torch.nn.functional.hardsigmoid(x))


def test_empty_sequence_returns_initial_state() -> None:
    for cls in (kl.KerasLSTM, kl.KerasGRU, kl.KerasSimpleRNN):
        layer = cls(FEATURES, UNITS, bidirectional=True)
        n_state = 2 if cls is kl.KerasLSTM else 1
        state = tuple(torch.randn(2, BATCH, UNITS) for _ in range(n_state))
        out, final = layer(torch.randn(BATCH, 0, FEATURES), initial_state=state)
        assert out.shape == (BATCH, 0, 2 * UNITS)
        for f, s in zip(final, state, strict=True):
            torch.testing.assert_close(f, s)


def test_imports_only_torch_and_stdlib() -> None:
    """The module is copied into a standalone model.py: torch and the standard library only."""
    tree = ast.parse(SOURCE.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            roots.add((node.module or "").split(".")[0])
    assert roots <= ALLOWED_IMPORTS, roots - ALLOWED_IMPORTS


@pytest.mark.parametrize("name", ["KerasLSTM", "KerasGRU", "KerasSimpleRNN"])
def test_each_class_runs_from_header_plus_itself(name: str) -> None:
    """What the generator does: copy the header (everything but the classes) and one class,
    found by ``ast``; the copy must run on its own and compute what the module does."""
    source = SOURCE.read_text()
    tree = ast.parse(source)
    header = [n for n in tree.body if not isinstance(n, ast.ClassDef)]
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    snippet = "\n\n".join(ast.get_source_segment(source, n) for n in [*header, cls])
    namespace: dict = {"__name__": "generated_model"}
    exec(compile(snippet, "<generated>", "exec"), namespace)
    torch.manual_seed(0)
    reference = getattr(kl, name)(FEATURES, UNITS, bidirectional=True)
    copy = namespace[name](FEATURES, UNITS, bidirectional=True)
    copy.load_state_dict(reference.state_dict())
    x, mask = torch.randn(BATCH, STEPS, FEATURES), make_mask("mixed")
    out_r, final_r = reference(x, mask=mask)
    out_c, final_c = copy(x, mask=mask)
    torch.testing.assert_close(out_c, out_r, atol=0, rtol=0)
    for a, b in zip(final_c, final_r, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_zero_output_default_follows_bidirectional() -> None:
    for cls in (kl.KerasLSTM, kl.KerasGRU, kl.KerasSimpleRNN):
        assert cls(2, 3).zero_output_for_mask is False
        assert cls(2, 3, bidirectional=True).zero_output_for_mask is True
        assert cls(2, 3, zero_output_for_mask=True).zero_output_for_mask is True


def test_unknown_activation_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="hard_sigmoid"):
        kl.KerasLSTM(2, 3, gate_activation="hard_sigmoid")  # the variant must be named
    with pytest.raises(ValueError, match="nope"):
        kl.KerasGRU(2, 3, activation="nope")
    with pytest.raises(ValueError, match="nope"):
        kl.KerasSimpleRNN(2, 3, activation="nope")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mask_kind", ["none", "pre", "post", "holes", "all_padding", "mixed"])
def test_attention_pooling_matches_parity(dtype: torch.dtype, mask_kind: str) -> None:
    """DeepMoji's attention pooling as written for generated code = parity's, outputs, weights
    and gradients (input and W)."""
    from parity.ports.attention import AttentionWeightedAverage

    torch.manual_seed(7)
    theirs = AttentionWeightedAverage(FEATURES).to(dtype)
    ours = kl.AttentionWeightedAverage(FEATURES).to(dtype)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(BATCH, STEPS, FEATURES, dtype=dtype)
    mask = make_mask(mask_kind)
    results = []
    for module in (theirs, ours):
        xi = x.clone().requires_grad_(True)
        out, att = (
            module(xi, mask=mask, return_attention=True)
            if module is theirs
            else module(xi, mask=mask)
        )
        ((out * 1.3).sum() + (att * 0.7).sum()).backward()
        results.append((out, att, xi.grad, module.weight.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
