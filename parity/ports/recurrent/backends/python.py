"""The LSTM's fused Python loops: the reference loop's arithmetic, rearranged for speed.

``run_layer`` is the inference loop (no gradient recorded), ``run_layer_autograd`` the same
arithmetic out of place, for training. The reference loop (``lstm.reference_layer``) is the
readable definition; these must pass the same tests. What they change, and why:

- Weights are folded (backends.prepare.fold): rows (i, f, o, g), so one call applies the gate to
  three gates, and the gate's affine part in the weights, leaving one clamp per step.
- Inference: the folded weights come packed (backends.prepare.pack, cached per weight version),
  on CPU float32 for oneDNN; the input projection is added inside the recurrent GEMM (oneDNN's
  binary post-op); gate arithmetic runs in place on the GEMM's output (7 kernels per step and
  direction instead of about 20); each h is written once into its place in the output.
- Both: masking is skipped at steps where every row is real (one host sync per layer).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from parity.ports.activations import ACTIVATIONS
from parity.ports.recurrent.backends.prepare import Packed, Weights, fold


def run_layer(
    prep: Packed,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    mask: Tensor | None,
    *,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, every direction. x: (T, B, in); h, c: (D, B, h); mask: (T, B, 1) bool or None.
    Returns output (T, B, D*h) and the final h, c (D, B, h), as the reference loop does."""
    seq_len, batch = x.shape[0], x.shape[1]
    n_dir, hidden = h.shape[0], h.shape[-1]
    g0 = 3 * hidden
    tail = ACTIVATIONS[gate].fused.tail_
    act = ACTIVATIONS[activation].fn
    act_ = ACTIVATIONS[activation].fused.tail_
    linear_add = prep.gemm.linear_add

    # Input projection of every step, one GEMM per direction; the reverse direction reads it
    # back to front instead of projecting a flipped copy.
    x2 = x.reshape(seq_len * batch, -1)
    x_proj = [
        prep.gemm.linear(x2, prep.w_ih[d], prep.bias[d]).view(seq_len, batch, -1)
        for d in range(n_dir)
    ]
    full = [True] * seq_len  # per time step: every row real, no masking needed
    if mask is not None:
        full = mask.flatten(1).all(dim=1).tolist()
    # Directions run one after the other (oneDNN's packed GEMM is not batched; stacking them
    # would copy every step) and write h into their half of the output at its time step.
    out = x.new_empty(seq_len, batch, n_dir, hidden)
    hs, cs = list(h.unbind(0)), [t.clone() for t in c.unbind(0)]  # c is updated in place
    zeros = x.new_zeros(()) if mask is not None else None
    for d in range(n_dir):
        times = range(seq_len - 1, -1, -1) if d else range(seq_len)
        x_steps, w_hh, h_d, c_d = x_proj[d].unbind(0), prep.w_hh[d], hs[d], cs[d]
        prev = zeros  # a plain Keras LSTM's output at masked steps: the previous one, from zeros
        for t in times:
            z = linear_add(h_d, w_hh, x_steps[t])  # (B, 4h), rows (i, f, o, g)
            ifo, g = z.split((g0, hidden), dim=-1)
            tail(ifo)
            act_(g)
            i, f, o = ifo.split(hidden, dim=-1)
            slot = out[t, :, d]
            if full[t]:
                c_d.mul_(f).addcmul_(i, g)
                h_d = _output(act, c_d, o)
                slot.copy_(h_d)
            else:
                m = mask[t]  # (B, 1)
                c_new = torch.addcmul(f * c_d, i, g)
                h_new = _output(act, c_new, o)
                c_d = torch.where(m, c_new, c_d)
                h_d = torch.where(m, h_new, h_d)
                torch.where(m, h_new, zeros if zero_output_for_mask else prev, out=slot)
            prev = slot
        hs[d], cs[d] = h_d, c_d
    return out.view(seq_len, batch, n_dir * hidden), torch.stack(hs), torch.stack(cs)


def _output(act: Callable[[Tensor], Tensor], c: Tensor, o: Tensor) -> Tensor:
    """o * act(c), in place on act's result unless act returned c itself (linear): the cell
    state must survive the step."""
    h = act(c)
    return h * o if h is c else h.mul_(o)


def run_layer_autograd(
    weights: Weights,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    mask: Tensor | None,
    *,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """run_layer for training: the same folded weights and fused gate call, out of place, so
    autograd differentiates it (about 8 recorded ops per step instead of the reference's 20)."""
    seq_len, batch, hidden = x.shape[0], x.shape[1], h.shape[-1]
    g0 = 3 * hidden
    # gate(z) == tail(scale * z + offset); the folded weights produce scale * z + offset.
    tail = ACTIVATIONS[gate].fused.tail
    act = ACTIVATIONS[activation].fn
    folded = fold(weights, gate, hidden)
    x2 = x.reshape(seq_len * batch, -1)
    full = [True] * seq_len
    if mask is not None:
        full = mask.flatten(1).all(dim=1).tolist()
    # Per direction with addmm, as in run_layer: no per-step stacking of the two directions.
    outputs, h_n, c_n = [], [], []
    for d, (w_ih, w_hh, b) in enumerate(folded):
        x_steps = torch.addmm(b, x2, w_ih.t()).view(seq_len, batch, -1).unbind(0)
        w_hh_t, h_d, c_d = w_hh.t(), h[d], c[d]
        fill = h_d.new_zeros(h_d.shape)
        out_d: list[Tensor] = [fill] * seq_len
        for t in range(seq_len - 1, -1, -1) if d else range(seq_len):
            z = torch.addmm(x_steps[t], h_d, w_hh_t)  # (B, 4h), rows (i, f, o, g)
            ifo, g = z.split((g0, hidden), dim=-1)
            i, f, o = tail(ifo).split(hidden, dim=-1)
            c_new = torch.addcmul(f * c_d, i, act(g))
            h_new = o * act(c_new)
            if full[t]:
                h_d, c_d, out = h_new, c_new, h_new
            else:
                m = mask[t]  # (B, 1)
                h_d, c_d = torch.where(m, h_new, h_d), torch.where(m, c_new, c_d)
                out = torch.where(m, h_new, fill)
            if not zero_output_for_mask:
                fill = out
            out_d[t] = out
        outputs.append(torch.stack(out_d))  # (T, B, h), time order
        h_n.append(h_d)
        c_n.append(c_d)
    return torch.cat(outputs, dim=-1), torch.stack(h_n), torch.stack(c_n)
