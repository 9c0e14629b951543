"""A GRU that looks like ``torch.nn.GRU`` but computes what a Keras GRU computes.

Why not nn.GRU: Keras masking carries the state through masked steps wherever they are
(pre-padding, post-padding, holes), and Keras' GRU exists in two variants: ``reset_after=True``
(Keras 3 and tf.keras 2 default, cuDNN-compatible; nn.GRU's equations) and ``reset_after=False``
(Keras 1/2.0-2.2 default: the reset gate multiplies the state *before* the recurrent matmul),
which nn.GRU cannot express.

Parameters follow nn.GRU (``weight_ih_l0``, ``weight_hh_l0``, ``_reverse`` suffix for the
backward direction, gate order r, z, n). The biases keep Keras' layout in one parameter
``bias_l0``: (2, 3h) = [input bias; recurrent bias] with ``reset_after``, (3h,) without; Keras has
no separate recurrent bias in the second variant and one array in the first, so each parameter
maps to exactly one Keras weight (strict loading, gradients mapped back one to one).
"""

from __future__ import annotations

import torch
from torch import Tensor

from parity.conventions import GRU_GATES
from parity.ports.activations import ACTIVATIONS, ActivationFn, ActivationSlot
from parity.ports.recurrent.base import KerasRNNBase, Projection, Step


class GRU(KerasRNNBase):
    """keras.layers.GRU, both variants (``reset_after``), gate order r, z, n as nn.GRU; one
    layer, batch-first, as Keras.

    Extra keyword-only arguments: gate_activation (Keras ``recurrent_activation``), activation,
    reset_after, zero_output_for_mask.
    """

    gates = GRU_GATES
    batch_first_only = True

    gate_activation = ActivationSlot("_gate_fn", recurrent=True, gate=True)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        batch_first: bool = True,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        gate_activation: str = "sigmoid",
        activation: str = "tanh",
        reset_after: bool = True,
        zero_output_for_mask: bool | None = None,
    ) -> None:
        self.reset_after = reset_after  # before the base registers the biases it shapes
        super().__init__(
            input_size,
            hidden_size,
            1,
            bias,
            batch_first,
            0.0,
            bidirectional,
            device,
            dtype,
            gate_activation=gate_activation,
            activation=activation,
            zero_output_for_mask=zero_output_for_mask,
        )

    def _bias_shapes(self, gate_size: int) -> dict[str, tuple[int, ...]]:
        return {"bias": (2, gate_size) if self.reset_after else (gate_size,)}

    def _cell(self) -> str:
        return "gru" if self.reset_after else "gru_reset_before"

    def _cell_fns(self) -> tuple[Projection, Step]:
        return cell_fns(self._cell(), self.gate_activation, self.activation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reset_after={self.reset_after}"


def _project(x: Tensor, weights: tuple[Tensor | None, ...], reset_after: bool) -> Tensor:
    w_ih, _, bias, _ = weights
    out = x @ w_ih.t()
    if bias is not None:
        out = out + (bias[0] if reset_after else bias)
    return out


def _step(
    x_proj: Tensor,
    h: Tensor,
    weights: tuple[Tensor | None, ...],
    reset_after: bool,
    gate: ActivationFn,
    act: ActivationFn,
) -> Tensor:
    _, w_hh, bias, _ = weights
    hidden = h.shape[-1]
    x_r, x_z, x_n = x_proj.split(hidden, dim=-1)
    if reset_after:
        h_proj = h @ w_hh.t()
        if bias is not None:
            h_proj = h_proj + bias[1]
        h_r, h_z, h_n = h_proj.split(hidden, dim=-1)
        r = gate(x_r + h_r)
        z = gate(x_z + h_z)
        n = act(x_n + r * h_n)
    else:
        h_rz = h @ w_hh[: 2 * hidden].t()
        h_r, h_z = h_rz.split(hidden, dim=-1)
        r = gate(x_r + h_r)
        z = gate(x_z + h_z)
        n = act(x_n + (r * h) @ w_hh[2 * hidden :].t())
    return z * h + (1 - z) * n


def cell_fns(cell: str, gate: str, activation: str) -> tuple[Projection, Step]:
    """The GRU's (project, step) for base.reference_layer; ``cell`` "gru" (reset_after=True)
    or "gru_reset_before". Weights per direction: (weight_ih, weight_hh, bias or None, None)."""
    reset_after = cell == "gru"
    gate_fn, act_fn = ACTIVATIONS[gate].fn, ACTIVATIONS[activation].fn
    return (
        lambda x, w: _project(x, w, reset_after),
        lambda x_proj, h, w: _step(x_proj, h, w, reset_after, gate_fn, act_fn),
    )
