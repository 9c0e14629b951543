"""Keras recurrent layers written in plain PyTorch, for standalone generated model files.

Each class computes what the Keras layer computes, one timestep at a time, and names its
parameters as torch's nn.LSTM / nn.GRU / nn.RNN do (``weight_ih_l0``, ``weight_hh_l0``, ...,
``_reverse`` for the backward direction), so converted weights load by name.

Keras masking (``mask`` (B, T) bool, True = a real step), the rule every loop below follows:

* a masked step does not change the state: h (and c) are carried over from the step before;
* its output is zeros when ``zero_output_for_mask`` (what Keras' Bidirectional asks for), or
  else the previous step's output, where the "previous output" starts at zeros, not at the
  initial state (so a pre-padded row outputs zeros until its first real step);
* the backward direction reads the sequence (and the mask) from the end and its outputs are
  put back in time order;
* the final state is the state after the last real step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# --- activations ------------------------------------------------------------------------------


def hard_sigmoid_keras2(x: torch.Tensor) -> torch.Tensor:
    """Keras 1/2 (and Theano) hard sigmoid: clip(0.2 * x + 0.5, 0, 1)."""
    return torch.clamp(x * 0.2 + 0.5, 0.0, 1.0)


def hard_sigmoid_keras3(x: torch.Tensor) -> torch.Tensor:
    """Keras 3 hard sigmoid: relu6(x + 3) / 6, which is F.hardsigmoid (slope 1/6, not 0.2).
    Written out because F.hardsigmoid's float64 gradient uses a float32 1/6."""
    return F.relu6(x + 3.0) / 6.0


#: Keras activation name -> function. "hard_sigmoid" has no entry on purpose: Keras 2 and 3
#: disagree on it, so a converted model names the variant it was saved with.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
    "hard_sigmoid_keras3": hard_sigmoid_keras3,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=-1),  # Keras' default axis is the last
    "log_softmax": lambda x: torch.log_softmax(x, dim=-1),
    "softplus": F.softplus,
    "softsign": F.softsign,
    "elu": F.elu,  # alpha = 1, as Keras
    "selu": F.selu,  # the same constants as Keras
    "exponential": torch.exp,
    "gelu": F.gelu,  # exact (erf) form: Keras' gelu defaults to approximate=False
    "swish": F.silu,
    "silu": F.silu,
    "relu6": F.relu6,
    "leaky_relu": lambda x: F.leaky_relu(
        x, 0.2
    ),  # the activation's slope; the layer's is 0.3
    "mish": F.mish,
    "hard_silu": lambda x: x * hard_sigmoid_keras3(x),
    "hard_swish": lambda x: x * hard_sigmoid_keras3(x),
}


# --- LSTM -------------------------------------------------------------------------------------


