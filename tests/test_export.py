"""Export and compilation: the registered recurrent operators (parity.ports.recurrent.ops),
torch.export of the converted modules themselves, ONNX through onnxruntime, torch.compile.

The operators must compute what the reference loops compute, outputs and gradients, and pass the
golden parity cases; the exported programs and ONNX files must reproduce Keras' golden numbers
at other batch sizes and lengths than the ones traced, pre- and post-padded.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity.check import load_golden, tolerance_for
from parity.check.run import check, subject_for
from parity.cli import main
from parity.export import FORMATS, export, export_program
from parity.keras.read import read_keras_file
from parity.ports import GRU, LSTM, SimpleRNN
from parity.ports.recurrent import backends, operators
from tests.golden_cases import CASES, GOLDEN, WEIGHTS, GoldenCase

needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "onnxscript")),
    reason="onnx, onnxruntime or onnxscript not installed (pip install 'keras-parity[export]')",
)

_TOL = tolerance_for(torch.float32, "cpu", "output")
TOL = {"atol": _TOL.atol, "rtol": _TOL.rtol}
DEEPMOJI = WEIGHTS / "deepmoji_small.keras"
#: Golden cases whose models have recurrent layers.
RECURRENT = [c for c in CASES if any(k in c.id for k in ("deepmoji", "rnn", "gru", "lstm"))]
#: Generic (zoo) models exported in the tests: GRU both variants, SimpleRNN (carried output at
#: masked steps), a plain LSTM (final state only).
GENERIC = [
    "bigru_classifier-init-float32",
    "bigru_classifier-reset_before-float32",
    "stacked_rnn-init-float32",
    "lstm_regressor-init-float32",
]


@pytest.fixture
def as_traced() -> Iterator[None]:
    """Eager forwards take the path a traced one takes: every recurrent layer through its
    registered operator."""
    with operators():
        yield


def _masks(batch: int, steps: int) -> dict[str, torch.Tensor | None]:
    t = torch.arange(steps)
    lengths = torch.tensor([steps, 1, 3, 0, steps - 2, 2])[:batch]  # 0: an all-padding row
    holes = torch.rand(batch, steps, generator=torch.Generator().manual_seed(3)) > 0.4
    return {
        "none": None,
        "pre": t[None, :] >= steps - lengths[:, None],
        "post": t[None, :] < lengths[:, None],
        "holes": holes,
    }


LAYERS: dict[str, Callable[[bool, bool], torch.nn.Module]] = {
    "lstm_hard_sigmoid": lambda bi, zero: LSTM(
        5,
        7,
        num_layers=2,
        batch_first=True,
        bidirectional=bi,
        gate_activation="hard_sigmoid_keras2",
        zero_output_for_mask=zero,
    ),
    "lstm_unfused": lambda bi, zero: LSTM(
        5,
        7,
        batch_first=True,
        bidirectional=bi,
        gate_activation="sigmoid",
        activation="hard_sigmoid_keras3",
        zero_output_for_mask=zero,
    ),
    "gru": lambda bi, zero: GRU(
        5, 7, bidirectional=bi, gate_activation="hard_sigmoid_keras2", zero_output_for_mask=zero
    ),
    "gru_reset_before": lambda bi, zero: GRU(
        5, 7, bidirectional=bi, reset_after=False, bias=bi, zero_output_for_mask=zero
    ),
    "simple_rnn": lambda bi, zero: SimpleRNN(
        5, 7, bidirectional=bi, activation="relu", zero_output_for_mask=zero
    ),
}


def _forward_backward(layer: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None):
    layer.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    out, state = layer(x, mask=mask)
    h = state[0] if isinstance(state, tuple) else state
    (out.sin().sum() + (h * 1.5).cos().sum()).backward()
    return [out, h, x.grad, *(p.grad for p in layer.parameters())]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("zero_output", [True, False])
def test_operator_matches_reference_loop(
    layer: str, bidirectional: bool, zero_output: bool
) -> None:
    """Outputs, final state and every gradient, float64, every kind of mask."""
    torch.manual_seed(0)
    module = LAYERS[layer](bidirectional, zero_output).double()
    x = torch.randn(6, 9, 5, dtype=torch.float64)
    for name, mask in _masks(6, 9).items():
        reference = _forward_backward(module, x, mask)
        with operators():
            ours = _forward_backward(module, x, mask)
        for i, (a, b) in enumerate(zip(ours, reference, strict=True)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"{name} #{i}")


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("zero_output", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_training_operator_matches_float64_reference(
    bidirectional: bool, zero_output: bool, bias: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keras_lstm_train (CPU float32, what a compiled training step runs): outputs, final state
    and every gradient against the float64 reference loop, every kind of mask; padded batches
    take its length-aware form (packed rows kept first), the others every step."""
    torch.manual_seed(2)
    module = LSTM(5, 20, num_layers=2, batch_first=True, bidirectional=bidirectional,
                  gate_activation="hard_sigmoid_keras2", zero_output_for_mask=zero_output,
                  bias=bias)  # fmt: skip
    x0, h0 = torch.zeros(1, 1, 1), torch.zeros(1, 1, 1)
    if not backends.cpp_training(x0, h0, h0, "hard_sigmoid_keras2", "tanh"):
        pytest.skip("the C++ training loop is not built here")
    packed_calls: list[int] = []
    forward = backends.packed.train_forward

    def spied(*args: object, **kwargs: object) -> object:
        packed_calls.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(backends.packed, "train_forward", spied)
    x = torch.randn(6, 9, 5)
    tol = tolerance_for(torch.float32, "cpu", "gradient")
    t = torch.arange(9)[None, :]
    starts, ends = torch.tensor([0, 2, 4, 1, 3, 8])[:, None], torch.tensor([9, 5, 8, 1, 7, 9])
    masks = {**_masks(6, 9), "both_sides": (t >= starts) & (t < ends[:, None])}
    for name, mask in masks.items():
        expected = _forward_backward(copy.deepcopy(module).double().eval(), x.double(), mask)
        calls = len(packed_calls)
        with operators():
            ours = _forward_backward(module, x, mask)
        padded = name in ("pre", "post", "both_sides")
        assert len(packed_calls) - calls == (module.num_layers if padded else 0), name
        for i, (a, b) in enumerate(zip(ours, expected, strict=True)):
            torch.testing.assert_close(
                a.double(),
                b,
                rtol=tol.rtol,
                atol=tol.atol,
                msg=lambda m, w=f"{name} #{i}": f"{w}: {m}",
            )


