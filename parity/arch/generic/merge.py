"""Merging tensors: Concatenate, and the mask arithmetic Keras 3 records as op nodes.

Keras 3 records the mask arithmetic of functional models as op nodes (module keras.src.ops):
ids != 0, and for Concatenate expand_dims / zeros_like / logical_or / concatenate / any. They
run as the ops they name; their class names carry parity.keras.graph.OP_PREFIX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    Masks,
    no_module,
    no_rows,
    no_weights,
)
from parity.keras.graph import OP_PREFIX

OPS: dict[str, Callable[[Config, list[Any]], Tensor]] = {
    "NotEqual": lambda c, a: torch.ne(a[0], a[1]),
    "Equal": lambda c, a: torch.eq(a[0], a[1]),
    "ExpandDims": lambda c, a: a[0].unsqueeze(c.get("axis", -1)),
    "ZerosLike": lambda c, a: torch.zeros_like(a[0], dtype=torch.bool),
    "OnesLike": lambda c, a: torch.ones_like(a[0], dtype=torch.bool),
    "LogicalOr": lambda c, a: torch.logical_or(a[0], a[1]),
    "LogicalAnd": lambda c, a: torch.logical_and(a[0], a[1]),
    "Concatenate": lambda c, a: torch.cat(a, dim=c.get("axis", -1)),
    "Any": lambda c, a: a[0].bool().any(dim=c.get("axis", -1), keepdim=bool(c.get("keepdims"))),
    "All": lambda c, a: a[0].bool().all(dim=c.get("axis", -1), keepdim=bool(c.get("keepdims"))),
}


def _call_concatenate(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """Keras combines the inputs' masks: an input without one counts as all-true."""
    axis = config.get("axis", -1)
    out = torch.cat(xs, dim=axis)
    if all(m is None for m in masks):
        return [out], [None]
    full = [
        torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if m is None else m
        for x, m in zip(xs, masks, strict=True)
    ]
    last = axis in (-1, xs[0].dim() - 1)
    mask = torch.stack(full).all(dim=0) if last else torch.cat(full, dim=axis)
    return [out], [mask]


def _call_op(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """A recorded op: its tensors, then its constant arguments."""
    operands = [*xs, *config["_constants"]]
    return [OPS[config["_op"]](config, operands)], [None]


CONVERTERS: dict[str, LayerConverter] = {
    "Concatenate": LayerConverter(
        no_weights,
        no_module,
        no_rows,
        _call_concatenate,
        inputs=None,
        examples=(Example({"axis": -1}, "two_sequences"),),
    ),
    **{
        f"{OP_PREFIX}{op}": LayerConverter(no_weights, no_module, no_rows, _call_op, inputs=None)
        for op in OPS
    },
}
