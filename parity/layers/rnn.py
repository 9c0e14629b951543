"""SimpleRNN and GRU that look like nn.RNN / nn.GRU but compute what Keras computes.

Why not nn.RNN / nn.GRU: Keras masking carries the state through masked steps wherever they are
(pre-padding, post-padding, holes), and Keras' GRU exists in two variants: ``reset_after=True``
(Keras 3 and tf.keras 2 default, cuDNN-compatible; nn.GRU's equations) and ``reset_after=False``
(Keras 1/2.0-2.2 default: the reset gate multiplies the state *before* the recurrent matmul),
which nn.GRU cannot express.

Parameters follow nn.RNN / nn.GRU (``weight_ih_l0``, ``weight_hh_l0``, ``_reverse`` suffix for the
backward direction, GRU gate order r, z, n). The GRU keeps Keras' bias layout in one parameter
``bias_l0``: (2, 3h) = [input bias; recurrent bias] with ``reset_after``, (3h,) without; Keras has
no separate recurrent bias in the second variant and one array in the first, so each parameter
maps to exactly one Keras weight (strict loading, gradients mapped back one to one).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from parity.conventions import GRU_GATES
from parity.layers.activations import get_activation

_DIRECTION_SUFFIXES = ("", "_reverse")


class _KerasRecurrent(nn.Module):
    """Shared loop: one layer, one or two directions, batch-first, Keras masking."""

    gates = 1

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
        super().__init__()
        if not batch_first:
            raise ValueError(f"{type(self).__name__} is batch-first only, as Keras is")
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"sizes must be positive, got {input_size}, {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.batch_first = True
        self.bidirectional = bidirectional
        self.activation = activation
        self.zero_output_for_mask = (
            bidirectional if zero_output_for_mask is None else zero_output_for_mask
        )
        self._act_fn = get_activation(activation)
        factory = {"device": device, "dtype": dtype}
        for suffix in _DIRECTION_SUFFIXES[: self.num_directions]:
            for name, shape in self._parameter_shapes(suffix).items():
                self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _parameter_shapes(self, suffix: str) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """torch's default RNN init, U(-1/sqrt(h), 1/sqrt(h)); use parity.init for Keras'."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def _project(self, x: Tensor, suffix: str) -> Tensor:
        """Input projection of every step: (B, T, in) -> (B, T, gates * h)."""
        raise NotImplementedError

    def _step(self, x_proj: Tensor, h: Tensor, suffix: str) -> Tensor:
        raise NotImplementedError

    def forward(
        self, input: Tensor, hx: Tensor | None = None, *, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """input (B, T, in); mask (B, T), True = real step. Returns output (B, T, D*h) in time
        order and h_n (D, B, h), the state at each direction's last real step."""
        if input.dim() != 3:
            raise ValueError(f"input must be (batch, time, features), got {tuple(input.shape)}")
        batch = input.shape[0]
        state_shape = (self.num_directions, batch, self.hidden_size)
        if hx is None:
            hx = input.new_zeros(state_shape)
        elif tuple(hx.shape) != state_shape:
            raise ValueError(f"hx must have shape {state_shape}, got {tuple(hx.shape)}")
        outs, finals = [], []
        for d, suffix in enumerate(_DIRECTION_SUFFIXES[: self.num_directions]):
            out, h = self._run_direction(input, hx[d], mask, suffix, reverse=d == 1)
            outs.append(out)
            finals.append(h)
        return torch.cat(outs, dim=-1), torch.stack(finals)

    def _run_direction(
        self, x: Tensor, h: Tensor, mask: Tensor | None, suffix: str, *, reverse: bool
    ) -> tuple[Tensor, Tensor]:
        seq_len = x.shape[1]
        x_proj = self._project(x, suffix)  # (B, T, gates * h)
        m = None if mask is None else mask.to(device=x.device, dtype=torch.bool).unsqueeze(-1)
        fill = h.new_zeros(h.shape)  # Keras' previous output starts at zeros
        outputs: list[Tensor] = [fill] * seq_len
        steps = range(seq_len - 1, -1, -1) if reverse else range(seq_len)
        for t in steps:
            h_new = self._step(x_proj[:, t], h, suffix)
            if m is None:
                h, out = h_new, h_new
            else:
                h = torch.where(m[:, t], h_new, h)
                out = torch.where(m[:, t], h_new, fill)
                if not self.zero_output_for_mask:
                    fill = out
            outputs[t] = out
        return torch.stack(outputs, dim=1), h

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, batch_first=True"
        if not self.bias:
            s += ", bias=False"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s + f", activation={self.activation!r}"


class SimpleRNN(_KerasRecurrent):
    """keras.layers.SimpleRNN: h_t = activation(x_t W + b + h_{t-1} U). Parameters as nn.RNN's
    (bias_hh is Keras-less: the converter fixes it at zero)."""

    def _parameter_shapes(self, suffix: str) -> dict[str, tuple[int, ...]]:
        h = self.hidden_size
        shapes = {f"weight_ih_l0{suffix}": (h, self.input_size), f"weight_hh_l0{suffix}": (h, h)}
        if self.bias:
            shapes |= {f"bias_ih_l0{suffix}": (h,), f"bias_hh_l0{suffix}": (h,)}
        return shapes

    def _project(self, x: Tensor, suffix: str) -> Tensor:
        out = x @ getattr(self, f"weight_ih_l0{suffix}").t()
        if self.bias:
            out = out + getattr(self, f"bias_ih_l0{suffix}") + getattr(self, f"bias_hh_l0{suffix}")
        return out

    def _step(self, x_proj: Tensor, h: Tensor, suffix: str) -> Tensor:
        return self._act_fn(x_proj + h @ getattr(self, f"weight_hh_l0{suffix}").t())


class GRU(_KerasRecurrent):
    """keras.layers.GRU, both variants (``reset_after``), gate order r, z, n as nn.GRU.

    Extra keyword-only arguments: gate_activation (Keras ``recurrent_activation``), activation,
    reset_after, zero_output_for_mask.
    """

    gates = GRU_GATES

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
        self.reset_after = reset_after
        self.gate_activation = gate_activation
        self._gate_fn = get_activation(gate_activation)
        super().__init__(
            input_size,
            hidden_size,
            bias,
            batch_first,
            bidirectional,
            device,
            dtype,
            activation=activation,
            zero_output_for_mask=zero_output_for_mask,
        )

    def _parameter_shapes(self, suffix: str) -> dict[str, tuple[int, ...]]:
        g = GRU_GATES * self.hidden_size
        shapes = {
            f"weight_ih_l0{suffix}": (g, self.input_size),
            f"weight_hh_l0{suffix}": (g, self.hidden_size),
        }
        if self.bias:
            shapes[f"bias_l0{suffix}"] = (2, g) if self.reset_after else (g,)
        return shapes

    def _project(self, x: Tensor, suffix: str) -> Tensor:
        out = x @ getattr(self, f"weight_ih_l0{suffix}").t()
        if self.bias:
            bias = getattr(self, f"bias_l0{suffix}")
            out = out + (bias[0] if self.reset_after else bias)
        return out

    def _step(self, x_proj: Tensor, h: Tensor, suffix: str) -> Tensor:
        w_hh = getattr(self, f"weight_hh_l0{suffix}")
        hidden = self.hidden_size
        x_r, x_z, x_n = x_proj.split(hidden, dim=-1)
        if self.reset_after:
            h_proj = h @ w_hh.t()
            if self.bias:
                h_proj = h_proj + getattr(self, f"bias_l0{suffix}")[1]
            h_r, h_z, h_n = h_proj.split(hidden, dim=-1)
            r = self._gate_fn(x_r + h_r)
            z = self._gate_fn(x_z + h_z)
            n = self._act_fn(x_n + r * h_n)
        else:
            h_rz = h @ w_hh[: 2 * hidden].t()
            h_r, h_z = h_rz.split(hidden, dim=-1)
            r = self._gate_fn(x_r + h_r)
            z = self._gate_fn(x_z + h_z)
            n = self._act_fn(x_n + (r * h) @ w_hh[2 * hidden :].t())
        return z * h + (1 - z) * n

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, gate_activation={self.gate_activation!r}, "
            f"reset_after={self.reset_after}"
        )