def test_lstm_impl_op_is_the_operator() -> None:
    lstm = LSTM(4, 3, batch_first=True, bidirectional=True, impl="op")
    graph = torch.export.export(lstm, (torch.randn(2, 5, 4),)).graph
    targets = {n.target for n in graph.nodes if n.op == "call_function"}
    assert torch.ops.parity.keras_lstm.default in targets


def test_operators_pass_opcheck() -> None:
    """Schema, fake (meta) implementation, autograd registration, dynamic-shape tracing."""
    g = torch.Generator().manual_seed(1)
    t, b, n_in, h = 4, 3, 5, 6
    mask = torch.rand(b, t, generator=g).t() > 0.3

    def w(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, requires_grad=True)

    lstm = [w(4 * h, n_in), w(4 * h, h), w(4 * h), w(4 * h)] * 2
    x = w(b, t, n_in).transpose(0, 1)  # (T, B, in) as the layers pass it: a transposed view
    h0, c0 = w(2, b, h), w(2, b, h)
    args = (x, h0, c0, mask, *lstm, "hard_sigmoid_keras2", "tanh", True)
    torch.library.opcheck(torch.ops.parity.keras_lstm.default, args)
    if backends.cpp_training(x, h0, c0, "hard_sigmoid_keras2", "tanh"):
        torch.library.opcheck(torch.ops.parity.keras_lstm_train.default, args)
        padded = torch.arange(t)[:, None] < torch.tensor([t, 1, 0])[None, :]  # length-aware
        args_padded = (x, h0, c0, padded, *args[4:])
        torch.library.opcheck(torch.ops.parity.keras_lstm_train.default, args_padded)
    gru = [w(3 * h, n_in), w(3 * h, h), w(2, 3 * h), None]
    args = (x, h0[:1].detach(), mask, *gru, *[None] * 4, "gru", "sigmoid", "tanh", False)
    torch.library.opcheck(torch.ops.parity.keras_rnn.default, args)


