"""The recurrent operators' ONNX translations: ``parity::keras_lstm`` and ``parity::keras_rnn``
(parity.ports.recurrent.ops) as ONNX's own LSTM, GRU and RNN operators.

ONNX: each operator node becomes ONNX's own LSTM / GRU / RNN operator (``ONNX_TRANSLATIONS``):
Keras 2's hard sigmoid is ONNX's HardSigmoid with alpha 0.2, beta 0.5 (Keras 3's: alpha 1/6),
gate rows reordered (torch i, f, g, o -> ONNX i, o, f, c; GRU r, z, n -> z, r, h). Keras masking
becomes ``sequence_lens``: ONNX's recurrent operators stop each row at its length (post-padding),
so each row's real steps are first moved to the front (a per-row shift by its first real step,
undone on the output), which serves pre- and post-padded rows alike. The masked steps' outputs
(zeros, or a plain Keras RNN's carried output) and all-padding rows are then set as Keras sets
them. Rows with holes in their mask (real, padding, real) cannot be expressed this way: ONNX
export assumes each row's real tokens are contiguous, as ``pad_sequences`` makes them.

parity.export registers them with torch.onnx.export (``ONNX_TRANSLATIONS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from parity.ports.activations import ACTIVATIONS
from parity.ports.recurrent import ops  # registers the operators translated here
from parity.ports.recurrent.layouts import (
    ONNX_GRU_GATE_ORDER,
    ONNX_LSTM_GATE_ORDER,
    TORCH_GRU_GATE_ORDER,
    TORCH_LSTM_GATE_ORDER,
    blocks,
)


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
LSTM_BLOCKS = blocks(TORCH_LSTM_GATE_ORDER, ONNX_LSTM_GATE_ORDER)
#: GRU: parity (r, z, n) -> ONNX (z, r, h).
GRU_BLOCKS = blocks(TORCH_GRU_GATE_ORDER, ONNX_GRU_GATE_ORDER)


def _lstm_onnx(
    x: Any, h0: Any, c0: Any, mask: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any,
    w_ih_reverse: Any, w_hh_reverse: Any, b_ih_reverse: Any, b_hh_reverse: Any,
    gate: str, activation: str, zero_output_for_mask: bool,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """parity::keras_lstm as ONNX's LSTM (see the module docstring)."""
    from onnxscript import opset18 as op  # optional (the export extra), only while exporting

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
    from onnxscript import opset18 as op  # optional (the export extra), only while exporting

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
    getattr(torch.ops, ops.NAMESPACE).keras_lstm.default: _lstm_onnx,
    getattr(torch.ops, ops.NAMESPACE).keras_rnn.default: _rnn_onnx,
}
