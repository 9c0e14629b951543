"""One harness for every pair: same inputs, forward, backward of the same scalar, compare.

The scalar is sum(output * loss_weights) with loss_weights fixed in the golden file, so Keras
and torch differentiate exactly the same function. Torch gradients are mapped back to Keras
weight names through the pair's own mapping table (the inverse of the transform that converted
the weight), so a failure names the Keras weight. Intermediate activations are read through the
pair's activation points (parity.check.points), so a failure also says at which layer the two
computations part.

Golden file keys (written by parity.check.keras_side):
  ids, loss_weights, meta (JSON: pair, outputs, forward_kwargs, activations, activation_points,
                           versions, dtype, source file and its sha256)
  output/<name>                    model outputs (output, attention)
  activation/<keras layer>         that Keras layer's output (eval mode), per activation point
  grad/<layer>/<weight>            d loss / d Keras weight, Keras layout
  grad_activation/<module>         d loss / d that module's output (e.g. the embedding output)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from parity.check.points import Point, capture, points_from_meta
from parity.check.tolerances import QUANTITY_OF_KIND, Tolerance, tolerance_for
from parity.convert.transforms import TRANSFORMS

OUTPUT_PREFIX = "output/"
ACTIVATION_PREFIX = "activation/"
GRAD_PREFIX = "grad/"
ACTIVATION_GRAD_PREFIX = "grad_activation/"
KIND_BY_PREFIX = {
    ACTIVATION_PREFIX: "activation",
    OUTPUT_PREFIX: "output",
    GRAD_PREFIX: "gradient",
    ACTIVATION_GRAD_PREFIX: "gradient",
}
#: Table and report order of the kinds: where two computations part comes first.
KIND_ORDER = ("activation", "output", "gradient")

#: A mapping row (Keras weight or None, torch parameter, transform), as in parity.convert.mapping.
Row = tuple[str | None, str, str]


@dataclass
class Comparison:
    """One compared quantity; ``where`` is the index of the largest absolute difference.

    ``ratio`` is the fraction of the tolerance used: max |d| / (atol + rtol |keras|). The row
    passes when it is <= 1, and (ratio * atol, ratio * rtol) is the tightest tolerance of the
    same shape that would still pass.
    """

    name: str
    kind: str
    max_abs: float
    max_rel: float
    where: tuple[int, ...]
    atol: float
    rtol: float
    passed: bool
    problem: str = ""
    ratio: float = math.inf

    @property
    def tightest_atol(self) -> float:
        return self.ratio * self.atol

    @property
    def tightest_rtol(self) -> float:
        return self.ratio * self.rtol

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["where"] = list(self.where)
        row["tightest_atol"] = self.tightest_atol
        row["tightest_rtol"] = self.tightest_rtol
        # JSON has no inf: an unmeasurable row (shape mismatch, missing) reads null.
        finite = {k: v for k, v in row.items() if not isinstance(v, float) or math.isfinite(v)}
        return {k: finite.get(k) for k in row}

    def __str__(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        detail = self.problem or (
            f"max abs {self.max_abs:.3g} at {self.where}, max rel {self.max_rel:.3g} "
            f"(atol {self.atol:g}, rtol {self.rtol:g})"
        )
        return f"{status} {self.kind:8s} {self.name}: {detail}"


def missing(name: str, kind: str, tol: Tolerance, problem: str) -> Comparison:
    return Comparison(name, kind, math.inf, math.inf, (), tol.atol, tol.rtol, False, problem)


def load_golden(path: str | Path) -> dict[str, np.ndarray]:
    """A golden .npz as plain arrays (never unpickles)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def golden_meta(golden: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return json.loads(str(golden["meta"]))


def kind_of(key: str) -> str | None:
    return next((k for p, k in KIND_BY_PREFIX.items() if key.startswith(p)), None)


def compare(
    name: str, kind: str, ours: np.ndarray, keras: np.ndarray, tol: Tolerance
) -> Comparison:
    """Compare one array with Keras' (numpy.allclose semantics), recording the worst place."""
    ours = np.asarray(ours, dtype=np.float64)
    keras = np.asarray(keras, dtype=np.float64)
    if ours.shape != keras.shape:
        return missing(name, kind, tol, f"shape {ours.shape} vs Keras {keras.shape}")
    if ours.size == 0:
        return Comparison(name, kind, 0.0, 0.0, (), tol.atol, tol.rtol, True, ratio=0.0)
    diff = np.abs(ours - keras)
    diff = np.where(np.isnan(diff), np.inf, diff)
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    # Relative difference where Keras' value is not zero (a ratio to 0 says nothing).
    nonzero = keras != 0
    rel = diff[nonzero] / np.abs(keras[nonzero]) if nonzero.any() else np.zeros(1)
    bound = tol.atol + tol.rtol * np.abs(keras) + tol.scale_rtol * float(np.abs(keras).max())
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.max(np.where(diff == 0, 0.0, diff / bound)))
    passed = bool(np.all(diff <= bound))
    return Comparison(
        name,
        kind,
        float(diff.max()),
        float(rel.max()),
        where,
        tol.atol,
        tol.rtol,
        passed,
        ratio=ratio,
    )


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls on CUDA on or off for the duration (off for every comparison: Keras' numbers
    are full float32); restores the previous settings."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def torch_side(
    model: nn.Module,
    mapping: Sequence[Row],
    ids: torch.Tensor | np.ndarray,
    loss_weights: torch.Tensor,
    *,
    outputs: Sequence[str] = ("output",),
    forward_kwargs: Mapping[str, Any] | None = None,
    activations: Sequence[str] = (),
    points: Sequence[tuple[str, Point]] = (),
    grad_fixes: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """Outputs, activation points, and gradients of sum(output * loss_weights) under Keras names.

    ``activations`` are torch submodules whose output gradient is wanted (grad_activation/);
    ``points`` read Keras layers' outputs (activation/); ``grad_fixes`` (torch parameter ->
    function) undo a layout change made to a parameter before its gradient is mapped back.
    """
    model.zero_grad(set_to_none=True)
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            output.retain_grad()
            captured[name] = output

        return hook

    values, handles = capture(model, points)
    handles += [model.get_submodule(name).register_forward_hook(keep(name)) for name in activations]
    try:
        result = model(ids, **(forward_kwargs or {}))
    finally:
        for handle in handles:
            handle.remove()
    results = result if isinstance(result, tuple) else (result,)
    if len(results) != len(outputs):
        raise ValueError(f"model returned {len(results)} outputs, expected {list(outputs)}")
    (results[0] * loss_weights).sum().backward()
    found = {
        f"{OUTPUT_PREFIX}{name}": t.detach().cpu().numpy()
        for name, t in zip(outputs, results, strict=True)
    }
    found.update({f"{ACTIVATION_PREFIX}{k}": v.cpu().numpy() for k, v in values.items()})
    params = dict(model.named_parameters())
    fixes = grad_fixes or {}
    for keras_name, torch_name, how in mapping:
        if keras_name is None or torch_name not in params:
            # a buffer: a constant Keras does not have (an LSTM's bias_hh) or Keras'
            # non-trainable weights (moving statistics), which get no gradient
            continue
        grad = params[torch_name].grad
        value = np.zeros(tuple(params[torch_name].shape)) if grad is None else grad.cpu().numpy()
        if torch_name in fixes:
            value = fixes[torch_name](value)
        found[f"{GRAD_PREFIX}{keras_name}"] = TRANSFORMS[how].to_keras(value)
    for name, tensor in captured.items():
        found[f"{ACTIVATION_GRAD_PREFIX}{name}"] = tensor.grad.detach().cpu().numpy()
    return found


