"""Export a converted model for serving: a torch.export ExportedProgram, or ONNX.

``parity.export(model, path, format="exported-program" | "onnx")`` and ``parity export MODEL OUT
--format ...`` trace the converted module itself, with the batch and (unless the model fixes
it) the sequence length dynamic. The recurrent layers trace as one node each, the registered
operators ``parity::keras_lstm`` and ``parity::keras_rnn`` (parity.ports.recurrent.ops), so the
graph holds for every batch size, length and padding.

ONNX: each operator node becomes ONNX's own LSTM / GRU / RNN operator, by the translations its
port gives (parity.ports.recurrent.onnx; the registry's ``onnx_translations``).

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
from parity.ports import CONVERTERS, LSTM
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
    try:
        vocab = arch_of(model).token_embedding(model).num_embeddings
    except (TypeError, ValueError) as exc:  # not a converted model, or not one taking ids
        raise ValueError(
            f"export traces token-id models (an Embedding first); pass example_inputs= for "
            f"others ({exc})"
        ) from exc
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

#: The module whose default registry torch.onnx.export's (dynamo) exporter reads the ONNX
#: functions of every operator from, on each export.
ONNX_FUNCTION_REGISTRY = "onnxscript.function_libs.torch_lib.registration"


def _register_onnx_translations(registration: ModuleType) -> None:
    """Put the recurrent operators' translations into onnxscript's default registry, so a plain
    ``torch.onnx.export(model, (ids,))`` translates them as ``parity.export`` does."""
    try:
        for op, translation in CONVERTERS.onnx_translations.items():
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
    translated by the ports' ONNX translations), batch and length dynamic."""
    program = export_program(model, example_inputs)
    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        custom_translation_table=dict(CONVERTERS.onnx_translations),
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
