"""The LSTM weights as the fast loops read them, and the cache that keeps them between calls.

Shared by every fast loop (Python, C++, Triton):

- ``fold``: rows reordered from torch's (i, f, g, o) to (i, f, o, g), so one call applies the gate
  to three gates, and the gate's affine part (a hard sigmoid's 0.2x + 0.5, from the activation
  table's ``Fused``) folded into those rows, leaving one clamp per step. Differentiable, so the
  autograd loops use it on the parameters themselves.
- ``pack``: the folded weights for the CPU inference loops (Python and C++); on CPU float32
  pre-packed for oneDNN (``torch.ops.mkldnn``), whose packed GEMM runs the per-step
  (B, 512) x (512, 2048) product much faster than ``baddbmm``.
- ``PreparedCache``: prepared weights per layer, rebuilt whenever a weight changes version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from parity.conventions import LSTM_GATES
from parity.ports.activations import ACTIVATIONS

#: Use oneDNN's packed GEMM where it applies (CPU, float32); False forces plain addmm, e.g. to
#: measure what the packing buys. Any failure of the private oneDNN ops also falls back.
USE_ONEDNN = True

#: Per direction (weight_ih, weight_hh, bias_ih, bias_hh); biases None without bias.
Weights = list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]


@dataclass(frozen=True)
class Gemm:
    """How one direction's matrix is packed and multiplied: y = x @ W.T (+ bias | + other)."""

    name: str
    pack: Callable[[Tensor], Tensor]
    linear: Callable[[Tensor, Tensor, Tensor], Tensor]
    linear_add: Callable[[Tensor, Tensor, Tensor], Tensor]


def _onednn_linear(x: Tensor, w: Tensor, bias: Tensor) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, bias, "none", [], "")


def _onednn_linear_add(x: Tensor, w: Tensor, other: Tensor) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, w, None, "add")


ONEDNN = Gemm(
    name="onednn",
    pack=lambda w: torch.ops.mkldnn._reorder_linear_weight(w.contiguous()),
    linear=_onednn_linear,
    linear_add=_onednn_linear_add,
)
DENSE = Gemm(
    name="dense",
    pack=lambda w: w.t(),  # (k, 4h) transposed view: what addmm reads fastest
    linear=lambda x, w_t, bias: torch.addmm(bias, x, w_t),
    linear_add=lambda x, w_t, other: torch.addmm(other, x, w_t),
)


def onednn_usable(t: Tensor) -> bool:
    return (
        USE_ONEDNN
        and t.device.type == "cpu"
        and t.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


@dataclass(frozen=True)
class Packed:
    """One layer's weights for the CPU inference loops, per direction."""

    gemm: Gemm
    w_ih: tuple[Tensor, ...]  # packed (4h, in), rows (i, f, o, g), gate rows scaled
    w_hh: tuple[Tensor, ...]  # packed (4h, h)
    bias: tuple[Tensor, ...]  # (4h,), b_ih + b_hh, gate rows scaled and offset


def gate_rows_last(hidden: int, device: torch.device) -> Tensor:
    """Row permutation (i, f, g, o) -> (i, f, o, g)."""
    r = torch.arange(LSTM_GATES * hidden, device=device).view(LSTM_GATES, hidden)
    return torch.cat((r[:2], r[3:], r[2:3])).reshape(-1)  # slices: no host-to-device copy


def fold(weights: Weights, gate: str, hidden: int) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per direction (w_ih, w_hh, bias): rows reordered to (i, f, o, g), the gate's affine part
    folded into the gate rows, b_ih + b_hh summed. Differentiable, so the autograd loops can
    use it on the parameters themselves."""
    fused = ACTIVATIONS[gate].fused
    scale, offset = fused.scale, fused.offset
    first = weights[0][0]
    factory = {"dtype": first.dtype, "device": first.device}
    rows = gate_rows_last(hidden, first.device)
    n, g0 = LSTM_GATES * hidden, 3 * hidden  # after the reorder, rows [0, 3h) are gates
    # Built on the device (no host-to-device copy), so the fold can run inside a CUDA graph.
    scales = torch.cat((torch.full((g0,), scale, **factory), torch.ones(n - g0, **factory)))
    offsets = torch.cat((torch.full((g0,), offset, **factory), torch.zeros(n - g0, **factory)))
    affine = fused.affine
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


def pack(weights: Weights, gate: str, hidden: int) -> Packed:
    """Fold and pack each direction's weights for the CPU inference loops."""
    first = weights[0][0]
    gemm = ONEDNN if onednn_usable(first) else DENSE
    with torch.no_grad():
        w_ih, w_hh, bias = zip(*fold(weights, gate, hidden), strict=True)
        try:
            packed = [tuple(gemm.pack(w) for w in ws) for ws in (w_ih, w_hh)]
        except (RuntimeError, NotImplementedError):  # a torch build without these oneDNN ops
            gemm = DENSE
            packed = [tuple(gemm.pack(w) for w in ws) for ws in (w_ih, w_hh)]
    return Packed(gemm, packed[0], packed[1], tuple(bias))


def cache_key(weights: Weights, gate: str) -> tuple:
    """Changes whenever a weight is replaced, moved or modified in place (optimizer steps,
    load_state_dict, .to()): the cached preparation is then rebuilt. Weights created under
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


class PreparedCache:
    """(layer, kind of preparation) -> prepared weights, rebuilt when a weight changes.

    Left out of pickles and deep copies: oneDNN-packed weights are opaque tensors that neither
    can copy, and the cache rebuilds itself on the next forward.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str], tuple[tuple, object]] = {}

    def get(
        self,
        layer: int,
        kind: str,
        weights: Weights,
        gate: str,
        build: Callable[[Weights, str, int], object],
        hidden: int,
    ) -> object:
        """The prepared weights of ``layer``; ``build(weights, gate, hidden)`` on a miss."""
        key = cache_key(weights, gate)
        entry = self._entries.get((layer, kind))
        if entry is None or entry[0] != key:
            entry = (key, build(weights, gate, hidden))
            self._entries[(layer, kind)] = entry
        return entry[1]

    def keys(self) -> list[tuple[int, str]]:
        """(layer, kind) of every entry."""
        return list(self._entries)

    def __getstate__(self) -> dict[str, object]:
        return {"_entries": {}}