class KerasLSTM(nn.Module):
    """keras.layers.LSTM (or Bidirectional(LSTM)): batch-first, one layer.

    Weights as nn.LSTM's: ``weight_ih_l0`` (4u, C) is Keras' kernel transposed,
    ``weight_hh_l0`` (4u, u) the recurrent kernel transposed, gates stacked i, f, g, o
    (Keras' own order too). Keras has one bias, ``bias_ih_l0`` (4u,); a cuDNN LSTM file has
    two, so ``two_biases=True`` adds ``bias_hh_l0``, and the step adds both.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bidirectional: bool = False,
        activation: str = "tanh",
        gate_activation: str = "sigmoid",
        zero_output_for_mask: bool | None = None,
        bias: bool = True,
        two_biases: bool = False,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.activation = (
            activation  # Keras `activation`: candidate g and the cell output
        )
        self.gate_activation = gate_activation  # Keras `recurrent_activation`: i, f, o
        for name in (activation, gate_activation):
            if name not in ACTIVATIONS:
                raise ValueError(
                    f"unknown activation {name!r}; expected one of {list(ACTIVATIONS)}"
                )
        # Keras' Bidirectional zeroes masked outputs; a plain Keras LSTM repeats the last one.
        if zero_output_for_mask is None:
            zero_output_for_mask = bidirectional
        self.zero_output_for_mask = zero_output_for_mask
        self.bias = bias
        self.two_biases = two_biases
        self.suffixes = ("", "_reverse") if bidirectional else ("",)
        gates = 4 * hidden_size
        for s in self.suffixes:
            self.register_parameter(
                f"weight_ih_l0{s}", nn.Parameter(torch.empty(gates, input_size))
            )
            self.register_parameter(
                f"weight_hh_l0{s}", nn.Parameter(torch.empty(gates, hidden_size))
            )
            if bias:
                self.register_parameter(
                    f"bias_ih_l0{s}", nn.Parameter(torch.empty(gates))
                )
                if two_biases:
                    self.register_parameter(
                        f"bias_hh_l0{s}", nn.Parameter(torch.empty(gates))
                    )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's RNN init, U(-1/sqrt(u), 1/sqrt(u)); a converted model loads its weights."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, C); mask (B, T) bool or None; initial_state (h, c), each (D, B, u).

        Returns the output (B, T, D*u), directions concatenated forward first, and the final
        (h, c), each (D, B, u) as nn.LSTM's h_n, c_n.
        """
        num_directions = len(self.suffixes)
        if initial_state is None:
            zeros = x.new_zeros(num_directions, x.shape[0], self.hidden_size)
            initial_state = (zeros, zeros)
        h0, c0 = initial_state
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
        outputs, hs, cs = [], [], []
        for d, suffix in enumerate(self.suffixes):
            out, h, c = self._run_direction(
                x, mask, h0[d], c0[d], suffix, reverse=d == 1
            )
            outputs.append(out)
            hs.append(h)
            cs.append(c)
        return torch.cat(outputs, dim=-1), (torch.stack(hs), torch.stack(cs))

    def _run_direction(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        h: torch.Tensor,
        c: torch.Tensor,
        suffix: str,
        reverse: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One direction over the whole sequence: output (B, T, u) in time order, final h, c."""
        gate, act = ACTIVATIONS[self.gate_activation], ACTIVATIONS[self.activation]
        w_ih = getattr(self, f"weight_ih_l0{suffix}")
        w_hh = getattr(self, f"weight_hh_l0{suffix}")
        b = getattr(self, f"bias_ih_l0{suffix}") if self.bias else None
        if b is not None and self.two_biases:
            b = b + getattr(self, f"bias_hh_l0{suffix}")
        seq_len = x.shape[1]
        zeros = h.new_zeros(h.shape)
        prev_out = zeros  # Keras' "previous output" starts at zeros, not at h0
        outputs: list[torch.Tensor] = [zeros] * seq_len
        for t in reversed(range(seq_len)) if reverse else range(seq_len):
            z = x[:, t] @ w_ih.t() + h @ w_hh.t()
            if b is not None:
                z = z + b
            z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
            c_new = gate(z_f) * c + gate(z_i) * act(z_g)
            h_new = gate(z_o) * act(c_new)
            if mask is None:
                h, c, out = h_new, c_new, h_new
            else:
                real = mask[:, t, None]  # (B, 1): which rows take this step
                h = torch.where(real, h_new, h)
                c = torch.where(real, c_new, c)
                out = torch.where(
                    real, h_new, zeros if self.zero_output_for_mask else prev_out
                )
            outputs[t] = out
            prev_out = out
        if seq_len == 0:
            return x.new_zeros(x.shape[0], 0, self.hidden_size), h, c
        return torch.stack(outputs, dim=1), h, c

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, bidirectional={self.bidirectional}, "
            f"activation={self.activation!r}, gate_activation={self.gate_activation!r}, "
            f"zero_output_for_mask={self.zero_output_for_mask}, bias={self.bias}, "
            f"two_biases={self.two_biases}"
        )


# --- GRU --------------------------------------------------------------------------------------


class KerasGRU(nn.Module):
    """keras.layers.GRU (or Bidirectional(GRU)): batch-first, one layer, either variant.

    Weights as nn.GRU's: ``weight_ih_l0`` (3u, C), ``weight_hh_l0`` (3u, u), gates stacked
    r, z, n (Keras stacks z, r, h; conversion reorders). The bias keeps Keras' layout in one
    parameter ``bias_l0``: (2, 3u) = [input bias; recurrent bias] with ``reset_after`` (Keras 3
    and tf.keras default, cuDNN's equations), (3u,) without (Keras <= 2.2: the reset gate
    multiplies the state before the recurrent matmul).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bidirectional: bool = False,
        activation: str = "tanh",
        gate_activation: str = "sigmoid",
        zero_output_for_mask: bool | None = None,
        bias: bool = True,
        reset_after: bool = True,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.activation = activation  # Keras `activation`: the candidate n
        self.gate_activation = gate_activation  # Keras `recurrent_activation`: r and z
        for name in (activation, gate_activation):
            if name not in ACTIVATIONS:
                raise ValueError(
                    f"unknown activation {name!r}; expected one of {list(ACTIVATIONS)}"
                )
        # Keras' Bidirectional zeroes masked outputs; a plain Keras GRU repeats the last one.
        if zero_output_for_mask is None:
            zero_output_for_mask = bidirectional
        self.zero_output_for_mask = zero_output_for_mask
        self.bias = bias
        self.reset_after = reset_after
        self.suffixes = ("", "_reverse") if bidirectional else ("",)
        gates = 3 * hidden_size
        bias_shape = (2, gates) if reset_after else (gates,)
        for s in self.suffixes:
            self.register_parameter(
                f"weight_ih_l0{s}", nn.Parameter(torch.empty(gates, input_size))
            )
            self.register_parameter(
                f"weight_hh_l0{s}", nn.Parameter(torch.empty(gates, hidden_size))
            )
            if bias:
                self.register_parameter(
                    f"bias_l0{s}", nn.Parameter(torch.empty(bias_shape))
                )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's RNN init, U(-1/sqrt(u), 1/sqrt(u)); a converted model loads its weights."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        initial_state: tuple[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        """x (B, T, C); mask (B, T) bool or None; initial_state (h,), h (D, B, u).

        Returns the output (B, T, D*u), directions concatenated forward first, and the final
        state (h,), h (D, B, u) as nn.GRU's h_n.
        """
        num_directions = len(self.suffixes)
        if initial_state is None:
            initial_state = (x.new_zeros(num_directions, x.shape[0], self.hidden_size),)
        (h0,) = initial_state
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
        outputs, hs = [], []
        for d, suffix in enumerate(self.suffixes):
            out, h = self._run_direction(x, mask, h0[d], suffix, reverse=d == 1)
            outputs.append(out)
            hs.append(h)
        return torch.cat(outputs, dim=-1), (torch.stack(hs),)

    def _step(self, x_t: torch.Tensor, h: torch.Tensor, suffix: str) -> torch.Tensor:
        """One GRU step: the new h from x_t (B, C) and h (B, u)."""
        u = self.hidden_size
        gate, act = ACTIVATIONS[self.gate_activation], ACTIVATIONS[self.activation]
        w_ih = getattr(self, f"weight_ih_l0{suffix}")
        w_hh = getattr(self, f"weight_hh_l0{suffix}")
        b = getattr(self, f"bias_l0{suffix}") if self.bias else None
        x_proj = x_t @ w_ih.t()
        if self.reset_after:
            # n = act(W_n x + b_in + r * (U_n h + b_hn)): reset applied after the matmul.
            h_proj = h @ w_hh.t()
            if b is not None:
                x_proj = x_proj + b[0]
                h_proj = h_proj + b[1]
            x_r, x_z, x_n = x_proj.split(u, dim=-1)
            h_r, h_z, h_n = h_proj.split(u, dim=-1)
            r = gate(x_r + h_r)
            z = gate(x_z + h_z)
            n = act(x_n + r * h_n)
        else:
            # n = act(W_n x + b_n + U_n (r * h)): reset applied to h before the matmul.
            if b is not None:
                x_proj = x_proj + b
            x_r, x_z, x_n = x_proj.split(u, dim=-1)
            h_r, h_z = (h @ w_hh[: 2 * u].t()).split(u, dim=-1)
            r = gate(x_r + h_r)
            z = gate(x_z + h_z)
            n = act(x_n + (r * h) @ w_hh[2 * u :].t())
        return z * h + (1 - z) * n

    def _run_direction(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        h: torch.Tensor,
        suffix: str,
        reverse: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One direction over the whole sequence: output (B, T, u) in time order, final h."""
        seq_len = x.shape[1]
        zeros = h.new_zeros(h.shape)
        prev_out = zeros  # Keras' "previous output" starts at zeros, not at h0
        outputs: list[torch.Tensor] = [zeros] * seq_len
        for t in reversed(range(seq_len)) if reverse else range(seq_len):
            h_new = self._step(x[:, t], h, suffix)
            if mask is None:
                h, out = h_new, h_new
            else:
                real = mask[:, t, None]  # (B, 1): which rows take this step
                h = torch.where(real, h_new, h)
                out = torch.where(
                    real, h_new, zeros if self.zero_output_for_mask else prev_out
                )
            outputs[t] = out
            prev_out = out
        if seq_len == 0:
            return x.new_zeros(x.shape[0], 0, self.hidden_size), h
        return torch.stack(outputs, dim=1), h

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, bidirectional={self.bidirectional}, "
            f"activation={self.activation!r}, gate_activation={self.gate_activation!r}, "
            f"zero_output_for_mask={self.zero_output_for_mask}, bias={self.bias}, "
            f"reset_after={self.reset_after}"
        )


