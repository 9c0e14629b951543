"""The LSTM on CUDA: one Triton kernel per time step, both directions, GEMM and gates fused.

cuDNN's LSTM has sigmoid gates only, so a hard-sigmoid LSTM on the GPU is usually a per-step
Python loop of ~20 small kernels. Here each time step of a layer is one launch: every program
computes a (batch block, hidden block) tile of all four gates, h_prev @ W_hh^T plus the hoisted
input projection, then the gates, the cell and the Keras masking, and writes h, c and the
output. The kernel boundary is the only synchronisation the recurrence needs. Training uses the
same kernel (keeping the pre-activations and the state history) and a backward kernel of the same
shape per step (dz_{t+1} @ W_hh fused with the gate derivatives); the weight gradients are then
one GEMM each. Arithmetic is float32 (``input_precision="ieee"``: no TF32), with weights folded
as in ``backends.prepare.fold`` (rows (i, f, o, g), the hard sigmoid's 0.2x + 0.5 in the
weights).

``LSTM(impl="fast")`` takes this path for float32 CUDA tensors when Triton is importable and the
activations are ones the kernels know (the activation table's ``Fused.triton``);
``lstm.reference_layer`` stays the readable definition, and tests/test_lstm_triton.py holds
the two together.

Layouts (all contiguous): input projections, pre-activations and their gradients (T, B, D, 4h),
so one GEMM projects both directions; the state history (D, T+1, B, h) indexed so that the
state before time t is slot t forward and slot t+1 in reverse (no flipped copies anywhere);
outputs (T, B, D, h), i.e. nn.LSTM's (T, B, D*h).
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import Tensor

from parity.conventions import LSTM_GATES
from parity.ports.activations import ACTIVATIONS
from parity.ports.recurrent.backends.prepare import Weights, fold

try:  # Triton ships with CUDA builds of torch; CPU builds run the other loops.
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None

#: TRITON_INTERPRET=1 runs the kernels on CPU tensors (numpy), for checking them without a GPU.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def applies(x: Tensor, gate: str, activation: str) -> bool:
    """Whether the Triton kernels can run this layer: tails they know (the activation table's
    ``triton``; after fold() a hard sigmoid gate is a clamp, but the activation's inputs are not
    folded, so it must have no affine part)."""
    return (
        triton is not None
        and (x.is_cuda or (INTERPRET and x.device.type == "cpu"))
        and x.numel() > 0
        and x.dtype == torch.float32
        and ACTIVATIONS[gate].fused is not None
        and ACTIVATIONS[activation].fused is not None
        and not ACTIVATIONS[activation].fused.affine
    )


# --- kernels -----------------------------------------------------------------------------------

if triton is not None:
    if INTERPRET:  # the interpreter has no libdevice; tanh(x) = 2 sigmoid(2x) - 1 (abs err ~1e-7)

        @triton.jit
        def _tanh(x):
            return 2.0 / (1.0 + tl.exp(-2.0 * x)) - 1.0

        @triton.jit
        def _sigmoid(x):
            return 1.0 / (1.0 + tl.exp(-x))

    else:  # libdevice's tanh and expf: correctly rounded to within an ulp or two, like torch's

        @triton.jit
        def _tanh(x):
            return libdevice.tanh(x)

        @triton.jit
        def _sigmoid(x):
            return 1.0 / (1.0 + libdevice.exp(-x))

    @triton.jit
    def _tail(x, KIND: tl.constexpr):
        """KIND numbers as parity.ports.activations.TritonTail."""
        y = x
        if KIND == 1:
            y = tl.minimum(tl.maximum(x, 0.0), 1.0)
        elif KIND == 2:
            y = _sigmoid(x)
        elif KIND == 3:
            y = _tanh(x)
        elif KIND == 4:
            y = tl.maximum(x, 0.0)
        return y

    @triton.jit
    def _dtail(x, y, KIND: tl.constexpr):
        """Derivative of _tail at x, given y = _tail(x); torch's conventions at the kinks
        (clamp passes the gradient at its bounds, relu does not at 0)."""
        one = tl.full(x.shape, 1.0, tl.float32)
        zero = tl.zeros(x.shape, tl.float32)
        dy = one
        if KIND == 1:
            dy = tl.where((x >= 0.0) & (x <= 1.0), one, zero)
        elif KIND == 2:
            dy = y * (1.0 - y)
        elif KIND == 3:
            dy = 1.0 - y * y
        elif KIND == 4:
            dy = tl.where(x > 0.0, one, zero)
        return dy

    @triton.jit(do_not_specialize=["s"])
    def _fwd_step(
        XP, WT, HS, CS, Z, OUT, MASK,
        s, T, B, NS,
        HID: tl.constexpr, N_DIR: tl.constexpr, GATE: tl.constexpr, ACT: tl.constexpr,
        HAS_MASK: tl.constexpr, ZERO_OUT: tl.constexpr, HISTORY: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        """Loop step s of every direction: z = xp[t] + h @ W_hh^T, gates, cell, mask."""
        G4: tl.constexpr = 4 * HID
        pid_h, pid_b, d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        t = s + d * (T - 1 - 2 * s)  # the reverse direction's step s is time T-1-s
        if HISTORY:  # slot t holds the state before time t (forward), slot t+1 (reverse)
            slot_in, slot_out = t + d, t + 1 - d
        else:  # two slots, alternating
            slot_in, slot_out = s % 2, (s + 1) % 2
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
        rmask, cmask = rows < B, cols < HID
        tile = rmask[:, None] & cmask[None, :]
        r64 = rows.to(tl.int64)[:, None]

        # h_prev @ W_hh^T for the four gates of this hidden block; WT is (D, h, 4h).
        h_rows = HS + ((d * NS + slot_in) * B + r64) * HID
        w_base = WT + d.to(tl.int64) * HID * G4
        acc_i = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
        acc_f = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
        acc_o = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
        acc_g = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
        for k0 in range(0, HID, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            hk = tl.load(h_rows + ks[None, :], mask=rmask[:, None] & (ks[None, :] < HID), other=0.0)
            w_ptr = w_base + ks.to(tl.int64)[:, None] * G4 + cols[None, :]
            wm = (ks[:, None] < HID) & cmask[None, :]
            acc_i += tl.dot(hk, tl.load(w_ptr, mask=wm, other=0.0), input_precision="ieee")
            acc_f += tl.dot(hk, tl.load(w_ptr + HID, mask=wm, other=0.0), input_precision="ieee")
            acc_o += tl.dot(
                hk, tl.load(w_ptr + 2 * HID, mask=wm, other=0.0), input_precision="ieee"
            )
            acc_g += tl.dot(
                hk, tl.load(w_ptr + 3 * HID, mask=wm, other=0.0), input_precision="ieee"
            )

        z_off = ((t * B + r64) * N_DIR + d) * G4 + cols[None, :]  # (T, B, D, 4h)
        z_i = acc_i + tl.load(XP + z_off, mask=tile, other=0.0)
        z_f = acc_f + tl.load(XP + z_off + HID, mask=tile, other=0.0)
        z_o = acc_o + tl.load(XP + z_off + 2 * HID, mask=tile, other=0.0)
        z_g = acc_g + tl.load(XP + z_off + 3 * HID, mask=tile, other=0.0)
        if HISTORY:
            tl.store(Z + z_off, z_i, mask=tile)
            tl.store(Z + z_off + HID, z_f, mask=tile)
            tl.store(Z + z_off + 2 * HID, z_o, mask=tile)
            tl.store(Z + z_off + 3 * HID, z_g, mask=tile)
        i = _tail(z_i, GATE)
        f = _tail(z_f, GATE)
        o = _tail(z_o, GATE)
        g = _tail(z_g, ACT)

        s_in = ((d * NS + slot_in) * B + r64) * HID + cols[None, :]
        s_out = ((d * NS + slot_out) * B + r64) * HID + cols[None, :]
        out_off = ((t * B + r64) * N_DIR + d) * HID + cols[None, :]  # (T, B, D, h)
        c_prev = tl.load(CS + s_in, mask=tile, other=0.0)
        c_new = f * c_prev + i * g
        h_new = o * _tail(c_new, ACT)
        if HAS_MASK:  # Keras masking: masked rows carry h and c; output zeros or the last one
            m = tl.load(MASK + t * B + rows, mask=rmask, other=0)[:, None] != 0
            h_prev = tl.load(HS + s_in, mask=tile, other=0.0)
            h_new_state = tl.where(m, h_new, h_prev)
            c_new = tl.where(m, c_new, c_prev)
            if ZERO_OUT:
                fill = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
            else:  # the previous output of this direction; zeros before the first step
                t_prev = t - 1 + 2 * d
                prev_off = ((t_prev * B + r64) * N_DIR + d) * HID + cols[None, :]
                fill = tl.load(OUT + prev_off, mask=tile & (s > 0), other=0.0)
            out = tl.where(m, h_new, fill)
        else:
            h_new_state = h_new
            out = h_new
        tl.store(HS + s_out, h_new_state, mask=tile)
        tl.store(CS + s_out, c_new, mask=tile)
        tl.store(OUT + out_off, out, mask=tile)

    @triton.jit(do_not_specialize=["s"])
    def _bwd_step(
        DOUT, Z, CS, WH, DZ, DH, DC, CARRY, MASK,
        s, T, B,
        HID: tl.constexpr, N_DIR: tl.constexpr, GATE: tl.constexpr, ACT: tl.constexpr,
        HAS_MASK: tl.constexpr, ZERO_OUT: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        """Loop step s backwards. DH holds the gradient reaching h after step s other than
        through W_hh (the mask's pass-through), DC the gradient of c after step s, CARRY the
        gradient a masked later step passed to this step's output; all updated in place, each
        program on its own tile. Writes dz of step s; reads dz of step s+1 (previous launch)."""
        G4: tl.constexpr = 4 * HID
        NS = T + 1
        pid_h, pid_b, d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        t = s + d * (T - 1 - 2 * s)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
        rmask, cmask = rows < B, cols < HID
        tile = rmask[:, None] & cmask[None, :]
        r64 = rows.to(tl.int64)[:, None]

        st_off = ((d * B) + r64) * HID + cols[None, :]  # (D, B, h)
        dh = tl.load(DH + st_off, mask=tile, other=0.0)
        if s < T - 1:  # + dz(step s+1) @ W_hh, W_hh is (D, 4h, h)
            t_next = t + 1 - 2 * d
            dz_rows = DZ + ((t_next * B + r64) * N_DIR + d) * G4
            w_base = WH + d.to(tl.int64) * G4 * HID
            acc = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
            for k0 in range(0, G4, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                am = rmask[:, None] & (ks[None, :] < G4)
                a = tl.load(dz_rows + ks[None, :], mask=am, other=0.0)
                w = tl.load(
                    w_base + ks.to(tl.int64)[:, None] * HID + cols[None, :],
                    mask=(ks[:, None] < G4) & cmask[None, :],
                    other=0.0,
                )
                acc += tl.dot(a, w, input_precision="ieee")
            dh += acc
        dc = tl.load(DC + st_off, mask=tile, other=0.0)
        out_off = ((t * B + r64) * N_DIR + d) * HID + cols[None, :]
        g_out = tl.load(DOUT + out_off, mask=tile, other=0.0)
        if HAS_MASK and not ZERO_OUT:
            g_out += tl.load(CARRY + st_off, mask=tile, other=0.0)

        z_off = ((t * B + r64) * N_DIR + d) * G4 + cols[None, :]
        z_i = tl.load(Z + z_off, mask=tile, other=0.0)
        z_f = tl.load(Z + z_off + HID, mask=tile, other=0.0)
        z_o = tl.load(Z + z_off + 2 * HID, mask=tile, other=0.0)
        z_g = tl.load(Z + z_off + 3 * HID, mask=tile, other=0.0)
        i = _tail(z_i, GATE)
        f = _tail(z_f, GATE)
        o = _tail(z_o, GATE)
        g = _tail(z_g, ACT)
        slot_in, slot_out = t + d, t + 1 - d
        c_prev = tl.load(CS + ((d * NS + slot_in) * B + r64) * HID + cols[None, :], mask=tile)
        c_new = tl.load(CS + ((d * NS + slot_out) * B + r64) * HID + cols[None, :], mask=tile)
        a_c = _tail(c_new, ACT)

        dh_c = g_out + dh  # into h_new: the output and the next state
        dc_c = dc
        if HAS_MASK:
            m = tl.load(MASK + t * B + rows, mask=rmask, other=0)[:, None] != 0
            zero = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
            dh_c = tl.where(m, dh_c, zero)
            dc_c = tl.where(m, dc_c, zero)
        dct = dc_c + dh_c * o * _dtail(c_new, a_c, ACT)
        dz_i = dct * g * _dtail(z_i, i, GATE)
        dz_f = dct * c_prev * _dtail(z_f, f, GATE)
        dz_o = dh_c * a_c * _dtail(z_o, o, GATE)
        dz_g = dct * i * _dtail(z_g, g, ACT)
        tl.store(DZ + z_off, dz_i, mask=tile)
        tl.store(DZ + z_off + HID, dz_f, mask=tile)
        tl.store(DZ + z_off + 2 * HID, dz_o, mask=tile)
        tl.store(DZ + z_off + 3 * HID, dz_g, mask=tile)
        dc_prev = dct * f
        dh_pass = tl.zeros((BLOCK_B, BLOCK_H), tl.float32)
        if HAS_MASK:  # masked rows: h and c passed through, the output came from earlier
            dc_prev = tl.where(m, dc_prev, dc)
            dh_pass = tl.where(m, dh_pass, dh)
            if not ZERO_OUT:
                tl.store(CARRY + st_off, tl.where(m, zero, g_out), mask=tile)
        tl.store(DH + st_off, dh_pass, mask=tile)
        tl.store(DC + st_off, dc_prev, mask=tile)


# --- launching ---------------------------------------------------------------------------------

#: Block sizes: (batch rows, hidden units, reduction) per program. Small batches use small
#: blocks so that enough programs run at once (H100: 132 SMs).
BLOCK_K = 32
NUM_WARPS = 4


def _blocks(batch: int, hidden: int) -> tuple[int, int]:
    """(BLOCK_B, BLOCK_H), from benchmarks/lstm_cuda_blocks.py on an H100 (DeepMoji's 512
    hidden units): below batch 64 the launches, not the tiles, set the time."""
    block_b, block_h = (16, 32) if batch <= 16 else (16, 16) if batch <= 64 else (32, 32)
    return block_b, min(block_h, max(16, triton.next_power_of_2(hidden)))


def _launch_steps(
    kernel: object, grid: tuple, steps: range, before: tuple, after: tuple, meta: dict
) -> None:
    """Launch ``kernel[grid](*before, s, *after, **meta)`` for every step s.

    The first launch goes through Triton's JIT (compilation, cache lookup, argument binding);
    the others call the compiled kernel it returns directly, with the same arguments in the
    kernel's parameter order (``meta`` lists the constexprs in that order), which saves about
    half of the per-step host time that bounds small batches. Any other Triton (no compiled
    kernel returned, as in the interpreter) launches every step through the JIT."""
    if not steps:
        return
    options = {"num_warps": NUM_WARPS}
    steps = iter(steps)
    compiled = kernel[grid](*before, next(steps), *after, **meta, **options)
    run = None
    if hasattr(compiled, "__getitem__") and hasattr(compiled, "function"):
        run = compiled[grid]
    constexprs = tuple(meta.values())
    for s in steps:
        if run is None:
            kernel[grid](*before, s, *after, **meta, **options)
        else:
            run(*before, s, *after, *constexprs)


def _grid(batch: int, hidden: int, n_dir: int, block_b: int, block_h: int) -> tuple[int, ...]:
    return (triton.cdiv(hidden, block_h), triton.cdiv(batch, block_b), n_dir)


def _forward(
    xp: Tensor,
    wt: Tensor,
    h0: Tensor,
    c0: Tensor,
    mask: Tensor | None,
    codes: tuple[int, int],
    zero_output_for_mask: bool,
    history: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Run every step. xp (T, B, D, 4h); wt (D, h, 4h); h0, c0 (D, B, h); mask (T, B) int8.
    Returns out (T, B, D, h), the h and c slots (D, NS, B, h) and z (T, B, D, 4h) or None."""
    seq_len, batch, n_dir, g4 = xp.shape
    hidden = g4 // LSTM_GATES
    n_slots = seq_len + 1 if history else 2
    hs = xp.new_empty(n_dir, n_slots, batch, hidden)
    cs = torch.empty_like(hs)
    first = [0, seq_len] if history else [0, 0]  # slot of the initial state, per direction
    for d in range(n_dir):
        hs[d, first[d]] = h0[d]
        cs[d, first[d]] = c0[d]
    out = xp.new_empty(seq_len, batch, n_dir, hidden)
    z = torch.empty_like(xp) if history else None
    block_b, block_h = _blocks(batch, hidden)
    mask_arg = mask if mask is not None else out  # never read without HAS_MASK
    _launch_steps(
        _fwd_step,
        _grid(batch, hidden, n_dir, block_b, block_h),
        range(seq_len),
        (xp, wt, hs, cs, z if z is not None else out, out, mask_arg),
        (seq_len, batch, n_slots),
        dict(
            HID=hidden, N_DIR=n_dir, GATE=codes[0], ACT=codes[1],
            HAS_MASK=mask is not None, ZERO_OUT=zero_output_for_mask, HISTORY=history,
            BLOCK_B=block_b, BLOCK_H=block_h, BLOCK_K=BLOCK_K,
        ),
    )  # fmt: skip
    return out, hs, cs, z


def _final_states(hs: Tensor, cs: Tensor, history: bool, seq_len: int) -> tuple[Tensor, Tensor]:
    if not history:
        last = seq_len % 2
        return hs[:, last].clone(), cs[:, last].clone()
    last = [seq_len, 0][: hs.shape[0]]  # forward ends in slot T, reverse in slot 0
    return (
        torch.stack([hs[d, s] for d, s in enumerate(last)]),
        torch.stack([cs[d, s] for d, s in enumerate(last)]),
    )


class _LayerFunction(torch.autograd.Function):
    """One layer's recurrence: (xp, w_hh, h0, c0) -> (out, h_n, c_n), gradients by _bwd_step."""

    @staticmethod
    def forward(ctx, xp, w_hh, h0, c0, mask, codes, zero_output_for_mask):  # type: ignore[override]
        wt = w_hh.transpose(1, 2).contiguous()
        out, hs, cs, z = _forward(xp, wt, h0, c0, mask, codes, zero_output_for_mask, history=True)
        ctx.save_for_backward(w_hh, hs, cs, z, mask)
        ctx.codes, ctx.zero_output_for_mask = codes, zero_output_for_mask
        h_n, c_n = _final_states(hs, cs, True, xp.shape[0])
        return out.flatten(2), h_n, c_n

    @staticmethod
    def backward(ctx, d_out, d_h_n, d_c_n):  # type: ignore[override]
        w_hh, hs, cs, z, mask = ctx.saved_tensors
        seq_len, batch, n_dir, g4 = z.shape
        hidden = g4 // LSTM_GATES
        w_hh = w_hh.contiguous()
        d_out = d_out.reshape(seq_len, batch, n_dir, hidden).contiguous()
        dh, dc = d_h_n.contiguous().clone(), d_c_n.contiguous().clone()
        carry = torch.zeros_like(dh)
        dz = torch.empty_like(z)
        block_b, block_h = _blocks(batch, hidden)
        _launch_steps(
            _bwd_step,
            _grid(batch, hidden, n_dir, block_b, block_h),
            range(seq_len - 1, -1, -1),
            (d_out, z, cs, w_hh, dz, dh, dc, carry, mask if mask is not None else z),
            (seq_len, batch),
            dict(
                HID=hidden, N_DIR=n_dir, GATE=ctx.codes[0], ACT=ctx.codes[1],
                HAS_MASK=mask is not None, ZERO_OUT=ctx.zero_output_for_mask,
                BLOCK_B=block_b, BLOCK_H=block_h, BLOCK_K=BLOCK_K,
            ),
        )  # fmt: skip
        # What is left needs no recurrence: one GEMM each.
        d_h0, d_w_hh = torch.empty_like(dh), torch.empty_like(w_hh)
        for d in range(n_dir):
            t0 = seq_len - 1 if d else 0  # time of loop step 0
            d_h0[d] = torch.addmm(dh[d], dz[t0, :, d], w_hh[d])
            before = hs[d, 1:] if d else hs[d, :seq_len]  # state before each time, time order
            d_w_hh[d] = dz[:, :, d].reshape(-1, g4).t() @ before.reshape(-1, hidden)
        return dz, d_w_hh, d_h0, dc, None, None, None


# --- the layer ---------------------------------------------------------------------------------


def _stacked(weights: Weights, gate: str, hidden: int) -> tuple[Tensor, ...]:
    """fold() per direction, stacked: w_ih (D*4h, in), bias (D*4h,), w_hh (D, 4h, h)."""
    folded = fold(weights, gate, hidden)
    w_ih = torch.cat([w for w, _, _ in folded])
    bias = torch.cat([b for _, _, b in folded])
    w_hh = torch.stack([w for _, w, _ in folded])
    return w_ih, bias, w_hh


def prepare(weights: Weights, gate: str, hidden: int) -> tuple[Tensor, Tensor, Tensor]:
    """Inference weights (w_ih, bias, w_hh^T as (D, h, 4h)), for prepare.PreparedCache."""
    with torch.no_grad():
        w_ih, bias, w_hh = _stacked(weights, gate, hidden)
        return w_ih, bias, w_hh.transpose(1, 2).contiguous()


def run_layer(
    weights: Weights,
    prepared: tuple | None,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    mask: Tensor | None,
    *,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, every direction; the contract of LSTM._run_layer. ``prepared``
    (from ``prepare``) runs the inference loop; None runs the differentiable one."""
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        return _run_layer(
            weights, prepared, x, h, c, mask,
            (int(ACTIVATIONS[gate].fused.triton), int(ACTIVATIONS[activation].fused.triton)),
            gate, zero_output_for_mask,
        )  # fmt: skip


def _run_layer(
    weights: Weights,
    prepared: tuple | None,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    mask: Tensor | None,
    codes: tuple[int, int],
    gate: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """run_layer on x's device (Triton launches on the current one)."""
    seq_len, batch = x.shape[0], x.shape[1]
    n_dir, hidden = h.shape[0], h.shape[-1]
    m = None if mask is None else mask.reshape(seq_len, batch).to(torch.int8).contiguous()
    if prepared is not None:
        w_ih, bias, wt = prepared
        xp = torch.addmm(bias, x.reshape(seq_len * batch, -1), w_ih.t())
        xp = xp.view(seq_len, batch, n_dir, LSTM_GATES * hidden)
        out, hs, cs, _ = _forward(
            xp, wt, h.contiguous(), c.contiguous(), m, codes, zero_output_for_mask, history=False
        )
        h_n, c_n = _final_states(hs, cs, False, seq_len)
        return out.view(seq_len, batch, n_dir * hidden), h_n, c_n
    w_ih, bias, w_hh = _stacked(weights, gate, hidden)
    xp = torch.addmm(bias, x.reshape(seq_len * batch, -1), w_ih.t())
    xp = xp.view(seq_len, batch, n_dir, LSTM_GATES * hidden)
    return _LayerFunction.apply(
        xp, w_hh, h.contiguous(), c.contiguous(), m, codes, zero_output_for_mask
    )
