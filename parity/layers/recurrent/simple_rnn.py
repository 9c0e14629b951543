"""keras.layers.SimpleRNN as a torch layer shaped like ``torch.nn.RNN``, with Keras masking."""

from __future__ import annotations

import torch
from torch import Tensor

from parity.layers.recurrent.base import KerasRNNBase


class SimpleRNN(KerasRNNBase):
    """keras.layers.SimpleRNN: h_t = activation(x_t W + b + h_{t-1} U); one layer, batch-first,
    as Keras. Parameters as nn.RNN's (bias_hh is Keras-less: the converter fixes it at zero)."""

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
        )

    def _project(self, x: Tensor, name: str) -> Tensor:
        out = x @ getattr(self, f"weight_ih_{name}").t()
        if self.bias:
            out = out + getattr(self, f"bias_ih_{name}") + getattr(self, f"bias_hh_{name}")
        return out

    def _step(self, x_proj: Tensor, h: Tensor, name: str) -> Tensor:
        return self._act_fn(x_proj + h @ getattr(self, f"weight_hh_{name}").t())