# --- SimpleRNN --------------------------------------------------------------------------------


class KerasSimpleRNN(nn.Module):
    """keras.layers.SimpleRNN (or Bidirectional(SimpleRNN)): batch-first, one layer.

    h_t = activation(W x_t + b + U h_{t-1}). Weights as nn.RNN's: ``weight_ih_l0`` (u, C),
    ``weight_hh_l0`` (u, u), Keras' one bias ``bias_ih_l0`` (u,); ``two_biases=True`` adds a
    second, ``bias_hh_l0``, and the step adds both.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bidirectional: bool = False,
        activation: str = "tanh",
        zero_output_for_mask: bool | None = None,
        bias: bool = True,
        two_biases: bool = False,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.activation = activation
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}"
            )
        # Keras' Bidirectional zeroes masked outputs; a plain Keras RNN repeats the last one.
        if zero_output_for_mask is None:
            zero_output_for_mask = bidirectional
        self.zero_output_for_mask = zero_output_for_mask
        self.bias = bias
        self.two_biases = two_biases
        self.suffixes = ("", "_reverse") if bidirectional else ("",)
        for s in self.suffixes:
            self.register_parameter(
                f"weight_ih_l0{s}", nn.Parameter(torch.empty(hidden_size, input_size))
            )
            self.register_parameter(
                f"weight_hh_l0{s}", nn.Parameter(torch.empty(hidden_size, hidden_size))
            )
            if bias:
                self.register_parameter(
                    f"bias_ih_l0{s}", nn.Parameter(torch.empty(hidden_size))
                )
                if two_biases:
                    self.register_parameter(
                        f"bias_hh_l0{s}", nn.Parameter(torch.empty(hidden_size))
                    )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's RNN init, U(-1/sqrt(u), 1/sqrt(u)); a converted model loads its weights."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        initial_state: tuple[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        """x (B, T, C); mask (B, T) bool or None; initial_state (h,), h (D, B, u).

        Returns the output (B, T, D*u), directions concatenated forward first, and the final
        state (h,), h (D, B, u) as nn.RNN's h_n.
        """
        num_directions = len(self.suffixes)
        if initial_state is None:
            initial_state = (x.new_zeros(num_directions, x.shape[0], self.hidden_size),)
        (h0,) = initial_state
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
        outputs, hs = [], []
        for d, suffix in enumerate(self.suffixes):
            out, h = self._run_direction(x, mask, h0[d], suffix, reverse=d == 1)
            outputs.append(out)
            hs.append(h)
        return torch.cat(outputs, dim=-1), (torch.stack(hs),)

    def _run_direction(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        h: torch.Tensor,
        suffix: str,
        reverse: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One direction over the whole sequence: output (B, T, u) in time order, final h."""
        act = ACTIVATIONS[self.activation]
        w_ih = getattr(self, f"weight_ih_l0{suffix}")
        w_hh = getattr(self, f"weight_hh_l0{suffix}")
        b = getattr(self, f"bias_ih_l0{suffix}") if self.bias else None
        if b is not None and self.two_biases:
            b = b + getattr(self, f"bias_hh_l0{suffix}")
        seq_len = x.shape[1]
        zeros = h.new_zeros(h.shape)
        prev_out = zeros  # Keras' "previous output" starts at zeros, not at h0
        outputs: list[torch.Tensor] = [zeros] * seq_len
        for t in reversed(range(seq_len)) if reverse else range(seq_len):
            z = x[:, t] @ w_ih.t()
            if b is not None:
                z = z + b
            h_new = act(z + h @ w_hh.t())
            if mask is None:
                h, out = h_new, h_new
            else:
                real = mask[:, t, None]  # (B, 1): which rows take this step
                h = torch.where(real, h_new, h)
                out = torch.where(
                    real, h_new, zeros if self.zero_output_for_mask else prev_out
                )
            outputs[t] = out
            prev_out = out
        if seq_len == 0:
            return x.new_zeros(x.shape[0], 0, self.hidden_size), h
        return torch.stack(outputs, dim=1), h

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, bidirectional={self.bidirectional}, "
            f"activation={self.activation!r}, zero_output_for_mask={self.zero_output_for_mask}, "
            f"bias={self.bias}, two_biases={self.two_biases}"
        )


