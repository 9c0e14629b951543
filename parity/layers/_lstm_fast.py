"""The LSTM's fast loops: LSTM's reference arithmetic, rearranged for speed.

``parity.layers.LSTM(impl="fast")`` (the default) runs ``run_layer`` whenever no gradient is
recorded (eval with ``torch.no_grad`` / ``inference_mode``) and ``run_layer_autograd``, the same
arithmetic out of place, when one is. The reference loop (``LSTM._run_layer_reference``) is the
readable definition; these must pass the same tests. What they change, and why:

- Weights are reordered from torch's (i, f, g, o) rows to (i, f, o, g), so one call applies the
  gate to three gates, and the gate's affine part (a hard sigmoid's 0.2x + 0.5) is folded into
  those rows, leaving one clamp per step (``fold``).
- Inference: the folded weights are cached per weight version and, on CPU float32, pre-packed
  for oneDNN (``torch.ops.mkldnn``), whose packed GEMM runs the per-step (B, 512) x (512, 2048)
  product about 1.8x faster than ``baddbmm``; the input projection is added inside the recurrent
  GEMM (oneDNN's binary post-op); gate arithmetic runs in place on the GEMM's output (7 kernels
  per step and direction instead of about 20); each h is written once into its place in the
  output.
- Both: masking is skipped at steps where every row is real (one host sync per layer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from parity.conventions import LSTM_GATES
from parity.layers import _lstm_cpp
from parity.layers.activations import AFFINE_SPLIT, get_activation

#: Use oneDNN's packed GEMM where it applies (CPU, float32); False forces plain addmm, e.g. to
#: measure what the packing buys. Any failure of the private oneDNN ops also falls back.
USE_ONEDNN = True


@dataclass(frozen=True)
class _Backend:
    """How one direction's matrix is prepared and multiplied: y = x @ W.T (+ bias | + other)."""

    name: str
    pack: Callable[[Tensor], Tensor]
    linear: Callable[[Tensor, Tensor, Tensor], Tensor]
    linear_add: Callable[[Tensor, Tensor, Tensor], Tensor]


def _onednn_linear(x: Tensor, w: Tensor, bias: Tensor) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, bias, "none", [], "")


def _onednn_linear_add(x: Tensor, w: Tensor, other: Tensor) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, w, None, "add")


_ONEDNN = _Backend(
    name="onednn",
    pack=lambda w: torch.ops.mkldnn._reorder_linear_weight(w.contiguous()),
    linear=_onednn_linear,
    linear_add=_onednn_linear_add,
)
_DENSE = _Backend(
    name="dense",
    pack=lambda w: w.t(),  # (k, 4h) transposed view: what addmm reads fastest
    linear=lambda x, w_t, bias: torch.addmm(bias, x, w_t),
    linear_add=lambda x, w_t, other: torch.addmm(other, x, w_t),
)


def _onednn_usable(t: Tensor) -> bool:
    return (
        USE_ONEDNN
        and t.device.type == "cpu"
        and t.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


@dataclass(frozen=True)
class Prepared:
    """One layer's weights in the fast loop's layout, per direction."""

    key: tuple
    backend: _Backend
    w_ih: tuple[Tensor, ...]  # packed (4h, in), rows (i, f, o, g), gate rows scaled
    w_hh: tuple[Tensor, ...]  # packed (4h, h)
    bias: tuple[Tensor, ...]  # (4h,), b_ih + b_hh, gate rows scaled and offset


def _gate_rows_last(hidden: int, device: torch.device) -> Tensor:
    """Row permutation (i, f, g, o) -> (i, f, o, g)."""
    r = torch.arange(LSTM_GATES * hidden, device=device).view(LSTM_GATES, hidden)
    return torch.cat((r[:2], r[3:], r[2:3])).reshape(-1)  # slices: no host-to-device copy


Weights = list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]


