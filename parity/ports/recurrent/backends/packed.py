"""A length-aware inference loop: each row runs its real steps only, padded steps cost nothing.

Why: Keras (and the other loops) run every row through every step of a padded batch and mask
the padded ones afterwards; on real text most of a batch padded to the longest row is padding.
Here, as in torch's PackedSequence, rows are sorted by length and each row's real steps are moved
to the front (going forward: first real step first; going backward: last real step first), so at
step k exactly the rows longer than k are active, and they are a prefix of the sorted batch: the
recurrent GEMM and the gate arithmetic run on that prefix, the input projection on real steps
only. Finished rows keep the state of their last real step, which is Keras' final state whether
the row was pre- or post-padded; outputs go back to their time steps, masked steps get zeros or,
for a plain Keras RNN, the carried output (the last real output going forward, after the row;
going backward, before it).

It handles masks whose real steps are contiguous per row (pre-, post-, or both-sided padding, as
``pad_sequences`` makes); ``contiguous_rows`` says when, and the other loops run otherwise.
Inference (``run_layer``) runs on the weights ``prepare.pack`` makes, as backends.python's loop;
its steps run in C++ (csrc/lstm_cpu.cpp ``packed_steps``) where the extension is built, in Python
otherwise. Training (``run_layer_autograd``) runs on the parameters as they are, its steps and
their backward in C++ (``packed_train_forward`` / ``packed_train_backward``) on CPU float32,
out of place in Python for autograd elsewhere. ``train_forward`` / ``train_backward`` are the C++
form without autograd, for the compiled training operator (recurrent.ops.keras_lstm_train).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from parity.ports.activations import ACTIVATIONS
from parity.ports.recurrent.backends import cpp
from parity.ports.recurrent.backends.prepare import Packed, Weights, fold


def contiguous_rows(mask: Tensor) -> tuple[Tensor, Tensor] | None:
    """(start, length) per row of a (T, B) bool mask whose real steps are one run per row; None
    when some row has a hole (then this loop does not apply)."""
    steps = mask.shape[0]
    lengths = mask.sum(0)
    start = mask.to(torch.uint8).argmax(0)  # first real step; 0 for an all-padding row
    t = torch.arange(steps, device=mask.device)[:, None]
    run = (t >= start) & (t < start + lengths)
    return (start, lengths) if torch.equal(run, mask) else None


def skippable_rows(mask: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """``contiguous_rows`` of a (T, B) bool mask when this loop has padding to skip; None when
    there is none (no mask, no row shorter than T) or a row has a hole: the every-step loops
    run then."""
    rows = None if mask is None else contiguous_rows(mask)
    if rows is None or bool((rows[1] == mask.shape[0]).all()):
        return None
    return rows


@dataclass(frozen=True)
class Plan:
    """Where a batch's real steps go in the packed loop: rows sorted by length (longest first),
    packed step k holds the first ``sizes[k]`` sorted rows, step-major (N rows in all)."""

    order: Tensor  # (B,) original row of each sorted row
    unsort: Tensor  # (B,) sorted position of each original row
    sizes: list[int]  # rows active at each packed step; non-increasing
    rows: Tensor  # (N,) original row of each packed row
    times: list[Tensor]  # per direction (N,): the time step each packed row computes


def plan(start: Tensor, lengths: Tensor, n_dir: int) -> Plan:
    """The packed layout for rows that start at ``start`` and run ``lengths`` steps (from
    ``contiguous_rows``): going forward each row's first real step comes first, going backward
    its last."""
    batch = lengths.shape[0]
    order = torch.argsort(lengths, descending=True, stable=True)
    len_sorted = lengths[order]
    longest = int(len_sorted[0]) if batch else 0
    k = torch.arange(longest, device=lengths.device)[:, None]  # (K, 1) step of the packed loop
    real = k < len_sorted[None, :]  # (K, B) in sorted row order, step-major
    # Rows active at each step: a prefix of the sorted batch (one host sync for all steps).
    sizes = real.sum(1).tolist()
    rows = order[None, :].expand(longest, batch)[real]
    start_s = start[order]
    times = [(start_s + k if d == 0 else start_s + len_sorted - 1 - k)[real] for d in range(n_dir)]
    unsort = torch.empty_like(order)
    unsort[order] = torch.arange(batch, device=order.device)
    return Plan(order, unsort, sizes, rows, times)


def outputs(
    h_packed: Sequence[Tensor],
    final: Tensor,
    p: Plan,
    start: Tensor,
    lengths: Tensor,
    seq_len: int,
    zero_output_for_mask: bool,
) -> Tensor:
    """The layer's output (T, B, D*h) from each direction's packed outputs (N, h): each goes
    back to its time step; masked steps get zeros or, for a plain Keras RNN, the carried output
    (the row's final state ``final`` (D, B, h), original row order: going forward after the
    row, going backward before it). Differentiable."""
    n_dir, batch, hidden = final.shape
    out = final.new_zeros(seq_len, batch, n_dir, hidden)
    for d in range(n_dir):
        out[:, :, d].index_put_((p.times[d], p.rows), h_packed[d])
    if not zero_output_for_mask:  # a plain Keras RNN repeats its last output
        t = torch.arange(seq_len, device=final.device)[:, None]
        carried = torch.stack([t >= start + lengths, t < start][:n_dir], dim=-1)  # (T, B, D)
        carried &= (lengths > 0)[None, :, None]
        out = torch.where(carried[..., None], final.transpose(0, 1)[None], out)
    return out.view(seq_len, batch, n_dir * hidden)


def run_layer(
    prep: Packed,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    start: Tensor,
    lengths: Tensor,
    *,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, every direction, real steps only. x: (T, B, in); h, c: (D, B, h); start,
    lengths: (B,) from ``contiguous_rows`` of the (T, B) mask; ``prep`` from ``prepare.pack``.
    Returns what the reference loop returns: output (T, B, D*h) and the final h, c (D, B, h)."""
    n_dir = h.shape[0]
    p = plan(start, lengths, n_dir)
    h_n, c_n = h[:, p.order].clone(), c[:, p.order].clone()  # sorted; updated in place
    x_real = [x[p.times[d], p.rows] for d in range(n_dir)]  # (N, in) per direction
    tails = int(ACTIVATIONS[gate].fused.cpp), int(ACTIVATIONS[activation].fused.cpp)
    if cpp.applies(x, h, c, gate, activation):  # in C++, the directions on their threads
        x_proj = [prep.gemm.linear(x_real[d], prep.w_ih[d], prep.bias[d]) for d in range(n_dir)]
        h_packed = torch.ops.parity_lstm.packed_steps(
            x_proj, list(prep.w_hh), h_n, c_n, p.sizes, *tails, cpp.parallel_directions(n_dir)
        )
    else:
        h_packed = [
            _steps(
                prep.gemm.linear(x_real[d], prep.w_ih[d], prep.bias[d]),
                prep.w_hh[d],
                prep.gemm.linear_add,
                h_n[d],
                c_n[d],
                p.sizes,
                gate,
                activation,
            )
            for d in range(n_dir)
        ]
    h_n, c_n = h_n[:, p.unsort].contiguous(), c_n[:, p.unsort].contiguous()
    out = outputs(h_packed, h_n, p, start, lengths, x.shape[0], zero_output_for_mask)
    return out, h_n, c_n


