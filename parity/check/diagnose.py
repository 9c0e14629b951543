"""Why a check failed: re-run the torch side under the known alternatives and say which one
explains the gap.

Each alternative is one Keras/torch convention a conversion can get wrong (the hard-sigmoid
slope, GRU gate order, reset_after, the bias split, padding side, Flatten order, BatchNorm
epsilon, a kernel left untransposed, TF32). It applies when the file has a layer class it concerns
and the torch model has something to change, and produces variants: a modified copy of the model
(or other inputs, or TF32 on), with what it changed. A variant explains the gap when every row
passes under it. A layer's alternatives are its port's (``DIAGNOSES`` in its family file, listed
by ``LayerConverter.diagnoses``); the ones that concern a whole run (padding side, a transposed
square kernel, TF32) are here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch

from parity.check.harness import (
    ACTIVATION_PREFIX,
    OUTPUT_PREFIX,
    Comparison,
    Subject,
    compare_all,
    run_torch,
)
from parity.check.inputs import padding_shifts, roll_rows
from parity.ports import CONVERTERS
from parity.ports.diagnosis import Alternative, Variant, copy_model

#: A variant that shrinks the worst tolerance ratio by at least this factor, without passing,
#: is reported as explaining part of the gap.
PARTIAL_FACTOR = 100.0


# --- the alternatives of a whole run (the layers' own are their ports') ------------------------


def _padding_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    return [
        Variant(f"rows padded {'pre' if to == 'post' else 'post'} moved to {to}-padding", None, to)
        for to in ("post", "pre")
        if padding_shifts(ids, to).any()
    ]


def _transpose_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    """Square kernels load whichever way round they are: try each one transposed."""
    params = dict(subject.model.named_parameters())
    variants = []
    for keras_name, torch_name, _how in subject.mapping:
        param = params.get(torch_name)
        if keras_name is None or param is None or param.dim() != 2:
            continue
        if param.shape[0] != param.shape[1] or param.shape[0] < 2:
            continue
        model = copy_model(subject.model)
        target = dict(model.named_parameters())[torch_name]
        with torch.no_grad():
            target.copy_(target.t().clone())
        fix = {torch_name: lambda g: np.ascontiguousarray(g.T)}
        variants.append(
            Variant(f"{keras_name} transposed (-> {torch_name})", model, grad_fixes=fix)
        )
    return variants


def _tf32_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    if torch.device(device).type != "cuda":
        return []
    return [Variant("torch run with TF32 matmuls", allow_tf32=True)]


#: The alternatives that concern a whole run rather than a layer: the ports that list
#: "padding_side" (Embedding, Masking, the recurrent layers) say when it applies; the others
#: apply to any model.
RUN_ALTERNATIVES: dict[str, Alternative] = {
    "padding_side": Alternative(
        "padding side: {label} gives Keras' numbers, so the port masks by position "
        "(as pack_padded_sequence does) instead of by the 0 ids wherever they are",
        _padding_variants,
    ),
    "transposed_kernel": Alternative(
        "a square kernel converted without its transpose: {label}", _transpose_variants
    ),
    "tf32": Alternative(
        "TF32: {label} matches, so one side used TF32; keep it off on both (torch: "
        "torch.backends.cuda.matmul.allow_tf32 = False; TensorFlow: "
        "tf.config.experimental.enable_tensor_float_32_execution(False), as `parity golden` does)",
        _tf32_variants,
    ),
}
#: The order alternatives are tried in: the most specific conventions first, so the first that
#: explains a gap names the smallest cause. Any other (a plug-in's) follows, in registry order.
TRY_ORDER = (
    "hard_sigmoid",
    "gru_gate_order",
    "gru_reset_after",
    "bias_split",
    "padding_side",
    "flatten_order",
    "batchnorm_epsilon",
    "transposed_kernel",
    "tf32",
)


def alternatives() -> dict[str, Alternative]:
    """Every alternative, in the order tried, each with the Keras classes whose ports list it
    (none: any model): the ports' (parity.ports.CONVERTERS.diagnoses) and the run's."""
    found = {**CONVERTERS.diagnoses, **RUN_ALTERNATIVES}
    order = [n for n in TRY_ORDER if n in found] + [n for n in found if n not in TRY_ORDER]
    return {
        name: replace(found[name], keras_classes=CONVERTERS.diagnosed_classes(name))
        for name in order
    }


#: The alternatives of the built-in ports (``diagnose`` reads ``alternatives()`` afresh, so a
#: plug-in's registered later are tried too).
ALTERNATIVES: dict[str, Alternative] = alternatives()


# --- running them ------------------------------------------------------------------------------


def _worst(rows: Sequence[Comparison]) -> float:
    return max((row.ratio for row in rows), default=0.0)


def run_variant(
    subject: Subject,
    golden: Mapping[str, np.ndarray],
    variant: Variant,
    *,
    device: str | torch.device,
    dtype: torch.dtype,
    keep: Callable[[Comparison], bool] = lambda row: True,
) -> list[Comparison]:
    """The check's rows with the torch side re-run as ``variant`` says."""
    ids = np.asarray(golden["ids"])
    shifts = None
    if variant.padding_to is not None:
        shifts = padding_shifts(ids, variant.padding_to)
        ids = roll_rows(ids, shifts)
    ours = run_torch(
        subject,
        golden,
        device=device,
        dtype=dtype,
        model=variant.model,
        ids=ids,
        grad_fixes=variant.grad_fixes,
        allow_tf32=variant.allow_tf32,
    )
    if shifts is not None:  # time-indexed results back to the rows' original positions
        for key, value in ours.items():
            timed = key.startswith((OUTPUT_PREFIX, ACTIVATION_PREFIX)) and value.ndim >= 2
            if timed and value.shape[:2] == ids.shape:
                ours[key] = roll_rows(value, -shifts)
    rows = [row for row in compare_all(ours, golden, device=device, dtype=dtype) if keep(row)]
    if not variant.gradients_comparable:
        rows = [row for row in rows if row.kind != "gradient"]
    return rows


