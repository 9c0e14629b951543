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
``pad_sequences`` makes); ``applies`` says when, and the other loops run otherwise. Inference only
(no autograd), on the weights ``prepare.pack`` makes, as backends.python's loop; the steps run in
C++ (csrc/lstm_cpu.cpp ``packed_steps``) where the extension is built, in Python otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from parity.layers.activations import ACTIVATIONS
from parity.layers.backends import cpp
from parity.layers.backends.prepare import Packed


def contiguous_rows(mask: Tensor) -> tuple[Tensor, Tensor] | None:
    """(start, length) per row of a (T, B) bool mask whose real steps are one run per row; None
    when some row has a hole (then this loop does not apply)."""
    steps = mask.shape[0]
    lengths = mask.sum(0)
    start = mask.to(torch.uint8).argmax(0)  # first real step; 0 for an all-padding row
    t = torch.arange(steps, device=mask.device)[:, None]
    run = (t >= start) & (t < start + lengths)
    return (start, lengths) if torch.equal(run, mask) else None


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
    lengths: (B,) from ``contiguous_rows`` of the (T, B) mask. Returns what the reference
    loop returns: output (T, B, D*h) and the final h, c (D, B, h)."""
    seq_len, batch = x.shape[0], x.shape[1]
    n_dir, hidden = h.shape[0], h.shape[-1]
    order = torch.argsort(lengths, descending=True, stable=True)
    len_sorted = lengths[order]
    longest = int(len_sorted[0]) if batch else 0
    k = torch.arange(longest, device=x.device)[:, None]  # (K, 1) step of the packed loop
    real = k < len_sorted[None, :]  # (K, B) in sorted row order, step-major
    # Rows active at each step: a prefix of the sorted batch (one host sync for all steps).
    sizes = real.sum(1).tolist()
    rows = order[None, :].expand(longest, batch)[real]  # (N,) original row of each packed row
    out = x.new_zeros(seq_len, batch, n_dir, hidden)
    h_n, c_n = h[:, order].clone(), c[:, order].clone()  # sorted; updated in place
    start_s, len_s = start[order], len_sorted
    t_packed, x_proj = [], []
    for d in range(n_dir):
        # The time step of packed step k of each sorted row: forward from its first real step,
        # backward from its last.
        times = start_s + k if d == 0 else start_s + len_s - 1 - k  # (K, B)
        t_packed.append(times[real])  # (N,)
        x_packed = x[t_packed[d], rows]  # (N, in): real steps only, step-major
        x_proj.append(prep.gemm.linear(x_packed, prep.w_ih[d], prep.bias[d]))  # (N, 4h)
    if cpp.applies(x, h, c, gate, activation):  # the steps in C++, directions on their threads
        h_packed = torch.ops.parity_lstm.packed_steps(
            x_proj, list(prep.w_hh), h_n, c_n, sizes, int(ACTIVATIONS[gate].fused.cpp),
            int(ACTIVATIONS[activation].fused.cpp), cpp.parallel_directions(n_dir),
        )  # fmt: skip
    else:
        h_packed = [
            _steps(
                x_proj[d],
                prep.w_hh[d],
                prep.gemm.linear_add,
                h_n[d],
                c_n[d],
                sizes,
                gate,
                activation,
            )
            for d in range(n_dir)
        ]
    for d in range(n_dir):
        out[t_packed[d], rows, d] = h_packed[d]
        if not zero_output_for_mask:  # a plain Keras RNN repeats its last output
            t = torch.arange(seq_len, device=x.device)[:, None]
            after = t >= start + lengths if d == 0 else t < start
            carried = after & (lengths > 0)  # (T, B)
            final = torch.empty_like(h_n[d])
            final[order] = h_n[d]
            out[:, :, d] = torch.where(carried[..., None], final[None], out[:, :, d])
    unsort = torch.empty_like(order)
    unsort[order] = torch.arange(batch, device=order.device)
    return (
        out.view(seq_len, batch, n_dir * hidden),
        h_n[:, unsort].contiguous(),
        c_n[:, unsort].contiguous(),
    )


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
