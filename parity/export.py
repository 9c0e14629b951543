"""Export a converted model for serving: a torch.export ExportedProgram, or ONNX.

``parity.export(model, path, format="exported-program" | "onnx")`` and ``parity export MODEL OUT
--format ...`` trace the converted module itself, with the batch and (unless the model fixes
it) the sequence length dynamic. The recurrent layers trace as one node each, the registered
operators ``parity::keras_lstm`` and ``parity::keras_rnn`` (parity.ports.recurrent.ops), so the
graph holds for every batch size, length and padding.

ONNX: each operator node becomes ONNX's own LSTM / GRU / RNN operator (``ONNX_TRANSLATIONS``):
Keras 2's hard sigmoid is ONNX's HardSigmoid with alpha 0.2, beta 0.5 (Keras 3's: alpha 1/6),
gate rows reordered (torch i, f, g, o -> ONNX i, o, f, c; GRU r, z, n -> z, r, h). Keras masking
becomes ``sequence_lens``: ONNX's recurrent operators stop each row at its length (post-padding),
so each row's real steps are first moved to the front (a per-row shift by its first real step,
undone on the output), which serves pre- and post-padded rows alike. The masked steps' outputs
(zeros, or a plain Keras RNN's carried output) and all-padding rows are then set as Keras sets
them. Rows with holes in their mask (real, padding, real) cannot be expressed this way: ONNX
export assumes each row's real tokens are contiguous, as ``pad_sequences`` makes them.

Parity notes: the ONNX model is checked in onnxruntime against Keras' golden outputs
(tests/test_export.py), pre- and post-padded, at several batch sizes and lengths.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from parity.arch import arch_of
from parity.arch.generic.model import GenericModel
from parity.files import write_atomic
from parity.layers import LSTM
from parity.ports.activations import ACTIVATIONS
from parity.ports.recurrent import ops as recurrent_ops
from parity.ports.recurrent.backends import cpp

#: Formats ``export`` writes, and their usual file suffixes.
FORMATS = {"exported-program": ".pt2", "onnx": ".onnx"}
#: ONNX opset the translations are written for (LSTM/GRU/RNN unchanged since opset 14).
ONNX_OPSET = 18
#: Length of the example input when the model accepts any length (tracing needs one).
EXAMPLE_LENGTH = 12
EXAMPLE_BATCH = 4


@dataclass
class ExportResult:
    """What was written: the path, the format, and which input dimensions stayed dynamic."""

    path: Path
    format: str
    dynamic: dict[str, bool] = field(default_factory=dict)
    program: torch.export.ExportedProgram | None = None

    def describe(self) -> str:
        dims = ", ".join(f"{k} {'dynamic' if v else 'fixed'}" for k, v in self.dynamic.items())
        return f"wrote {self.path} ({self.format}; {dims})"


# --- inputs -----------------------------------------------------------------------------------


def _fixed_length(model: nn.Module) -> int | None:
    try:
        return arch_of(model).input_length(model)
    except TypeError:  # not a converted model (a bare layer, the user's own module)
        return None


def example_ids(model: nn.Module, batch: int = EXAMPLE_BATCH) -> Tensor:
    """Token ids the model accepts, one pre-padded and one post-padded row among them (so
    tracing sees both kinds of masks), at the model's fixed length or ``EXAMPLE_LENGTH``."""
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if not embeddings:
        raise ValueError(
            "export traces token-id models (an Embedding first); pass example_inputs= for others"
        )
    vocab = embeddings[0].num_embeddings
    length = _fixed_length(model) or EXAMPLE_LENGTH
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, max(vocab, 2), (batch, length), generator=g)
    ids[0, : length // 2] = 0  # pre-padded
    ids[1, length - length // 3 :] = 0  # post-padded
    return ids


def _dynamic_shapes(model: nn.Module, inputs: Sequence[Tensor]) -> tuple[Any, ...]:
    """Batch dynamic for every input; the length too where the model does not fix it. Dim.AUTO,
    so a layer whose shape arithmetic pins a dimension (a Flatten) pins it without failing:
    ``ExportResult.dynamic`` says what stayed dynamic."""
    fixed = _fixed_length(model)
    specs = []
    for x in inputs:
        spec = {0: torch.export.Dim.AUTO}
        if x.dim() >= 2 and fixed is None:
            spec[1] = torch.export.Dim.AUTO
        specs.append(spec)
    if isinstance(model, GenericModel):  # forward(*inputs): one spec for the varargs tuple
        return (tuple(specs),)
    return tuple(specs)


def _dynamic_dims(program: torch.export.ExportedProgram) -> dict[str, bool]:
    """Which of the first user input's (batch, length) dimensions the program left symbolic."""
    user = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user[0])
    shape = node.meta["val"].shape
    names = ("batch", "length")[: len(shape)]
    return {name: not isinstance(shape[i], int) for i, name in enumerate(names)}


# --- torch.export -------------------------------------------------------------------------------


def export_program(
    model: nn.Module, example_inputs: Sequence[Tensor] | None = None
) -> torch.export.ExportedProgram:
    """torch.export of the model in eval mode, batch and length dynamic (see _dynamic_shapes)."""
    model = model.eval()
    inputs = tuple(example_inputs) if example_inputs is not None else (example_ids(model),)
    return torch.export.export(model, inputs, dynamic_shapes=_dynamic_shapes(model, inputs))


#: The dimensions ``CompiledModel`` keeps unbacked, tried in this order: batch and length (token
#: ids and sequences), then batch only (for a model that cannot trace with its second dimension
#: unknown).
UNBACKED_DIMS: tuple[tuple[int, ...], ...] = ((0, 1), (0,))


class CompiledModel(nn.Module):
    """``torch.compile(model, dynamic=True)`` whose batch and length dimensions are never
    specialised.

    torch specialises sizes 0 and 1: with ``dynamic=True`` a batch of 1, or a text of one token,
    still compiles a graph of its own. Here each call marks dimensions 0 and 1 of its tensor
    arguments unbacked first (``torch._dynamo.decorators.mark_unbacked``), so one graph serves
    every batch size and length, 1 included. A model that cannot be traced that way is compiled
    again with dimension 0 only unbacked and, failing that too, with plain ``dynamic=True``
    (with a warning). The C++ LSTM extension is built (or loaded) before the first trace, so
    a traced training step uses it from the start.
    """

    def __init__(self, model: nn.Module, **compile_kwargs: Any) -> None:
        super().__init__()
        self.model = model
        self._kwargs = {"dynamic": True, **compile_kwargs}
        self._compiled = torch.compile(model, **self._kwargs)
        self._level = 0  # index into UNBACKED_DIMS; past its end: plain dynamic=True
        if any(isinstance(m, LSTM) for m in model.modules()):
            cpp.available()  # a trace only uses the extension if already loaded

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        while self._level < len(UNBACKED_DIMS):
            try:
                with _unbacked((*args, *kwargs.values()), UNBACKED_DIMS[self._level]):
                    return self._compiled(*args, **kwargs)
            except Exception as e:  # torch's tracing errors have no common public base class
                self._level += 1
                if self._level == len(UNBACKED_DIMS):
                    import warnings

                    warnings.warn(
                        f"parity.compile_model: the batch dimension cannot stay unbacked for "
                        f"this model ({type(e).__name__}); compiling with dynamic=True (batch 1 "
                        f"compiles its own graph)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                self._compiled = torch.compile(self.model, **self._kwargs)
        return self._compiled(*args, **kwargs)


@contextlib.contextmanager
def _unbacked(values: Iterable[Any], dims: tuple[int, ...]) -> Iterator[None]:
    """The tensors among ``values`` with ``dims`` (those they have) marked unbacked for the
    duration: the caller's tensors leave unmarked (a retry with fewer dimensions, or another
    compiled function, must not see the marks)."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    before = [set(getattr(t, "_dynamo_unbacked_indices", ())) for t in tensors]
    for t in tensors:
        for dim in dims:
            if t.dim() > dim:
                torch._dynamo.decorators.mark_unbacked(t, dim)
    try:
        yield
    finally:
        for t, marks in zip(tensors, before, strict=True):
            t._dynamo_unbacked_indices = marks


def compile_model(model: nn.Module, **compile_kwargs: Any) -> CompiledModel:
    """torch.compile for a converted model: one graph for every batch size and every length, 1
    included (see CompiledModel); keyword arguments go to torch.compile."""
    return CompiledModel(model, **compile_kwargs)


# --- ONNX ---------------------------------------------------------------------------------------


def _onnx_activation(name: str) -> tuple[str, list[float], list[float]]:
    """A parity activation as an ONNX recurrent activation: (name, alphas, betas)."""
    spec = ACTIVATIONS[name]
    if spec.hard_sigmoid is not None:  # clip(slope * x + offset, 0, 1)
        return "HardSigmoid", [spec.fused.scale], [spec.fused.offset]
    plain = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
    if name in plain:
        return plain[name], [], []
    if name == "linear":
        return "Affine", [1.0], [0.0]
    raise ValueError(f"activation {name!r} has no ONNX recurrent equivalent")


def _activation_attributes(per_direction: list[str], n_dir: int) -> dict[str, Any]:
    names, alphas, betas = [], [], []
    for _ in range(n_dir):
        for act in per_direction:
            name, alpha, beta = _onnx_activation(act)
            names.append(name)
            alphas += alpha
            betas += beta
    attrs: dict[str, Any] = {"activations": names}
    if alphas:
        attrs["activation_alpha"] = alphas
        attrs["activation_beta"] = betas
    return attrs


def _rows(op: Any, w: Any, hidden: int, blocks: Sequence[int]) -> Any:
    """Gate blocks of w's rows in the given order (torch's order -> ONNX's)."""
    index = [b * hidden + j for b in blocks for j in range(hidden)]
    return op.Gather(w, op.Constant(value_ints=index), axis=0)


def _stack(op: Any, tensors: list[Any]) -> Any:
    """(D, ...) from per-direction tensors."""
    axes = op.Constant(value_ints=[0])
    return op.Concat(*[op.Unsqueeze(t, axes) for t in tensors], axis=0)


def _recurrent(
    op: Any,
    kind: str,
    x: Any,
    states: list[Any],
    mask: Any,
    weights: list[tuple[Any, Any, Any]],
    hidden: int,
    attributes: dict[str, Any],
    zero_output_for_mask: bool,
) -> tuple[Any, list[Any]]:
    """An ONNX LSTM/GRU/RNN node with Keras masking around it. x (T, B, in); states (D, B, h);
    mask (T, B) bool or None; weights per direction (W, R, B) in ONNX's layout. Returns output
    (T, B, D*h) and the final states."""
    n_dir = len(weights)
    w, r, b = (_stack(op, [d[i] for d in weights]) for i in range(3))
    direction = "bidirectional" if n_dir == 2 else "forward"
    i64 = 7  # onnx.TensorProto.INT64
    if mask is None:
        outs = getattr(op, kind)(
            x, w, r, b, None, *states, direction=direction, hidden_size=hidden,
            **attributes,
        )  # fmt: skip
        y, finals = outs[0], list(outs[1:])
        return _merge_directions(op, y, n_dir, hidden), finals

    m = op.Cast(mask, to=i64)  # (T, B)
    lengths = op.ReduceSum(m, op.Constant(value_ints=[0]), keepdims=0)  # (B,)
    start = op.ArgMax(m, axis=0, keepdims=0)  # (B,) first real step (0 for all-padding rows)
    shape = op.Shape(x)
    steps = op.Gather(shape, op.Constant(value_int=0), axis=0)  # T
    t = op.Unsqueeze(op.Range(op.Constant(value_int=0), steps, op.Constant(value_int=1)),
                     op.Constant(value_ints=[1]))  # (T, 1)  # fmt: skip
    # Real steps first: shifted[t, b] = x[(t + start_b) mod T, b], so each row is post-padded.
    src = op.Mod(op.Add(t, start), steps)  # (T, B)
    x_idx = op.Expand(op.Unsqueeze(src, op.Constant(value_ints=[2])), shape)
    shifted = op.GatherElements(x, x_idx, axis=0)
    has_steps = op.Greater(lengths, op.Constant(value_int=0))  # (B,)
    # A row with no real step runs one (its result is replaced below): ONNX wants lengths >= 1.
    seq_lens = op.Cast(op.Max(lengths, op.Constant(value_int=1)), to=6)  # int32
    outs = getattr(op, kind)(
        shifted, w, r, b, seq_lens, *states, direction=direction, hidden_size=hidden,
        **attributes,
    )  # fmt: skip
    y, finals = outs[0], list(outs[1:])  # y (T, D, B, h)
    keep = op.Unsqueeze(has_steps, op.Constant(value_ints=[0, 2]))  # (1, B, 1)
    finals = [op.Where(keep, f, s) for f, s in zip(finals, states, strict=True)]
    # Back to time order: out[t, b] = y[(t - start_b) mod T, b] at real steps.
    back = op.Mod(op.Add(op.Sub(t, start), steps), steps)  # (T, B)
    real = op.Unsqueeze(mask, op.Constant(value_ints=[2]))  # (T, B, 1)
    per_direction = []
    for d in range(n_dir):
        y_d = op.Gather(y, op.Constant(value_ints=[d]), axis=1)  # (T, 1, B, h)
        y_d = op.Squeeze(y_d, op.Constant(value_ints=[1]))  # (T, B, h)
        y_shape = op.Shape(y_d)
        idx = op.Expand(op.Unsqueeze(back, op.Constant(value_ints=[2])), y_shape)
        y_d = op.GatherElements(y_d, idx, axis=0)
        fill = op.CastLike(op.Constant(value_float=0.0), y_d)
        if not zero_output_for_mask:
            # A plain Keras RNN repeats its last output at masked steps processed after the real
            # ones: after the row's end going forward, before its start going backward.
            end = op.Add(start, lengths)
            after = op.GreaterOrEqual(t, end) if d == 0 else op.Less(t, start)  # (T, B)
            carried = op.And(after, has_steps)
            h_last = op.Gather(finals[0], op.Constant(value_int=d), axis=0)  # (B, h)
            fill = op.Where(op.Unsqueeze(carried, op.Constant(value_ints=[2])), h_last, fill)
        per_direction.append(op.Where(real, y_d, fill))
    out = per_direction[0] if n_dir == 1 else op.Concat(*per_direction, axis=-1)
    return out, finals


def _merge_directions(op: Any, y: Any, n_dir: int, hidden: int) -> Any:
    """ONNX's (T, D, B, h) output as torch's (T, B, D*h)."""
    y = op.Transpose(y, perm=[0, 2, 1, 3])  # (T, B, D, h)
    return op.Reshape(y, op.Constant(value_ints=[0, 0, n_dir * hidden]))


def _bias(op: Any, b_ih: Any, b_hh: Any, hidden: int, blocks: Sequence[int], like: Any) -> Any:
    """ONNX's [input bias; recurrent bias] (2 * gates * h,) from torch's two (or none)."""
    size = len(blocks) * hidden
    zeros = op.CastLike(op.ConstantOfShape(op.Constant(value_ints=[size])), like)
    wb = zeros if b_ih is None else _rows(op, b_ih, hidden, blocks)
    rb = zeros if b_hh is None else _rows(op, b_hh, hidden, blocks)
    return op.Concat(wb, rb, axis=0)


#: Torch gate blocks in ONNX's order. LSTM: torch (i, f, g, o) -> ONNX (i, o, f, c).
LSTM_BLOCKS = (0, 3, 1, 2)
#: GRU: parity (r, z, n) -> ONNX (z, r, h).
GRU_BLOCKS = (1, 0, 2)


def _lstm_onnx(
    x: Any, h0: Any, c0: Any, mask: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any,
    w_ih_reverse: Any, w_hh_reverse: Any, b_ih_reverse: Any, b_hh_reverse: Any,
    gate: str, activation: str, zero_output_for_mask: bool,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """parity::keras_lstm as ONNX's LSTM (see the module docstring)."""
    from onnxscript import opset18 as op

    hidden = int(w_hh.shape[1])
    directions = [(w_ih, w_hh, b_ih, b_hh)]
    if w_ih_reverse is not None:
        directions.append((w_ih_reverse, w_hh_reverse, b_ih_reverse, b_hh_reverse))
    weights = [
        (
            _rows(op, wi, hidden, LSTM_BLOCKS),
            _rows(op, wh, hidden, LSTM_BLOCKS),
            _bias(op, bi, bh, hidden, LSTM_BLOCKS, wi),
        )
        for wi, wh, bi, bh in directions
    ]
    attrs = _activation_attributes([gate, activation, activation], len(directions))
    out, (h, c) = _recurrent(
        op, "LSTM", x, [h0, c0], mask, weights, hidden, attrs, zero_output_for_mask
    )
    return out, h, c


def _rnn_onnx(
    x: Any, h0: Any, mask: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any,
    w_ih_reverse: Any, w_hh_reverse: Any, b_ih_reverse: Any, b_hh_reverse: Any,
    cell: str, gate: str, activation: str, zero_output_for_mask: bool,
) -> tuple[Any, Any]:  # fmt: skip
    """parity::keras_rnn as ONNX's GRU (reset_after = linear_before_reset) or RNN."""
    from onnxscript import opset18 as op

    hidden = int(w_hh.shape[1])
    directions = [(w_ih, w_hh, b_ih, b_hh)]
    if w_ih_reverse is not None:
        directions.append((w_ih_reverse, w_hh_reverse, b_ih_reverse, b_hh_reverse))
    weights = []
    if cell == "simple":
        kind, acts, extra = "RNN", [activation], {}
        for wi, wh, bi, bh in directions:
            weights.append((wi, wh, _bias(op, bi, bh, hidden, (0,), wi)))
    else:
        reset_after = cell == "gru"
        kind, acts = "GRU", [gate, activation]
        extra = {"linear_before_reset": int(reset_after)}
        for wi, wh, bias, _ in directions:
            if bias is None:
                b = _bias(op, None, None, hidden, GRU_BLOCKS, wi)
            elif reset_after:  # (2, 3h): [input; recurrent]
                first = op.Constant(value_int=0)
                second = op.Constant(value_int=1)
                b = _bias(
                    op,
                    op.Gather(bias, first, axis=0),
                    op.Gather(bias, second, axis=0),
                    hidden,
                    GRU_BLOCKS,
                    wi,
                )
            else:  # (3h,): the input bias; Keras' reset_before GRU has no recurrent one
                b = _bias(op, bias, None, hidden, GRU_BLOCKS, wi)
            weights.append(
                (_rows(op, wi, hidden, GRU_BLOCKS), _rows(op, wh, hidden, GRU_BLOCKS), b)
            )
    attrs = {**_activation_attributes(acts, len(directions)), **extra}
    out, (h,) = _recurrent(op, kind, x, [h0], mask, weights, hidden, attrs, zero_output_for_mask)
    return out, h


#: The registered operators -> their ONNX translations (torch.onnx.export's
#: custom_translation_table).
ONNX_TRANSLATIONS = {
    torch.ops.parity.keras_lstm.default: _lstm_onnx,
    torch.ops.parity.keras_rnn.default: _rnn_onnx,
}
assert recurrent_ops.NAMESPACE == "parity"

#: The module whose default registry torch.onnx.export's (dynamo) exporter reads the ONNX
#: functions of every operator from, on each export.
ONNX_FUNCTION_REGISTRY = "onnxscript.function_libs.torch_lib.registration"


def _register_onnx_translations(registration: ModuleType) -> None:
    """Put the recurrent operators' translations into onnxscript's default registry, so a plain
    ``torch.onnx.export(model, (ids,))`` translates them as ``parity.export`` does."""
    try:
        for op, translation in ONNX_TRANSLATIONS.items():
            registration.torch_op(op.name(), trace_only=True)(translation)
    except Exception as exc:  # another onnxscript API: torch.onnx.export must still import
        warnings.warn(
            f"parity: could not register the recurrent operators' ONNX translations with "
            f"onnxscript ({type(exc).__name__}: {exc}); use parity.export for ONNX",
            RuntimeWarning,
            stacklevel=2,
        )


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``then(module)`` right after module ``name`` is first imported. Importing onnxscript
    with parity would cost every user a second; this registers only when an ONNX export
    imports it."""

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; and the lookup below must not find this finder
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, then = spec.loader.exec_module, self.then

        def exec_then(module: ModuleType) -> None:
            exec_module(module)
            then(module)

        spec.loader.exec_module = exec_then  # type: ignore[method-assign]
        return spec


def register_onnx_translations() -> None:
    """Make plain torch.onnx.export translate parity's recurrent operators: now if onnxscript's
    registry is loaded, else when it is (called once, by ``import parity``)."""
    loaded = sys.modules.get(ONNX_FUNCTION_REGISTRY)
    if loaded is not None:
        _register_onnx_translations(loaded)
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(ONNX_FUNCTION_REGISTRY, _register_onnx_translations))


register_onnx_translations()


def export_onnx(
    model: nn.Module, path: str | Path, example_inputs: Sequence[Tensor] | None = None
) -> ExportResult:
    """The model as an ONNX file (torch.onnx's dynamo exporter, the registered operators
    translated by ONNX_TRANSLATIONS), batch and length dynamic."""
    program = export_program(model, example_inputs)
    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        custom_translation_table=ONNX_TRANSLATIONS,
        opset_version=ONNX_OPSET,
        optimize=True,
        verbose=False,
    )
    path = Path(path)
    # One protobuf (a model's weights inline; ONNX caps a protobuf at 2 GB, far above these
    # models), written atomically like every file parity writes.
    data = onnx_program.model_proto.SerializeToString()
    write_atomic(path, lambda f: f.write(data), "ONNX file")
    return ExportResult(path, "onnx", _dynamic_dims(program), program)


def export(
    model: nn.Module,
    path: str | Path,
    format: str = "exported-program",
    example_inputs: Sequence[Tensor] | None = None,
) -> ExportResult:
    """Write ``model`` to ``path`` as an ExportedProgram (torch.export.save; load it back with
    torch.export.load, no parity needed beyond ``import parity`` for its operators) or ONNX.

    ``example_inputs``: what to trace with; by default token ids fitting the model. Batch and,
    where the model allows, length are dynamic: the result says which stayed so.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    if format == "onnx":
        return export_onnx(model, path, example_inputs)
    program = export_program(model, example_inputs)
    path = Path(path)
    write_atomic(path, lambda f: torch.export.save(program, f), "exported program")
    return ExportResult(path, format, _dynamic_dims(program), program)