def run_layer_autograd(
    weights: Weights,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    start: Tensor,
    lengths: Tensor,
    *,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``run_layer`` for training, differentiable with respect to x, h, c and the parameters
    (``weights``: per direction w_ih, w_hh, b_ih, b_hh). The input projection of the real steps
    is one torch linear per direction (autograd gives its gradients: real steps only). The
    steps run in C++ on the parameters as they are (``cpp.packed_train_steps``) where the C++
    training loop applies (CPU float32, the extension built), elsewhere in Python on the folded
    weights (``_train_steps``: any device and dtype)."""
    n_dir = h.shape[0]
    p = plan(start, lengths, n_dir)
    h0, c0 = h[:, p.order], c[:, p.order]
    linear = torch.nn.functional.linear
    if cpp.applies(x, h, c, gate, activation, training=True):
        x_proj = []
        for d, (w_ih, _, b_ih, b_hh) in enumerate(weights):
            x_proj.append(linear(x[p.times[d], p.rows], w_ih, _bias(b_ih, b_hh)))
        options = cpp.train_options(gate, activation, zero_output_for_mask, x, n_dir)
        w_hh = [w[1] for w in weights]
        h_packed, h_n, c_n = cpp.packed_train_steps(x_proj, w_hh, h0, c0, p.sizes, options)
    else:
        results = []
        for d, (w_ih, w_hh, b) in enumerate(fold(weights, gate, h.shape[-1])):
            x_proj = linear(x[p.times[d], p.rows], w_ih, b)
            results.append(_train_steps(x_proj, w_hh, h0[d], c0[d], p.sizes, gate, activation))
        h_packed = [r[0] for r in results]
        h_n, c_n = (torch.stack([r[i] for r in results]) for i in (1, 2))
    h_n, c_n = h_n[:, p.unsort], c_n[:, p.unsort]
    out = outputs(h_packed, h_n, p, start, lengths, x.shape[0], zero_output_for_mask)
    return out, h_n, c_n


def train_forward(
    weights: Weights, x: Tensor, h: Tensor, c: Tensor, start: Tensor, lengths: Tensor,
    options: tuple, capacity: int = 0,
) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:  # fmt: skip
    """``run_layer_autograd``'s C++ form without autograd, for an operator that keeps what its
    backward (``train_backward``) needs: output (T, B, D*h), the final h, c (D, B, h), and the
    packed steps' kept tensors (gates, activation(c), h and c before each step), each (D, N, .),
    or (D, capacity, .) with the N packed rows first. ``options``: ``cpp.train_options``."""
    n_dir = h.shape[0]
    p = plan(start, lengths, n_dir)
    gate_tail, act_tail, scale, offset, zero_output, parallel, onednn = options
    with torch.no_grad():
        x_proj = [
            torch.nn.functional.linear(x[p.times[d], p.rows], w_ih, _bias(b_ih, b_hh))
            for d, (w_ih, _, b_ih, b_hh) in enumerate(weights)
        ]
        h_packed, h_n, c_n, *kept = torch.ops.parity_lstm.packed_train_forward(
            x_proj, [w[1] for w in weights], h[:, p.order], c[:, p.order], p.sizes, gate_tail,
            act_tail, scale, offset, parallel, cpp.PACK_HH_ROWS if onednn else 0, capacity,
        )  # fmt: skip
        h_n, c_n = h_n[:, p.unsort].contiguous(), c_n[:, p.unsort].contiguous()
        out = outputs(h_packed, h_n, p, start, lengths, x.shape[0], zero_output)
    return out, h_n, c_n, kept


def train_backward(
    weights: Weights, x: Tensor, start: Tensor, lengths: Tensor, kept: list[Tensor],
    options: tuple, grad_out: Tensor, grad_h: Tensor, grad_c: Tensor,
) -> tuple[Tensor, Tensor, Tensor, list[Tensor | None]]:  # fmt: skip
    """The gradients of ``train_forward``'s results with respect to x, h, c and, per
    direction, w_ih, w_hh, b_ih, b_hh (None for an absent bias), from its kept tensors: what
    autograd computes through ``run_layer_autograd``, written out. ``kept``: each (D, N, .),
    the rows of each direction dense."""
    n_dir, hidden = kept[2].shape[0], kept[2].shape[-1]
    seq_len, batch = x.shape[0], x.shape[1]
    p = plan(start, lengths, n_dir)
    gate_tail, act_tail, scale, _, zero_output, parallel, onednn = options
    g_out = grad_out.reshape(seq_len, batch, n_dir, hidden)
    g_packed = torch.stack([g_out[p.times[d], p.rows, d] for d in range(n_dir)])  # (D, N, h)
    g_final = grad_h
    if not zero_output:  # carried outputs repeat the final h: their gradients go to it
        t = torch.arange(seq_len, device=x.device)[:, None]
        carried = torch.stack([t >= start + lengths, t < start][:n_dir], dim=-1)  # (T, B, D)
        carried &= (lengths > 0)[None, :, None]
        g_final = grad_h + (g_out * carried[..., None]).sum(0).transpose(0, 1)
    dz, dh0, dc0, dw_hh = torch.ops.parity_lstm.packed_train_backward(
        g_packed, g_final[:, p.order].contiguous(), grad_c[:, p.order].contiguous(),
        [w[1] for w in weights], *kept, p.sizes, gate_tail, act_tail, scale, parallel,
        cpp.PACK_HH_T_ROWS if onednn else 0,
    )  # fmt: skip
    dx = x.new_zeros(x.shape)
    grads: list[Tensor | None] = []
    for d, (w_ih, _, b_ih, _) in enumerate(weights):
        x_real = x[p.times[d], p.rows]
        dx.index_put_((p.times[d], p.rows), dz[d] @ w_ih, accumulate=True)
        db = dz[d].sum(0)
        biases = [None, None] if b_ih is None else [db, db.clone()]
        grads += [dz[d].t() @ x_real, dw_hh[d], *biases]
    return dx, dh0[:, p.unsort], dc0[:, p.unsort], grads


def _bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    return None if b_ih is None else b_ih + b_hh


def _train_steps(
    x_proj: Tensor, w_hh: Tensor, h: Tensor, c: Tensor, sizes: list[int], gate: str, activation: str
) -> tuple[Tensor, Tensor, Tensor]:
    """One direction's packed steps out of place, for autograd (where the C++ pair does not
    run): x_proj (N, 4h) and w_hh (4h, h) folded (rows i, f, o, g, the gate's affine part in
    them); h, c (B, h) sorted. Returns each packed step's output (N, h) and the final h, c
    (B, h). A row's state is set aside when its last step is done."""
    hidden = h.shape[-1]
    tail = ACTIVATIONS[gate].fused.tail
    act = ACTIVATIONS[activation].fn
    w_t = w_hh.t()
    outs: list[Tensor] = []
    done_h: list[Tensor] = []  # finished rows' final states, the shortest rows first
    done_c: list[Tensor] = []
    lo, active = 0, h.shape[0]
    for size in sizes:
        if size < active:
            done_h.append(h[size:active])
            done_c.append(c[size:active])
            h, c, active = h[:size], c[:size], size
        if size == 0:
            break
        z = torch.addmm(x_proj[lo : lo + size], h, w_t)  # (size, 4h)
        ifo, g = z.split((3 * hidden, hidden), dim=-1)
        i, f, o = tail(ifo).split(hidden, dim=-1)
        c = torch.addcmul(f * c, i, act(g))
        h = o * act(c)
        outs.append(h)
        lo += size
    h_packed = torch.cat(outs) if outs else x_proj.new_zeros(0, hidden)
    return h_packed, torch.cat([h, *reversed(done_h)]), torch.cat([c, *reversed(done_c)])


