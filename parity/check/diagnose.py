"""Why a check failed: re-run the torch side under the known alternatives and say which one
explains the gap.

Each alternative is one Keras/torch convention a conversion can get wrong (the hard-sigmoid
slope, GRU gate order, reset_after, the bias split, padding side, Flatten order, BatchNorm
epsilon, a kernel left untransposed, TF32). It applies when the file has a layer class it concerns
and the torch model has something to change, and produces variants: a modified copy of the model
(or other inputs, or TF32 on), with what it changed. A variant explains the gap when every row
passes under it. Modules are found by what they hold (``gate_activation``, ``reset_after``,
``eps`` with ``running_var``, gate-stacked RNN weights), so the generic ports (GRU,
BatchNormalization, Dense with Keras activations) are covered as well as the hand-written pairs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from parity.check.harness import (
    ACTIVATION_PREFIX,
    OUTPUT_PREFIX,
    Comparison,
    Subject,
    compare_all,
    run_torch,
)
from parity.check.inputs import padding_shifts, roll_rows
from parity.conventions import (
    BATCH_NORM_EPSILON,
    GRU_GATES,
    TORCH_BATCH_NORM_EPSILON,
)
from parity.ports.activations import ACTIVATIONS, GATES, HARD_SIGMOIDS, activation_slots

GradFix = Callable[[np.ndarray], np.ndarray]

#: A variant that shrinks the worst tolerance ratio by at least this factor, without passing,
#: is reported as explaining part of the gap.
PARTIAL_FACTOR = 100.0
#: CLI option to fix a hard-sigmoid choice (for the cause text), followed by the variant.
HARD_SIGMOID_OPTION = "--hard-sigmoid"


@dataclass
class Variant:
    """One way of re-running the torch side; ``label`` says what differs."""

    label: str
    model: nn.Module | None = None
    #: Move padding of pre- ("post") or post-padded ("pre") rows before running.
    padding_to: str | None = None
    grad_fixes: dict[str, GradFix] = field(default_factory=dict)
    allow_tf32: bool = False
    #: False when the change moves gradients between Keras weights (only forward rows count).
    gradients_comparable: bool = True


@dataclass(frozen=True)
class Alternative:
    #: What the conversion got wrong if this variant explains the gap; {label} is filled in.
    cause: str
    #: Keras classes it concerns; it is tried when the file has one (always, when the file has
    #: no class names). Empty: any model.
    keras_classes: frozenset[str]
    variants: Callable[[Subject, np.ndarray, str], list[Variant]]


# --- variant builders ------------------------------------------------------------------------


def _copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def _gate_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    """Every layer's gate (and hard-sigmoid activation) swapped to another choice at once: a
    conversion decides the hard sigmoid once per file. Layers are found by their activation
    slots (parity.ports.activations.ActivationSlot); assigning a name swaps the function."""
    hard_sigmoids = tuple(HARD_SIGMOIDS.values())
    current = {
        (path, attr, slot.gate): getattr(module, attr)
        for path, module in subject.model.named_modules()
        for attr, slot in activation_slots(module).items()
        if getattr(module, attr, None) in (GATES if slot.gate else hard_sigmoids)
    }
    if not current:
        return []
    variants = []
    for choice in GATES:
        changes = {
            key: name
            for key, name in current.items()
            if name != choice and (key[2] or choice in hard_sigmoids)
        }
        if not changes:
            continue
        model = _copy(subject.model)
        for path, attr, _gate in changes:
            setattr(model.get_submodule(path), attr, choice)
        olds = sorted(set(changes.values()))
        paths = sorted({path for path, _, _ in changes})
        variant = ACTIVATIONS[choice].hard_sigmoid
        hint = f"{HARD_SIGMOID_OPTION} {variant}" if variant else ""
        label = f"{choice} instead of {', '.join(olds)} in {', '.join(paths)}"
        variants.append(Variant(label + (f" (rerun with {hint})" if hint else ""), model))
    return variants


def _swap_first_blocks(array: np.ndarray, axis: int) -> np.ndarray:
    """Swap the first two of three gate blocks along ``axis`` (Keras z, r <-> torch r, z)."""
    blocks = np.split(array, GRU_GATES, axis=axis)
    return np.concatenate([blocks[1], blocks[0], blocks[2]], axis=axis)


def _gru_modules(model: nn.Module) -> list[tuple[str, nn.Module, list[tuple[str, int]]]]:
    """(path, module, [(parameter, gate axis)]) for GRU-like modules: weights stacking three
    gate blocks of hidden_size (nn.GRU, parity.layers.GRU)."""
    found = []
    for path, module in model.named_modules():
        hidden = getattr(module, "hidden_size", None)
        if not isinstance(hidden, int) or not hasattr(module, "weight_ih_l0"):
            continue
        if module.weight_ih_l0.shape[0] != GRU_GATES * hidden:
            continue
        params = []
        for name, param in module.named_parameters(recurse=False):
            axis = next(
                (a for a in (0, -1) if param.shape[a] == GRU_GATES * hidden),
                None,
            )
            if axis is not None:
                params.append((name, axis))
        found.append((path, module, params))
    return found


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _gru_gate_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    """Gates swapped in every GRU at once (one converter made them all), and in each alone."""
    variants = []
    for group in _groups(_gru_modules(subject.model)):
        model = _copy(subject.model)
        fixes: dict[str, GradFix] = {}
        for path, _module, params in group:
            target = model.get_submodule(path)
            for name, axis in params:
                param = getattr(target, name)
                with torch.no_grad():
                    swapped = _swap_first_blocks(param.detach().cpu().numpy(), axis)
                    param.copy_(torch.from_numpy(swapped))
                fixes[_join(path, name)] = lambda g, axis=axis: _swap_first_blocks(g, axis)
        label = f"update and reset gates swapped in {', '.join(p for p, _, _ in group)}"
        variants.append(Variant(label, model, grad_fixes=fixes))
    return variants


def _reset_after_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    paths = [
        path
        for path, module in subject.model.named_modules()
        if isinstance(getattr(module, "reset_after", None), bool)
    ]
    variants = []
    for path in paths:
        model = _copy(subject.model)
        module = model.get_submodule(path)
        module.reset_after = not module.reset_after
        variants.append(Variant(f"reset_after={module.reset_after} in {path}", model))
    return variants


def _groups(items: list) -> list[list]:
    """Each item alone, then all together (one converter made them all): the first variant
    that explains the gap names the smallest change."""
    return [[item] for item in items] + ([items] if len(items) > 1 else [])


def _bias_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    """Keras' biases vs torch's two: recurrent bias counted twice (LSTM/SimpleRNN: Keras has
    one bias, torch's bias_hh must be zero), input and recurrent biases swapped, or the rows of
    a stacked [input; recurrent] bias (GRU reset_after, (2, 3u)) swapped."""
    variants = []
    grus = {path for path, _, _ in _gru_modules(subject.model)}
    for path, module in subject.model.named_modules():
        gru_like = path in grus  # nn.GRU's recurrent bias sits inside r * (W_hn h + b_hn)
        # a converted LSTM's bias_hh is a zero buffer; a hand port's is a parameter
        own = dict(module.named_parameters(recurse=False))
        own |= dict(module.named_buffers(recurse=False))
        pairs = [(n, n.replace("bias_hh", "bias_ih")) for n in own if n.startswith("bias_hh")]
        pairs = [(hh, ih) for hh, ih in pairs if ih in own]
        for group in _groups(pairs):
            where = f"{', '.join(hh for hh, _ in group)} of {path}"
            model = _copy(subject.model)
            target = model.get_submodule(path)
            with torch.no_grad():
                for hh, _ih in group:
                    getattr(target, hh).zero_()
            variants.append(Variant(f"recurrent bias set to zero ({where})", model))
            if not gru_like:
                continue  # LSTM/SimpleRNN add both biases: swapping them changes nothing
            model = _copy(subject.model)
            target = model.get_submodule(path)
            with torch.no_grad():
                for hh, ih in group:
                    a, b = getattr(target, hh), getattr(target, ih)
                    saved = a.detach().clone()
                    a.copy_(b)
                    b.copy_(saved)
            variants.append(
                Variant(
                    f"input and recurrent biases swapped ({where})",
                    model,
                    gradients_comparable=False,
                )
            )
        stacked = [n for n, p in own.items() if n.startswith("bias") and p.dim() == 2]
        for group in _groups([n for n in stacked if own[n].shape[0] == 2]):
            model = _copy(subject.model)
            target = model.get_submodule(path)
            fixes: dict[str, GradFix] = {}
            with torch.no_grad():
                for name in group:
                    param = getattr(target, name)
                    param.copy_(param.flip(0))
                    fixes[_join(path, name)] = lambda g: g[::-1].copy()
            label = f"input and recurrent bias rows swapped ({', '.join(group)} of {path})"
            variants.append(Variant(label, model, grad_fixes=fixes))
    return variants


def _padding_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    return [
        Variant(f"rows padded {'pre' if to == 'post' else 'post'} moved to {to}-padding", None, to)
        for to in ("post", "pre")
        if padding_shifts(ids, to).any()
    ]


def _flatten_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    """A Linear after a Flatten of (T, C): columns in channels-first order (C, T) instead of
    Keras' channels-last (T, C), or the reverse."""
    seq_len = ids.shape[1]
    variants = []
    for path, module in subject.model.named_modules():
        if not isinstance(module, nn.Linear) or module.in_features % seq_len:
            continue
        channels = module.in_features // seq_len
        if channels < 2 or seq_len < 2:
            continue
        index = np.arange(module.in_features)
        t_major = index.reshape(seq_len, channels)
        for order, perm in (
            ("(channels, time)", t_major.T.reshape(-1)),
            ("(time, channels) read as (channels, time)", np.argsort(t_major.T.reshape(-1))),
        ):
            model = _copy(subject.model)
            weight = model.get_submodule(path).weight
            with torch.no_grad():
                weight.copy_(weight[:, torch.from_numpy(perm).to(weight.device)].clone())
            inverse = np.argsort(perm)
            fix = {_join(path, "weight"): lambda g, inv=inverse: g[:, inv]}
            label = f"{path} input columns reordered from {order} to Keras' channels-last"
            variants.append(Variant(label, model, grad_fixes=fix))
    return variants


def _batchnorm_variants(subject: Subject, ids: np.ndarray, device: str) -> list[Variant]:
    paths = {
        path: module.eps
        for path, module in subject.model.named_modules()
        if isinstance(getattr(module, "eps", None), float) and hasattr(module, "running_var")
    }
    variants = []
    for eps in (BATCH_NORM_EPSILON, TORCH_BATCH_NORM_EPSILON):
        changed = [path for path, old in paths.items() if not math.isclose(old, eps)]
        if not changed:
            continue
        model = _copy(subject.model)
        for path in changed:
            model.get_submodule(path).eps = eps
        olds = ", ".join(f"{o:g}" for o in sorted({paths[p] for p in changed}))
        label = f"epsilon {eps:g} instead of {olds} in {', '.join(changed)}"
        variants.append(Variant(label, model))
    return variants


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
        model = _copy(subject.model)
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


#: name -> alternative, in the order they are tried.
ALTERNATIVES: dict[str, Alternative] = {
    "hard_sigmoid": Alternative(
        "gate activation: the file computes {label}",
        frozenset({"LSTM", "GRU", "Bidirectional", "Dense", "Activation", "CuDNNLSTM"}),
        _gate_variants,
    ),
    "gru_gate_order": Alternative(
        "GRU gate order: Keras stacks z, r, h and torch r, z, n; {label}",
        frozenset({"GRU", "CuDNNGRU"}),
        _gru_gate_variants,
    ),
    "gru_reset_after": Alternative(
        "GRU variant: the file's GRU computes {label}", frozenset({"GRU"}), _reset_after_variants
    ),
    "bias_split": Alternative(
        "bias split between Keras' bias and torch's bias_ih/bias_hh: {label}",
        frozenset({"LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU"}),
        _bias_variants,
    ),
    "padding_side": Alternative(
        "padding side: {label} gives Keras' numbers, so the port masks by position "
        "(as pack_padded_sequence does) instead of by the 0 ids wherever they are",
        frozenset({"Embedding", "Masking", "LSTM", "GRU", "SimpleRNN", "Bidirectional"}),
        _padding_variants,
    ),
    "flatten_order": Alternative(
        "Flatten order: Keras flattens channels-last; {label}",
        frozenset({"Flatten"}),
        _flatten_variants,
    ),
    "batchnorm_epsilon": Alternative(
        "BatchNormalization epsilon: Keras uses 1e-3, torch 1e-5; {label}",
        frozenset({"BatchNormalization"}),
        _batchnorm_variants,
    ),
    "transposed_kernel": Alternative(
        "a square kernel converted without its transpose: {label}", frozenset(), _transpose_variants
    ),
    "tf32": Alternative(
        "TF32: {label} matches, so one side used TF32; keep it off on both (torch: "
        "torch.backends.cuda.matmul.allow_tf32 = False; TensorFlow: "
        "tf.config.experimental.enable_tensor_float_32_execution(False), as `parity golden` does)",
        frozenset(),
        _tf32_variants,
    ),
}


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
    alternatives: Mapping[str, Alternative] | None = None,
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
    for name, alternative in (alternatives or ALTERNATIVES).items():
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
        for name, alt in (alternatives or ALTERNATIVES).items()
        if not classes or not alt.keras_classes or classes & alt.keras_classes
    ]
    return [
        *lines,
        f"no known alternative explains it (tried: {', '.join(tried_names)}); "
        "look at the first failing layer's port",
    ]