def fold(weights: Weights, gate: str, hidden: int) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per direction (w_ih, w_hh, bias): rows reordered to (i, f, o, g), the gate's affine part
    folded into the gate rows, b_ih + b_hh summed. Differentiable, so the autograd loop can
    use it on the parameters themselves."""
    scale, offset, _ = AFFINE_SPLIT[gate]
    first = weights[0][0]
    factory = {"dtype": first.dtype, "device": first.device}
    rows = _gate_rows_last(hidden, first.device)
    n, g0 = LSTM_GATES * hidden, 3 * hidden  # after the reorder, rows [0, 3h) are gates
    # Built on the device (no host-to-device copy), so the fold can run inside a CUDA graph.
    scales = torch.cat((torch.full((g0,), scale, **factory), torch.ones(n - g0, **factory)))
    offsets = torch.cat((torch.full((g0,), offset, **factory), torch.zeros(n - g0, **factory)))
    affine = scale != 1.0 or offset != 0.0
    folded = []
    for wi, wh, bi, bh in weights:
        wi, wh = wi[rows], wh[rows]
        b = offsets if bi is None else bi[rows] + bh[rows]
        if affine:
            wi, wh = wi * scales[:, None], wh * scales[:, None]
            if bi is not None:
                b = b * scales + offsets
        folded.append((wi, wh, b))
    return folded


def prepare(weights: Weights, gate: str, hidden: int) -> Prepared:
    """Fold and pack each direction's weights; keyed by the weights' versions."""
    first = weights[0][0]
    backend = _ONEDNN if _onednn_usable(first) else _DENSE
    with torch.no_grad():
        w_ih, w_hh, bias = zip(*fold(weights, gate, hidden), strict=True)
        try:
            packed = [tuple(backend.pack(w) for w in ws) for ws in (w_ih, w_hh)]
        except (RuntimeError, NotImplementedError):  # a torch build without these oneDNN ops
            backend = _DENSE
            packed = [tuple(backend.pack(w) for w in ws) for ws in (w_ih, w_hh)]
    return Prepared(cache_key(weights, gate), backend, packed[0], packed[1], tuple(bias))


def cache_key(weights: Weights, gate: str) -> tuple:
    """Changes whenever a weight is replaced, moved or modified in place (optimizer steps,
    load_state_dict, .to()): the cached packing is then rebuilt. Weights created under
    inference_mode have no version counter; their key never matches, so they are never cached."""
    parts: list[object] = [gate, USE_ONEDNN]
    for direction in weights:
        for w in direction:
            if w is None:
                continue
            if w.is_inference():
                return (object(),)
            parts += [w.data_ptr(), w._version, w.dtype, w.device, tuple(w.shape)]
    return tuple(parts)


def run_layer(
    prep: Prepared,
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
    if _lstm_cpp.applies(x, h, c, gate, activation):  # CPU float32: the same loop in C++
        return _lstm_cpp.run_layer(
            prep, x, h, c, mask, gate=gate, activation=activation,
            zero_output_for_mask=zero_output_for_mask,
        )  # fmt: skip
    seq_len, batch = x.shape[0], x.shape[1]
    n_dir, hidden = h.shape[0], h.shape[-1]
    g0 = 3 * hidden
    tail = AFFINE_SPLIT[gate][2]
    act = get_activation(activation)
    act_ = AFFINE_SPLIT[activation][2]
    linear_add = prep.backend.linear_add

    # Input projection of every step, one GEMM per direction; the reverse direction reads it
    # back to front instead of projecting a flipped copy.
    x2 = x.reshape(seq_len * batch, -1)
    x_proj = [
        prep.backend.linear(x2, prep.w_ih[d], prep.bias[d]).view(seq_len, batch, -1)
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
                h_d = act(c_d).mul_(o)
                slot.copy_(h_d)
            else:
                m = mask[t]  # (B, 1)
                c_new = torch.addcmul(f * c_d, i, g)
                h_new = act(c_new).mul_(o)
                c_d = torch.where(m, c_new, c_d)
                h_d = torch.where(m, h_new, h_d)
                torch.where(m, h_new, zeros if zero_output_for_mask else prev, out=slot)
            prev = slot
        hs[d], cs[d] = h_d, c_d
    return out.view(seq_len, batch, n_dir * hidden), torch.stack(hs), torch.stack(cs)


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
    scale, offset, _ = AFFINE_SPLIT[gate]
    gate_fn = get_activation(gate)
    # gate(z) == tail(scale * z + offset); the folded weights produce scale * z + offset.
    tail = _TAILS.get(gate, gate_fn) if scale != 1.0 or offset != 0.0 else gate_fn
    act = get_activation(activation)
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


def _clamp01(x: Tensor) -> Tensor:
    return x.clamp(0.0, 1.0)


#: Out-of-place tails of the gates whose affine part fold() moves into the weights.
_TAILS: dict[str, Callable[[Tensor], Tensor]] = {
    "hard_sigmoid_keras2": _clamp01,
    "hard_sigmoid_keras3": _clamp01,
}