class AttentionWeightedAverage(nn.Module):
    """DeepMoji's attention pooling (deepmoji/attlayer.py): one weight per feature, a softmax
    over time, and the weighted mean of the steps.

    As DeepMoji computes it: the max subtracted before ``exp`` is taken over every step of the
    row, masked ones included; masked steps then get weight 0; 1e-7 is added to the sum.
    """

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.weight = nn.Parameter(torch.empty(input_size, 1))
        nn.init.uniform_(self.weight, -0.05, 0.05)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, d), mask (B, T) -> the weighted mean (B, d) and the weights (B, T)."""
        logits = (x @ self.weight).squeeze(-1)
        a = torch.exp(logits - logits.amax(dim=1, keepdim=True))
        if mask is not None:
            a = a * mask.to(a.dtype)
        att = a / (a.sum(dim=1, keepdim=True) + 1e-7)
        return (att.unsqueeze(-1) * x).sum(dim=1), att


# --- images: TensorFlow's "same" padding, Keras' batch and feature normalisation ---------------


def tf_same_pads(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for TensorFlow's "same" on a (B, C, H, W) tensor: the
    output is ceil(size / stride) and an odd pixel of padding goes after, not before."""
    pads = []
    for size, k, s, d in zip(x.shape[-2:], kernel, stride, dilation, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


class BatchNormalization(nn.Module):
    """keras.layers.BatchNormalization over ``axis`` (counted as Keras counts, batch included).

    Keras' conventions, which differ from nn.BatchNorm2d's: ``eps`` 1e-3 by default;
    ``momentum`` is the weight of the old moving statistic; the moving variance takes the
    biased batch variance.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-3,
        momentum: float = 0.99,
        scale: bool = True,
        center: bool = True,
        axis: int = -1,
    ) -> None:
        super().__init__()
        self.axis, self.eps, self.momentum = axis, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features)) if scale else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if center else None
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis % x.dim()
        if self.training:  # the batch's moments, folded into the moving ones
            dims = tuple(d for d in range(x.dim()) if d != axis)
            mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
            with torch.no_grad():
                keep = self.momentum
                self.running_mean.mul_(keep).add_(mean.detach() * (1 - keep))
                self.running_var.mul_(keep).add_(var.detach() * (1 - keep))
        else:
            mean, var = self.running_mean, self.running_var
        inv = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            inv = inv * self.weight
        shift = -mean * inv
        if self.bias is not None:
            shift = shift + self.bias
        trailing = (1,) * (x.dim() - 1 - axis)  # (C,) broadcast along ``axis``
        return x * inv.reshape(-1, *trailing) + shift.reshape(-1, *trailing)


class Normalization(nn.Module):
    """keras.layers.Normalization over the last axis: (x - mean) / max(sqrt(variance), eps)."""

    def __init__(self, features: int, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("variance", torch.ones(features))
        self.register_buffer(
            "count", torch.zeros((), dtype=torch.int64)
        )  # adapt's, unused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / torch.clamp_min(torch.sqrt(self.variance), self.eps)
