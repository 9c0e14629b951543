"""Merging tensors: Concatenate, Dot, the elementwise merges (Add, Subtract, Multiply, Average,
Maximum, Minimum), and the mask arithmetic Keras 3 records as op nodes.

Parity notes:
- Inputs of lower rank get size-1 axes right after the batch axis until all ranks agree, then
  broadcast (keras.layers.Add etc.: Merge._reshape_required, the same in Keras 2 and 3).
- Output masks differ by version: Keras 3 ORs the input masks and gives none when any input has
  none; Keras 2 ANDs the masks present. Keras 3's Multiply, Maximum and Minimum also read the
  masks of the inputs they did not reshape: a masked step counts as 1 in a product (zeroed where
  every input is masked) and is skipped by a maximum or minimum. Keras 2 reads no masks there.
- Concatenate's mask: each input's mask (all-true without one) over the input's shape,
  concatenated on the axis, reduced over the last axis by any (Keras 3) or all (Keras 2).

Keras 3 records the mask arithmetic of functional models as op nodes (module keras.src.ops):
ids != 0, and for Concatenate expand_dims / zeros_like / logical_or / concatenate / any. They
run as the ops they name; their class names carry parity.keras.graph.OP_PREFIX.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from parity.conventions import DOT_NORMALIZE_FLOOR_KERAS2, DOT_NORMALIZE_FLOOR_KERAS3
from parity.errors import ConversionError
from parity.keras.graph import OP_PREFIX
from parity.ports.registry import (
    Config,
    Emitted,
    Emitter,
    Example,
    LayerConverter,
    Masks,
    literal,
    no_module,
    no_rows,
    no_weights,
    written_by_keras3,
)

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


def _mask_like(x: Tensor, mask: Tensor | None) -> Tensor:
    """A mask over x's whole shape: (B, T) masks gain the feature axes; none is all-true."""
    if mask is None:
        return torch.ones_like(x, dtype=torch.bool)
    while mask.dim() < x.dim():
        mask = mask.unsqueeze(-1)
    return mask.expand_as(x)