@dataclass
class Subject:
    """What a check runs on the torch side: the converted model and how to read it."""

    model: nn.Module
    mapping: Sequence[Row]
    pair: str | None = None
    #: (Keras layer name, point) in model order.
    points: Sequence[tuple[str, Point]] = ()
    #: Keras layer classes present in the file or model (decides which alternatives apply).
    classes: frozenset[str] = field(default_factory=frozenset)


def run_torch(
    subject: Subject,
    golden: Mapping[str, np.ndarray],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    model: nn.Module | None = None,
    ids: np.ndarray | None = None,
    grad_fixes: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    allow_tf32: bool = False,
) -> dict[str, np.ndarray]:
    """The torch side on a golden file's inputs (or ``ids``), with TF32 off unless asked."""
    meta = golden_meta(golden)
    model = (subject.model if model is None else model).to(device=device, dtype=dtype)
    ids = np.asarray(golden["ids"] if ids is None else ids)
    loss_weights = torch.from_numpy(np.asarray(golden["loss_weights"])).to(device, dtype)
    with tf32(allow_tf32):
        return torch_side(
            model,
            subject.mapping,
            # texts (a model that takes strings) go in as they are: its preprocessor reads them
            ids if ids.dtype.kind in "US" else torch.from_numpy(ids).to(device),
            loss_weights,
            outputs=meta["outputs"],
            forward_kwargs=meta.get("forward_kwargs", {}),
            activations=meta.get("activations", []),
            points=subject.points,
            grad_fixes=grad_fixes,
        )


def compare_all(
    ours: Mapping[str, np.ndarray],
    golden: Mapping[str, np.ndarray],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[Comparison]:
    """Every golden quantity against ours, in report order: activations (model order),
    outputs, gradients. Activations the golden file lacks are not compared (older files)."""
    rows: dict[str, list[Comparison]] = {kind: [] for kind in KIND_ORDER}
    order = [k for k in ours if k.startswith(ACTIVATION_PREFIX)]
    order += [k for k in golden if k not in order]
    for key in order:
        kind = kind_of(key)
        if kind is None or key not in golden:
            continue
        tol = tolerance_for(dtype, device, QUANTITY_OF_KIND[kind])
        if key not in ours:
            rows[kind].append(missing(key, kind, tol, "no torch counterpart"))
        else:
            rows[kind].append(compare(key, kind, ours[key], golden[key], tol))
    tol = tolerance_for(dtype, device, "gradient")
    rows["gradient"] += [
        missing(key, "gradient", tol, "not in the golden file")
        for key in ours
        if key not in golden and kind_of(key) == "gradient"
    ]
    return [row for kind in KIND_ORDER for row in rows[kind]]


def compare_to_golden(
    model: nn.Module,
    mapping: Sequence[Row],
    golden: Mapping[str, np.ndarray],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[Comparison]:
    """Run ``model`` on a golden file's inputs and compare every output and gradient."""
    points = points_from_meta(golden_meta(golden))
    ours = run_torch(Subject(model, mapping, points=points), golden, device=device, dtype=dtype)
    return compare_all(ours, golden, device=device, dtype=dtype)