@pytest.mark.parametrize("case", RECURRENT, ids=[c.id for c in RECURRENT])
def test_golden_through_operators(case: GoldenCase, as_traced: None) -> None:
    """Every recurrent golden case, outputs and gradients, with the layers run as the traced
    model runs them."""
    dtype = {"float32": torch.float32, "float64": torch.float64}[case.floatx]
    model = parity.load_keras(case.model_file, arch=case.pair, dtype=dtype)
    subject, _ = subject_for(model, read_keras_file(case.model_file))
    report = check(subject, load_golden(case.golden_file), dtype=dtype, explain=False)
    failed = [str(row) for row in report.rows if not row.passed]
    assert report.rows and not failed, "\n".join(failed)


# --- torch.export --------------------------------------------------------------------------------


def _golden(case_id: str) -> dict[str, np.ndarray]:
    return load_golden(GOLDEN / f"{case_id}.npz")


def _ragged(vocab: int, batch: int, steps: int, seed: int) -> torch.Tensor:
    """Random ids, rows pre-padded, post-padded, one of a single token, one all padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, steps), generator=g)
    ids[0, : steps // 2] = 0
    if batch > 1:
        ids[1, steps - steps // 3 :] = 0
    if batch > 2:
        ids[2, :-1] = 0
    if batch > 3:
        ids[3] = 0
    return ids


def _eager(model: torch.nn.Module, ids: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(ids).numpy()


@pytest.fixture(scope="module")
def deepmoji() -> torch.nn.Module:
    return parity.load_keras(DEEPMOJI)


@pytest.fixture(scope="module")
def deepmoji_program(deepmoji: torch.nn.Module) -> torch.export.ExportedProgram:
    return export_program(deepmoji)


def test_deepmoji_exports_with_dynamic_batch_and_length(
    deepmoji: torch.nn.Module, deepmoji_program: torch.export.ExportedProgram
) -> None:
    run = deepmoji_program.module()
    for padding in ("pre", "post"):
        golden = _golden(f"deepmoji-trained-real-texts-{padding}")
        ids = torch.from_numpy(golden["ids"]).long()
        with torch.inference_mode():
            np.testing.assert_allclose(run(ids).numpy(), golden["output/output"], **TOL)
    for batch, steps in ((1, 1), (2, 7), (9, 63)):
        ids = _ragged(deepmoji.config.vocab_size, batch, steps, seed=batch)
        with torch.inference_mode():
            np.testing.assert_allclose(run(ids).numpy(), _eager(deepmoji, ids), **TOL)


@pytest.mark.parametrize("case_id", GENERIC)
def test_generic_models_export_with_dynamic_batch_and_length(case_id: str) -> None:
    model = parity.load_keras(GOLDEN / f"{case_id}.keras")
    program = export_program(model)
    golden = _golden(case_id)
    run = program.module()
    with torch.inference_mode():
        ids = torch.from_numpy(golden["ids"]).long()
        np.testing.assert_allclose(run(ids).numpy(), golden["output/output"], **TOL)
        for batch, steps in ((1, 3), (7, 40)):
            ids = _ragged(60, batch, steps, seed=steps)
            np.testing.assert_allclose(run(ids).numpy(), _eager(model, ids), **TOL)


def test_fixed_length_model_exports_with_dynamic_batch(tmp_path: Path) -> None:
    """embedding_dense's Flatten fixes the length; the batch stays dynamic."""
    model = parity.load_keras(GOLDEN / "embedding_dense-init-float32.keras")
    result = export(model, tmp_path / "m.pt2")
    assert result.dynamic == {"batch": True, "length": False}
    golden = _golden("embedding_dense-init-float32")
    run = torch.export.load(tmp_path / "m.pt2").module()
    with torch.inference_mode():
        out = run(torch.from_numpy(golden["ids"]).long()).numpy()
    np.testing.assert_allclose(out, golden["output/output"], **TOL)


def test_exported_program_file_roundtrip(deepmoji: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "deepmoji.pt2"
    result = parity.export(deepmoji, path, format="exported-program")
    assert result.dynamic == {"batch": True, "length": True}
    loaded = torch.export.load(path).module()
    ids = _ragged(deepmoji.config.vocab_size, 5, 21, seed=4)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded(ids).numpy(), _eager(deepmoji, ids), **TOL)


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.pt2"
    assert main(["export", str(GOLDEN / "embedding_dense-init-float32.keras"), str(out)]) == 0
    assert out.exists() and "batch dynamic" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "missing.keras"), str(tmp_path / "x.pt2")]) == 1
    assert not (tmp_path / "x.pt2").exists()