def diagnose(
    subject: Subject,
    golden: Mapping[str, np.ndarray],
    rows: Sequence[Comparison],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    keep: Callable[[Comparison], bool] = lambda row: True,
    only: Mapping[str, Alternative] | None = None,
) -> list[str]:
    """Lines saying where the first difference is and which alternative explains the gap."""
    failed = [row for row in rows if not row.passed]
    if not failed:
        return []
    first = failed[0]
    where = first.problem or f"max abs {first.max_abs:.3g} at {list(first.where)}"
    lines = [f"first difference: {first.kind} {first.name} ({where})"]
    ids = np.asarray(golden["ids"])
    classes = subject.classes
    baseline = _worst(rows)
    explained, partial = [], []
    tried_alternatives = alternatives() if only is None else only
    for name, alternative in tried_alternatives.items():
        if classes and alternative.keras_classes and not classes & alternative.keras_classes:
            continue
        for variant in alternative.variants(subject, ids, str(device)):
            try:
                tried = run_variant(subject, golden, variant, device=device, dtype=dtype, keep=keep)
            except (RuntimeError, ValueError, IndexError) as exc:
                lines.append(f"[{name}] could not try {variant.label}: {exc}")
                continue
            cause = alternative.cause.format(label=variant.label)
            if tried and all(row.passed for row in tried):
                only = "" if variant.gradients_comparable else " (forward rows; gradients move)"
                explained.append(f"[{name}] explains the gap{only}: {cause}")
                break  # one explanation per alternative: its smallest change
            elif _worst(tried) * PARTIAL_FACTOR <= baseline:
                partial.append(
                    f"[{name}] explains part of the gap (worst row {_worst(tried):.2g} of its "
                    f"tolerance instead of {baseline:.2g}): {cause}"
                )
    if explained or partial:
        return lines + explained + partial
    tried_names = [
        name
        for name, alt in tried_alternatives.items()
        if not classes or not alt.keras_classes or classes & alt.keras_classes
    ]
    return [
        *lines,
        f"no known alternative explains it (tried: {', '.join(tried_names)}); "
        "look at the first failing layer's port",
    ]
