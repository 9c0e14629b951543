"""The recurrent ports' diagnoses: GRU gate order, reset_after, and the bias split between Keras'
one bias (two for GRU reset_after and cuDNN) and torch's bias_ih/bias_hh."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from parity.conventions import GRU_GATES
from parity.ports.diagnosis import (
    Alternative,
    Checked,
    GradFix,
    Variant,
    copy_model,
    groups,
    join,
)
from parity.ports.recurrent.layouts import KERAS_GRU_GATE_ORDER, TORCH_GRU_GATE_ORDER, blocks


def _swap_first_blocks(array: np.ndarray, axis: int) -> np.ndarray:
    """Swap the first two of three gate blocks along ``axis`` (Keras z, r <-> torch r, z)."""
    parts = np.split(array, GRU_GATES, axis=axis)
    order = blocks(KERAS_GRU_GATE_ORDER, TORCH_GRU_GATE_ORDER)
    return np.concatenate([parts[i] for i in order], axis=axis)


def _gru_modules(model: nn.Module) -> list[tuple[str, nn.Module, list[tuple[str, int]]]]:
    """(path, module, [(parameter, gate axis)]) for GRU-like modules: weights stacking three
    gate blocks of hidden_size (nn.GRU, parity.ports.GRU)."""
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


def _gru_gate_variants(subject: Checked, ids: np.ndarray, device: str) -> list[Variant]:
    """Gates swapped in every GRU at once (one converter made them all), and in each alone."""
    variants = []
    for group in groups(_gru_modules(subject.model)):
        model = copy_model(subject.model)
        fixes: dict[str, GradFix] = {}
        for path, _module, params in group:
            target = model.get_submodule(path)
            for name, axis in params:
                param = getattr(target, name)
                with torch.no_grad():
                    swapped = _swap_first_blocks(param.detach().cpu().numpy(), axis)
                    param.copy_(torch.from_numpy(swapped))
                fixes[join(path, name)] = lambda g, axis=axis: _swap_first_blocks(g, axis)
        label = f"update and reset gates swapped in {', '.join(p for p, _, _ in group)}"
        variants.append(Variant(label, model, grad_fixes=fixes))
    return variants


def _reset_after_variants(subject: Checked, ids: np.ndarray, device: str) -> list[Variant]:
    paths = [
        path
        for path, module in subject.model.named_modules()
        if isinstance(getattr(module, "reset_after", None), bool)
    ]
    variants = []
    for path in paths:
        model = copy_model(subject.model)
        module = model.get_submodule(path)
        module.reset_after = not module.reset_after
        variants.append(Variant(f"reset_after={module.reset_after} in {path}", model))
    return variants


def _bias_variants(subject: Checked, ids: np.ndarray, device: str) -> list[Variant]:
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
        for group in groups(pairs):
            where = f"{', '.join(hh for hh, _ in group)} of {path}"
            model = copy_model(subject.model)
            target = model.get_submodule(path)
            with torch.no_grad():
                for hh, _ih in group:
                    getattr(target, hh).zero_()
            variants.append(Variant(f"recurrent bias set to zero ({where})", model))
            if not gru_like:
                continue  # LSTM/SimpleRNN add both biases: swapping them changes nothing
            model = copy_model(subject.model)
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
        for group in groups([n for n in stacked if own[n].shape[0] == 2]):
            model = copy_model(subject.model)
            target = model.get_submodule(path)
            fixes: dict[str, GradFix] = {}
            with torch.no_grad():
                for name in group:
                    param = getattr(target, name)
                    param.copy_(param.flip(0))
                    fixes[join(path, name)] = lambda g: g[::-1].copy()
            label = f"input and recurrent bias rows swapped ({', '.join(group)} of {path})"
            variants.append(Variant(label, model, grad_fixes=fixes))
    return variants


DIAGNOSES: dict[str, Alternative] = {
    "gru_gate_order": Alternative(
        "GRU gate order: Keras stacks z, r, h and torch r, z, n; {label}", _gru_gate_variants
    ),
    "gru_reset_after": Alternative(
        "GRU variant: the file's GRU computes {label}", _reset_after_variants
    ),
    "bias_split": Alternative(
        "bias split between Keras' bias and torch's bias_ih/bias_hh: {label}", _bias_variants
    ),
}