def test_unknown_format_is_refused(deepmoji: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        export(deepmoji, tmp_path / "m", format="tflite")
    assert set(FORMATS) == {"exported-program", "onnx"}


# --- ONNX --------------------------------------------------------------------------------------


def _onnx_session(model: torch.nn.Module, path: Path, **kwargs: object):
    import onnxruntime

    result = export(model, path, format="onnx", **kwargs)
    assert result.dynamic.get("batch")
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _ort(session: object, *inputs: np.ndarray) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs, strict=True)))[0]


@needs_onnx
def test_deepmoji_onnx_matches_keras(deepmoji: torch.nn.Module, tmp_path: Path) -> None:
    session = _onnx_session(deepmoji, tmp_path / "deepmoji.onnx")
    for padding in ("pre", "post"):
        golden = _golden(f"deepmoji-trained-real-texts-{padding}")
        out = _ort(session, golden["ids"].astype(np.int64))
        np.testing.assert_allclose(out, golden["output/output"], **TOL)
    for batch, steps in ((1, 1), (2, 7), (9, 63)):
        ids = _ragged(deepmoji.config.vocab_size, batch, steps, seed=batch)
        np.testing.assert_allclose(_ort(session, ids.numpy()), _eager(deepmoji, ids), **TOL)


@needs_onnx
def test_plain_torch_onnx_export_of_deepmoji_matches_keras(
    deepmoji: torch.nn.Module, tmp_path: Path
) -> None:
    """``torch.onnx.export`` as users call it (no parity.export): importing parity registered
    the recurrent operators' translations; onnxruntime gives Keras' numbers."""
    import onnxruntime

    golden = _golden("deepmoji-trained-real-texts-pre")
    ids = torch.from_numpy(golden["ids"]).long()
    path = tmp_path / "plain.onnx"
    torch.onnx.export(deepmoji, (ids,), str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(_ort(session, ids.numpy()), golden["output/output"], **TOL)


def test_plain_torch_export_of_deepmoji_matches_keras(deepmoji: torch.nn.Module) -> None:
    golden = _golden("deepmoji-trained-real-texts-post")
    ids = torch.from_numpy(golden["ids"]).long()
    program = torch.export.export(deepmoji, (ids,))
    with torch.inference_mode():
        out = program.module()(ids).numpy()
    np.testing.assert_allclose(out, golden["output/output"], **TOL)


@needs_onnx
@pytest.mark.parametrize("case_id", GENERIC[:3])
def test_generic_onnx_matches_keras(case_id: str, tmp_path: Path) -> None:
    model = parity.load_keras(GOLDEN / f"{case_id}.keras")
    session = _onnx_session(model, tmp_path / "m.onnx")
    golden = _golden(case_id)
    np.testing.assert_allclose(
        _ort(session, golden["ids"].astype(np.int64)), golden["output/output"], **TOL
    )
    ids = _ragged(60, 5, 23, seed=5)
    np.testing.assert_allclose(_ort(session, ids.numpy()), _eager(model, ids), **TOL)


class _Sequence(torch.nn.Module):
    """A recurrent layer's whole output sequence and final h, the mask given as an input."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.layer(x, mask=mask)
        return out, state[0] if isinstance(state, tuple) else state


@needs_onnx
@pytest.mark.parametrize("layer", ["lstm_hard_sigmoid", "gru", "simple_rnn"])
def test_onnx_masked_steps_as_keras(layer: str, tmp_path: Path) -> None:
    """Every output step and the final state, both masked-output modes, two directions:
    the carried output of a plain Keras RNN included."""
    torch.manual_seed(0)
    module = _Sequence(LAYERS[layer](True, False)).eval()
    x = torch.randn(4, 9, 5)
    masks = _masks(6, 9)
    mask = torch.cat([masks["pre"][:3], masks["post"][3:4]])
    session = _onnx_session(module, tmp_path / "m.onnx", example_inputs=(x, mask))
    for steps, batch in ((9, 4), (13, 6)):
        x = torch.randn(batch, steps, 5)
        m = _masks(6, steps)
        mask = torch.cat([m["pre"][:3], m["post"][3:]])[:batch]
        with torch.inference_mode():
            expected = module(x, mask)
        names = [i.name for i in session.get_inputs()]
        got = session.run(None, dict(zip(names, (x.numpy(), mask.numpy()), strict=True)))
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b.numpy(), **TOL)


# --- torch.compile --------------------------------------------------------------------------------


def test_compile_traces_one_graph_for_every_batch_and_length(deepmoji: torch.nn.Module) -> None:
    """dynamic=True, fullgraph: no graph break, one graph for batches and lengths >= 2
    (aot_eager: the tracing is what is tested, not Inductor's code)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(deepmoji, dynamic=True, fullgraph=True, backend="aot_eager")
    with torch.inference_mode():
        for batch, steps in ((4, 12), (2, 5), (9, 40)):
            ids = _ragged(deepmoji.config.vocab_size, batch, steps, seed=steps)
            np.testing.assert_allclose(compiled(ids).numpy(), _eager(deepmoji, ids), **TOL)
    assert counters["stats"]["unique_graphs"] == 1


def test_compile_model_one_graph_batch_and_length_one_included(
    deepmoji: torch.nn.Module,
) -> None:
    """parity.compile_model: batch 1 and length 1 share the graph of the other sizes (plain
    dynamic=True compiles each of them on its own)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = parity.compile_model(deepmoji, fullgraph=True, backend="aot_eager")
    with torch.inference_mode():
        for batch, steps in ((4, 12), (1, 12), (1, 7), (6, 1), (1, 1), (6, 30)):
            ids = _ragged(deepmoji.config.vocab_size, batch, steps, seed=steps)
            np.testing.assert_allclose(compiled(ids).numpy(), _eager(deepmoji, ids), **TOL)
    assert counters["stats"]["unique_graphs"] == 1


def test_compile_model_training_one_graph(deepmoji: torch.nn.Module) -> None:
    """A compiled training step: one graph for every batch and length, 1 included; outputs and
    every gradient equal eager's."""
    from torch._dynamo.utils import counters

    model = copy.deepcopy(deepmoji).train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    torch._dynamo.reset()
    counters.clear()
    compiled = parity.compile_model(model, fullgraph=True, backend="aot_eager")
    tol = tolerance_for(torch.float32, "cpu", "gradient")
    for batch, steps in ((5, 9), (1, 1), (1, 6), (3, 1)):
        ids = _ragged(model.config.vocab_size, batch, steps, seed=batch + steps)
        results = []
        for run in (model, compiled):
            model.zero_grad(set_to_none=True)
            out = run(ids)
            (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
            results.append([out.detach(), *(p.grad.clone() for p in model.parameters())])
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, rtol=tol.rtol, atol=tol.atol)
    assert counters["stats"]["unique_graphs"] == 1


class _BranchesOn(torch.nn.Module):
    """Branches on one dimension of its input: that dimension cannot stay unbacked."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.shape[self.dim] == 1 else x + 1


@pytest.mark.parametrize("dim", [0, 1])
def test_compile_model_falls_back(dim: int) -> None:
    """A model that branches on its length is compiled with the batch alone unbacked (no
    warning); one that branches on its batch size with plain dynamic=True, with a warning.
    Either way the answers are the model's."""
    import warnings

    torch._dynamo.reset()
    compiled = parity.compile_model(_BranchesOn(dim), backend="eager", fullgraph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for shape in ((3, 4), (1, 4), (3, 1)):
            x = torch.randn(shape)
            torch.testing.assert_close(compiled(x), _BranchesOn(dim)(x))
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert bool(messages) == (dim == 0), messages


def test_traced_training_keeps_the_gates(deepmoji: torch.nn.Module) -> None:
    """A training forward traced on CPU float32 holds parity::keras_lstm_train (its backward
    reads the kept gates, nothing recomputed); outputs and every gradient equal eager's."""
    if not backends.cpp_training(
        torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), "sigmoid", "tanh"
    ):
        pytest.skip("the C++ training loop is not built here")
    model = copy.deepcopy(deepmoji).train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    ids = _ragged(model.config.vocab_size, 5, 9, seed=3)
    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, inputs: list) -> object:
        graphs.append(gm)
        return gm.forward

    results = []
    for run in (model, torch.compile(model, backend=backend, dynamic=True)):
        model.zero_grad(set_to_none=True)
        out = run(ids)
        (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        results.append([out.detach(), *(p.grad.clone() for p in model.parameters())])
    targets = {n.target for gm in graphs for n in gm.graph.nodes if n.op == "call_function"}
    train_op = torch.ops.parity.keras_lstm_train
    assert train_op in targets or train_op.default in targets
    tol = tolerance_for(torch.float32, "cpu", "gradient")
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=tol.rtol, atol=tol.atol)
