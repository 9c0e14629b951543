"""One harness for every pair: same inputs, forward, backward of the same scalar, compare.

The scalar is sum(output * loss_weights) with loss_weights fixed in the golden file, so Keras
and torch differentiate exactly the same function. Torch gradients are mapped back to Keras
weight names through the pair's own mapping table (the inverse of the transform that converted
the weight), so a failure names the Keras weight.

Golden file keys (written by reference_keras.golden):
  ids, loss_weights, meta (JSON: pair, outputs, forward_kwargs, activations, versions)
  output/<name>                    model outputs (output, attention)
  grad/<layer>/<weight>            d loss / d Keras weight, Keras layout
  grad_activation/<module>         d loss / d that module's output (e.g. the embedding output)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from parity.check.tolerances import Tolerance, tolerance_for
from parity.convert.transforms import TRANSFORMS

OUTPUT_PREFIX = "output/"
GRAD_PREFIX = "grad/"
ACTIVATION_GRAD_PREFIX = "grad_activation/"
KIND_BY_PREFIX = {
    OUTPUT_PREFIX: "output",
    GRAD_PREFIX: "gradient",
    ACTIVATION_GRAD_PREFIX: "gradient",
}


@dataclass
class Comparison:
    """One compared quantity; ``where`` is the index of the largest absolute difference."""

    name: str
    kind: str
    max_abs: float
    max_rel: float
    where: tuple[int, ...]
    atol: float
    rtol: float
    passed: bool
    problem: str = ""

    def __str__(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        detail = self.problem or (
            f"max abs {self.max_abs:.3g} at {self.where}, max rel {self.max_rel:.3g} "
            f"(atol {self.atol:g}, rtol {self.rtol:g})"
        )
        return f"{status} {self.kind:8s} {self.name}: {detail}"


def load_golden(path: str | Path) -> dict[str, np.ndarray]:
    """A golden .npz as plain arrays (never unpickles)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def compare(
    name: str, kind: str, ours: np.ndarray, keras: np.ndarray, tol: Tolerance
) -> Comparison:
    """Compare one array with Keras' (numpy.allclose semantics), recording the worst place."""
    ours = np.asarray(ours, dtype=np.float64)
    keras = np.asarray(keras, dtype=np.float64)
    if ours.shape != keras.shape:
        return Comparison(
            name,
            kind,
            np.inf,
            np.inf,
            (),
            tol.atol,
            tol.rtol,
            False,
            f"shape {ours.shape} vs Keras {keras.shape}",
        )
    if ours.size == 0:
        return Comparison(name, kind, 0.0, 0.0, (), tol.atol, tol.rtol, True)
    diff = np.abs(ours - keras)
    diff = np.where(np.isnan(diff), np.inf, diff)
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    rel = diff / np.maximum(np.abs(keras), np.finfo(np.float64).tiny)
    passed = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(keras)))
    return Comparison(
        name, kind, float(diff.max()), float(rel.max()), where, tol.atol, tol.rtol, passed
    )


def torch_side(
    model: nn.Module,
    mapping: Sequence[tuple[str | None, str, str]],
    ids: torch.Tensor,
    loss_weights: torch.Tensor,
    *,
    outputs: Sequence[str] = ("output",),
    forward_kwargs: Mapping[str, Any] | None = None,
    activations: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Outputs, and gradients of sum(output * loss_weights) under Keras names."""
    model.zero_grad(set_to_none=True)
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            output.retain_grad()
            captured[name] = output

        return hook

    handles = [model.get_submodule(name).register_forward_hook(keep(name)) for name in activations]
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
    params = dict(model.named_parameters())
    for keras_name, torch_name, how in mapping:
        if keras_name is None:
            continue  # a parameter Keras does not have (e.g. LSTM bias_hh, fixed at zero)
        grad = params[torch_name].grad
        value = np.zeros(tuple(params[torch_name].shape)) if grad is None else grad.cpu().numpy()
        found[f"{GRAD_PREFIX}{keras_name}"] = TRANSFORMS[how].to_keras(value)
    for name, tensor in captured.items():
        found[f"{ACTIVATION_GRAD_PREFIX}{name}"] = tensor.grad.detach().cpu().numpy()
    return found


def compare_to_golden(
    model: nn.Module,
    mapping: Sequence[tuple[str | None, str, str]],
    golden: Mapping[str, np.ndarray],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[Comparison]:
    """Run ``model`` on a golden file's inputs and compare every output and gradient."""
    meta = json.loads(str(golden["meta"]))
    model = model.to(device=device, dtype=dtype)
    ids = torch.from_numpy(np.asarray(golden["ids"])).to(device)
    loss_weights = torch.from_numpy(np.asarray(golden["loss_weights"])).to(device, dtype)
    ours = torch_side(
        model,
        mapping,
        ids,
        loss_weights,
        outputs=meta["outputs"],
        forward_kwargs=meta.get("forward_kwargs", {}),
        activations=meta.get("activations", []),
    )
    rows = []
    for key in sorted(golden.keys()):
        kind = next((k for p, k in KIND_BY_PREFIX.items() if key.startswith(p)), None)
        if kind is None:
            continue
        tol = tolerance_for(dtype, device, kind)
        if key not in ours:
            rows.append(
                Comparison(
                    key, kind, np.inf, np.inf, (), tol.atol, tol.rtol, False, "no torch counterpart"
                )
            )
            continue
        rows.append(compare(key, kind, ours[key], golden[key], tol))
    rows += [
        Comparison(key, "gradient", np.inf, np.inf, (), 0.0, 0.0, False, "not in the golden file")
        for key in ours
        if key not in golden
    ]
    return rows
