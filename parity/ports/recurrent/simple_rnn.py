"""keras.layers.SimpleRNN as a torch layer shaped like ``torch.nn.RNN``, with Keras masking."""

from __future__ import annotations

import torch
from torch import Tensor

from parity.ports.activations import ACTIVATIONS
from parity.ports.recurrent.base import KerasRNNBase, Projection, Step


class SimpleRNN(KerasRNNBase):
    """keras.layers.SimpleRNN: h_t = activation(x_t W + b + h_{t-1} U); one layer, batch-first,
    as Keras. Parameters as nn.RNN's; ``trainable_bias_hh=False`` (what conversion builds) makes
    bias_hh, which Keras does not have, a zero buffer."""

    batch_first_only = True

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
        activation: str = "tanh",
        zero_output_for_mask: bool | None = None,
        trainable_bias_hh: bool = True,
    ) -> None:
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
            activation=activation,
            zero_output_for_mask=zero_output_for_mask,
            trainable_bias_hh=trainable_bias_hh,
        )

    cell = "simple"

    def _cell_fns(self) -> tuple[Projection, Step]:
        return cell_fns(self.cell, "linear", self.activation)


def cell_fns(cell: str, gate: str, activation: str) -> tuple[Projection, Step]:
    """SimpleRNN's (project, step) for base.reference_layer (no gate); weights per direction:
    (weight_ih, weight_hh, bias_ih or None, bias_hh or None)."""
    act = ACTIVATIONS[activation].fn

    def project(x: Tensor, weights: tuple[Tensor | None, ...]) -> Tensor:
        w_ih, _, b_ih, b_hh = weights
        out = x @ w_ih.t()
        if b_ih is not None:
            out = out + b_ih + b_hh
        return out

    def step(x_proj: Tensor, h: Tensor, weights: tuple[Tensor | None, ...]) -> Tensor:
        return act(x_proj + h @ weights[1].t())

    return project, step