def _call_concatenate(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """Concatenate on any axis; the mask as Keras' compute_mask builds it (module docstring)."""
    axis = config.get("axis", -1)
    out = torch.cat(xs, dim=axis)
    if all(m is None for m in masks):
        return [out], [None]
    full = torch.cat([_mask_like(x, m) for x, m in zip(xs, masks, strict=True)], dim=axis)
    reduce = torch.any if written_by_keras3(config) else torch.all
    return [out], [reduce(full, dim=-1)]


def _aligned(xs: list[Tensor]) -> list[Tensor]:
    """Keras' Merge: size-1 axes after the batch axis until every input has the largest rank."""
    rank = max(x.dim() for x in xs)
    return [x.reshape(x.shape[:1] + (1,) * (rank - x.dim()) + x.shape[1:]) for x in xs]


def _merged_mask(config: Config, masks: Masks) -> Tensor | None:
    present = [m for m in masks if m is not None]
    if written_by_keras3(config):
        if len(present) < len(masks):
            return None
        return functools.reduce(torch.logical_or, present)
    return functools.reduce(torch.logical_and, present) if present else None


def _product(xs: list[Tensor], masks: Masks) -> Tensor:
    """Keras 3 Multiply: a masked step is 1 in the product, and 0 where all inputs are masked."""
    every = all(m is not None for m in masks)
    out: Tensor | None = None
    out_mask: Tensor | None = None
    for x, m in zip(xs, masks, strict=True):
        if m is not None:
            full = _mask_like(x, m)
            x = torch.where(full, x, torch.ones_like(x))
            if every:
                out_mask = full if out_mask is None else out_mask | full
        out = x if out is None else out * x
    assert out is not None
    return torch.where(out_mask, out, torch.zeros_like(out)) if out_mask is not None else out


def _extreme(op: Callable[[Tensor, Tensor], Tensor]) -> Callable[[list[Tensor], Masks], Tensor]:
    """Keras 3 Maximum/Minimum (Merge._apply_merge_op_and_or_mask): a masked step takes the other
    operand's value, so it never wins; the running mask is the OR of the masks seen."""

    def merge(xs: list[Tensor], masks: Masks) -> Tensor:
        out, out_mask = xs[0], None if masks[0] is None else _mask_like(xs[0], masks[0])
        for x, m in zip(xs[1:], masks[1:], strict=True):
            full = None if m is None else _mask_like(x, m)
            if full is not None:
                x = torch.where(full, x, out)
            if out_mask is not None:
                out = torch.where(out_mask, out, x)
            out_mask = out_mask | full if full is not None and out_mask is not None else None
            out = op(out, x)
        return out

    return merge


def _sum(xs: list[Tensor], masks: Masks) -> Tensor:
    return functools.reduce(torch.add, xs)


#: Elementwise merge class -> (Keras 3 merge of aligned inputs and the masks it reads, the plain
#: op Keras 2 applies, how many inputs it takes (None: two or more)).
ELEMENTWISE: dict[str, tuple[Callable[[list[Tensor], Masks], Tensor], Callable, int | None]] = {
    "Add": (_sum, _sum, None),
    "Subtract": (lambda xs, m: xs[0] - xs[1], lambda xs, m: xs[0] - xs[1], 2),
    "Multiply": (_product, lambda xs, m: functools.reduce(torch.mul, xs), None),
    "Average": (lambda xs, m: _sum(xs, m) / len(xs), lambda xs, m: _sum(xs, m) / len(xs), None),
    "Maximum": (_extreme(torch.maximum), lambda xs, m: functools.reduce(torch.maximum, xs), None),
    "Minimum": (_extreme(torch.minimum), lambda xs, m: functools.reduce(torch.minimum, xs), None),
}


def _elementwise(cls: str) -> Callable[..., tuple[list[Tensor], Masks]]:
    keras3_merge, keras2_merge, _ = ELEMENTWISE[cls]

    def call(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
        if len(xs) < 2:
            raise ConversionError(f"{cls} merges two or more tensors, got {len(xs)}")
        rank = max(x.dim() for x in xs)
        aligned = _aligned(xs)
        if written_by_keras3(config):
            # Keras 3 reads the mask of a tensor it did not reshape (a reshape drops it).
            seen = [m if x.dim() == rank else None for x, m in zip(xs, masks, strict=True)]
            out = keras3_merge(aligned, seen)
        else:
            out = keras2_merge(aligned, masks)
        return [out], [_merged_mask(config, masks)]

    return call


def _dot_axes(config: Config, xs: list[Tensor]) -> tuple[int, int]:
    axes = config.get("axes", -1)
    pair = [axes, axes] if isinstance(axes, int) else list(axes)
    if len(pair) != 2 or not all(isinstance(a, int) for a in pair):
        raise ConversionError(f"Dot axes={axes!r}: expected an int or two ints")
    resolved = (pair[0] % xs[0].dim(), pair[1] % xs[1].dim())
    if 0 in resolved:
        raise ConversionError(f"Dot axes={axes!r} include the batch axis")
    return resolved


def _l2_normalize(x: Tensor, axis: int, floor: float) -> Tensor:
    return x * torch.rsqrt(x.square().sum(dim=axis, keepdim=True).clamp_min(floor))


def _call_dot(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """keras.layers.Dot: batch_dot over one axis of each input; no mask comes out.

    Parity notes: the result is x's remaining axes then y's (batch excluded), (B, 1) when
    nothing remains; normalize=True l2-normalizes each input along its axis first, floored as
    the writing Keras floors it (DOT_NORMALIZE_FLOOR_KERAS2/3)."""
    if len(xs) != 2:
        raise ConversionError(f"Dot takes exactly 2 tensors, got {len(xs)}")
    ax, ay = _dot_axes(config, xs)
    x, y = xs
    if config.get("normalize"):
        keras3 = written_by_keras3(config)
        floor = DOT_NORMALIZE_FLOOR_KERAS3 if keras3 else DOT_NORMALIZE_FLOOR_KERAS2
        x, y = _l2_normalize(x, ax, floor), _l2_normalize(y, ay, floor)
    x, y = x.movedim(ax, -1), y.movedim(ay, 1)
    rest_x, rest_y = x.shape[1:-1], y.shape[2:]
    out = torch.bmm(x.reshape(x.shape[0], -1, x.shape[-1]), y.reshape(y.shape[0], y.shape[1], -1))
    out = out.reshape(x.shape[0], *rest_x, *rest_y)
    return [out.unsqueeze(-1) if out.dim() == 1 else out], [None]


def _call_op(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    """A recorded op: its tensors, then its constant arguments."""
    operands = [*xs, *config["_constants"]]
    return [OPS[config["_op"]](config, operands)], [None]


#: Per elementwise class: a plain pair, and a masked pair (values and mask rule exercised).
_ELEMENTWISE_EXAMPLES = (Example({}, "paired_sequences"), Example({}, "masked_pair"))


def _emit_concatenate(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    axis = _axis(config)
    inputs = ", ".join(f"{{x{i}}}" for i in range(len(masked)))
    lines = (f"{{out0}} = torch.cat([{inputs}], dim={axis})",)
    if not any(masked):
        return Emitted(None, lines, ("None",))
    if axis != -1:
        raise ConversionError(
            f"parity port: Concatenate of masked inputs on axis {axis} has no emitter"
        )
    present = [f"{{m{i}}}" for i, m in enumerate(masked) if m]
    if not written_by_keras3(config):  # Keras 2: a step is real where every input's is
        return Emitted(None, lines, (" & ".join(present),))
    if all(masked):  # Keras 3: where any input's is (an input without a mask: everywhere)
        return Emitted(None, lines, (" | ".join(present),))
    return Emitted(None, lines, (f"torch.ones_like({present[0]})",))


def _axis(config: Config) -> int:
    """A config's axis as code may hold it: an int, or the file is refused by name."""
    axis = config.get("axis", -1)
    if type(axis) is not int:
        raise ConversionError(f"parity port: axis={axis!r} is not an int")
    return axis


#: The recorded ops as code: (config, operand code) -> expression (what OPS computes).
OP_CODE: dict[str, Callable[[Config, list[str]], str]] = {
    "NotEqual": lambda c, a: f"{a[0]} != {a[1]}",
    "Equal": lambda c, a: f"{a[0]} == {a[1]}",
    "ExpandDims": lambda c, a: f"{a[0]}.unsqueeze({_axis(c)})",
    "ZerosLike": lambda c, a: f"torch.zeros_like({a[0]}, dtype=torch.bool)",
    "OnesLike": lambda c, a: f"torch.ones_like({a[0]}, dtype=torch.bool)",
    "LogicalOr": lambda c, a: f"torch.logical_or({a[0]}, {a[1]})",
    "LogicalAnd": lambda c, a: f"torch.logical_and({a[0]}, {a[1]})",
    "Concatenate": lambda c, a: f"torch.cat([{', '.join(a)}], dim={_axis(c)})",
    "Any": lambda c, a: f"{a[0]}.bool().any(dim={_axis(c)}, keepdim={bool(c.get('keepdims'))})",
    "All": lambda c, a: f"{a[0]}.bool().all(dim={_axis(c)}, keepdim={bool(c.get('keepdims'))})",
}


def _emit_op(module: nn.Module | None, config: Config, masked: tuple[bool, ...]) -> Emitted:
    operands = [f"{{x{i}}}" for i in range(len(masked))]
    constants = config.get("_constants", ())
    if not all(type(c) in (int, float, bool) and math.isfinite(c) for c in constants):
        raise ConversionError(f"parity port: op constants {constants!r} are not plain numbers")
    operands += [literal(c) for c in constants]
    return Emitted(None, (f"{{out0}} = {OP_CODE[config['_op']](config, operands)}",))


#: The elementwise merges as code over their inputs (no masks: a masked merge has no emitter).
MERGE_CODE: dict[str, Callable[[list[str]], str]] = {
    "Add": lambda xs: " + ".join(xs),
    "Subtract": lambda xs: f"{xs[0]} - {xs[1]}",
    "Multiply": lambda xs: " * ".join(xs),
    "Average": lambda xs: f"({' + '.join(xs)}) / {len(xs)}",
    "Maximum": lambda xs: functools.reduce(lambda a, b: f"torch.maximum({a}, {b})", xs),
    "Minimum": lambda xs: functools.reduce(lambda a, b: f"torch.minimum({a}, {b})", xs),
}


def _emit_elementwise(cls: str) -> Emitter:
    def emit(module: nn.Module | None, config: Config, masked: tuple[bool, ...]) -> Emitted:
        if any(masked):
            raise ConversionError(f"parity port: {cls} of masked inputs has no emitter")
        # inputs of one rank, as the applications' are; another rank fails the port's own proof
        xs = [f"{{x{i}}}" for i in range(len(masked))]
        return Emitted(None, (f"{{out0}} = {MERGE_CODE[cls](xs)}",), ("None",))

    return emit


CONVERTERS: dict[str, LayerConverter] = {
    "Concatenate": LayerConverter(
        no_weights,
        no_module,
        no_rows,
        _call_concatenate,
        inputs=None,
        examples=(
            Example({"axis": -1}, "two_sequences"),
            Example({"axis": 1}, "paired_sequences"),
            Example({"axis": -1}, "masked_pair"),
        ),
        versioned=True,
        emit=_emit_concatenate,
    ),
    **{
        cls: LayerConverter(
            no_weights,
            no_module,
            no_rows,
            _elementwise(cls),
            inputs=count,
            emit=_emit_elementwise(cls),
            examples=_ELEMENTWISE_EXAMPLES,
            versioned=True,
        )
        for cls, (_, _, count) in ELEMENTWISE.items()
    },
    "Dot": LayerConverter(
        no_weights,
        no_module,
        no_rows,
        _call_dot,
        inputs=2,
        examples=(
            Example({"axes": -1}, "two_vectors"),
            Example({"axes": [2, 2], "normalize": True}, "paired_sequences"),
            Example({"axes": 1}, "paired_sequences"),
        ),
        versioned=True,
    ),
    **{
        f"{OP_PREFIX}{op}": LayerConverter(
            no_weights, no_module, no_rows, _call_op, inputs=None, emit=_emit_op
        )
        for op in OPS
    },
}