def _steps(
    x_proj: Tensor,
    w_hh: Tensor,
    linear_add: object,
    h: Tensor,
    c: Tensor,
    sizes: list[int],
    gate: str,
    activation: str,
) -> Tensor:
    """One direction's packed steps in Python (the C++ op's loop, where it is not built): per
    step the recurrent GEMM on the active prefix, then the gates in place. h, c (B, h) sorted,
    updated in place; returns each packed step's output (N, h)."""
    hidden = h.shape[-1]
    g0 = 3 * hidden
    tail = ACTIVATIONS[gate].fused.tail_
    act = ACTIVATIONS[activation].fn
    act_ = ACTIVATIONS[activation].fused.tail_
    h_packed = x_proj.new_empty(x_proj.shape[0], hidden)
    lo = 0
    for size in sizes:
        hi = lo + size
        z = linear_add(h[:size], w_hh, x_proj[lo:hi])  # (size, 4h): i, f, o, g
        ifo, g = z.split((g0, hidden), dim=-1)
        tail(ifo)
        act_(g)
        i, f, o = ifo.split(hidden, dim=-1)
        c_new = c[:size].mul_(f).addcmul_(i, g)
        h_new = act(c_new)
        h_new = h_new * o if h_new is c_new else h_new.mul_(o)
        h[:size] = h_new
        h_packed[lo:hi] = h_new
        lo = hi
    return h_packed
