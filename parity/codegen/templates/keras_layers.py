"""Keras recurrent layers written in plain PyTorch, for standalone generated model files (and,
at the end, Keras' text preprocessing layers in plain Python, for models that take strings).

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


# --- text preprocessing (TextVectorization, StringLookup, IntegerLookup, Hashing) ---------------


class FarmHash64:
    """FarmHash's Fingerprint64 ("farmhashna"), as tf.strings.to_hash_bucket_fast uses it."""

    M = (1 << 64) - 1
    K0, K1, K2 = 0xC3A5C85C97CB3127, 0xB492B66FBE98F273, 0x9AE16A3B2F90404F

    @staticmethod
    def f64(s: bytes, at: int) -> int:
        return int.from_bytes(s[at : at + 8], "little")

    @classmethod
    def rot(cls, v: int, n: int) -> int:
        return v if n == 0 else ((v >> n) | (v << (64 - n))) & cls.M

    @classmethod
    def h16(cls, u: int, v: int, mul: int) -> int:
        a = ((u ^ v) * mul) & cls.M
        a ^= a >> 47
        b = ((v ^ a) * mul) & cls.M
        b ^= b >> 47
        return (b * mul) & cls.M

    @classmethod
    def weak32(cls, s: bytes, at: int, a: int, b: int) -> tuple[int, int]:
        w, x, y, z = (cls.f64(s, at + 8 * i) for i in range(4))
        a = (a + w) & cls.M
        b = cls.rot((b + a + z) & cls.M, 21)
        c = a
        a = (a + x + y) & cls.M
        b = (b + cls.rot(a, 44)) & cls.M
        return (a + z) & cls.M, (b + c) & cls.M

    @classmethod
    def short(cls, s: bytes) -> int:
        n, M, K0, K1, K2 = len(s), cls.M, cls.K0, cls.K1, cls.K2
        mul = (K2 + n * 2) & M
        if n > 32:
            a, b = (cls.f64(s, 0) * K2) & M, cls.f64(s, 8)
            c, d = (cls.f64(s, n - 8) * mul) & M, (cls.f64(s, n - 16) * K2) & M
            y = (cls.rot((a + b) & M, 43) + cls.rot(c, 30) + d) & M
            z = cls.h16(y, (a + cls.rot((b + K2) & M, 18) + c) & M, mul)
            e, f = (cls.f64(s, 16) * mul) & M, cls.f64(s, 24)
            g = ((y + cls.f64(s, n - 32)) * mul) & M
            h = ((z + cls.f64(s, n - 24)) * mul) & M
            u = (cls.rot((e + f) & M, 43) + cls.rot(g, 30) + h) & M
            return cls.h16(u, (e + cls.rot((f + a) & M, 18) + g) & M, mul)
        if n > 16:
            a, b = (cls.f64(s, 0) * K1) & M, cls.f64(s, 8)
            c, d = (cls.f64(s, n - 8) * mul) & M, (cls.f64(s, n - 16) * K2) & M
            u = (cls.rot((a + b) & M, 43) + cls.rot(c, 30) + d) & M
            return cls.h16(u, (a + cls.rot((b + K2) & M, 18) + c) & M, mul)
        if n >= 8:
            a, b = (cls.f64(s, 0) + K2) & M, cls.f64(s, n - 8)
            c = (cls.rot(b, 37) * mul + a) & M
            return cls.h16(c, ((cls.rot(a, 25) + b) * mul) & M, mul)
        if n >= 4:
            a, b = int.from_bytes(s[:4], "little"), int.from_bytes(s[n - 4 :], "little")
            return cls.h16((n + (a << 3)) & M, b, mul)
        if n > 0:
            y = (s[0] + (s[n >> 1] << 8)) & 0xFFFFFFFF
            z = (n + (s[n - 1] << 2)) & 0xFFFFFFFF
            v = ((y * K2) ^ (z * K0)) & M
            return ((v ^ (v >> 47)) * K2) & M
        return K2

    @classmethod
    def fingerprint(cls, s: bytes) -> int:
        n, M, K0, K1, K2 = len(s), cls.M, cls.K0, cls.K1, cls.K2
        if n <= 64:
            return cls.short(s)
        x, y = 81, (81 * K1 + 113) & M
        v = (y * K2 + 113) & M
        z = ((v ^ (v >> 47)) * K2) & M
        v0 = v1 = w0 = w1 = 0
        x = (x * K2 + cls.f64(s, 0)) & M
        end, at = ((n - 1) // 64) * 64, 0
        last = end + ((n - 1) & 63) - 63
        while True:
            x = (cls.rot((x + y + v0 + cls.f64(s, at + 8)) & M, 37) * K1) & M
            y = (cls.rot((y + v1 + cls.f64(s, at + 48)) & M, 42) * K1) & M
            x ^= w1
            y = (y + v0 + cls.f64(s, at + 40)) & M
            z = (cls.rot((z + w0) & M, 33) * K1) & M
            v0, v1 = cls.weak32(s, at, (v1 * K1) & M, (x + w0) & M)
            w0, w1 = cls.weak32(s, at + 32, (z + w1) & M, (y + cls.f64(s, at + 16)) & M)
            z, x = x, z
            at += 64
            if at == end:
                break
        mul = (K1 + ((z & 0xFF) << 1)) & M
        w0 = (w0 + ((n - 1) & 63)) & M
        v0 = (v0 + w0) & M
        w0 = (w0 + v0) & M
        x = (cls.rot((x + y + v0 + cls.f64(s, last + 8)) & M, 37) * mul) & M
        y = (cls.rot((y + v1 + cls.f64(s, last + 48)) & M, 42) * mul) & M
        x ^= (w1 * 9) & M
        y = (y + v0 * 9 + cls.f64(s, last + 40)) & M
        z = (cls.rot((z + w0) & M, 33) * mul) & M
        v0, v1 = cls.weak32(s, last, (v1 * mul) & M, (x + w0) & M)
        w0, w1 = cls.weak32(s, last + 32, (z + w1) & M, (y + cls.f64(s, last + 16)) & M)
        z, x = x, z
        u = (cls.h16(v0, w0, mul) + (y ^ (y >> 47)) * K0 + z) & M
        return cls.h16(u, (cls.h16(v1, w1, mul) + x) & M, mul)


class SipHash24:
    """SipHash-2-4 keyed with two 64-bit words, as tf.strings.to_hash_bucket_strong uses it."""

    M = (1 << 64) - 1

    @classmethod
    def rotl(cls, v: int, n: int) -> int:
        return ((v << n) | (v >> (64 - n))) & cls.M

    @classmethod
    def rounds(cls, v: list[int], count: int) -> None:
        M, rotl = cls.M, cls.rotl
        for _ in range(count):
            v[0] = (v[0] + v[1]) & M
            v[1] = rotl(v[1], 13) ^ v[0]
            v[0] = rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & M
            v[3] = rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & M
            v[3] = rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & M
            v[1] = rotl(v[1], 17) ^ v[2]
            v[2] = rotl(v[2], 32)

    @classmethod
    def hash(cls, key: tuple[int, int], s: bytes) -> int:
        k0, k1 = key[0] & cls.M, key[1] & cls.M
        v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D]
        v += [k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
        full = len(s) - len(s) % 8
        words = [int.from_bytes(s[i : i + 8], "little") for i in range(0, full, 8)]
        words.append(((len(s) & 0xFF) << 56) | int.from_bytes(s[full:], "little"))
        for m in words:
            v[3] ^= m
            cls.rounds(v, 2)
            v[0] ^= m
        v[2] ^= 0xFF
        cls.rounds(v, 4)
        return v[0] ^ v[1] ^ v[2] ^ v[3]


class TextTable:
    """Keras' IndexLookup: [mask] + [OOV] * num_oov + tokens -> indices; unknown tokens go to
    the OOV index, or with several to Fingerprint64 (SipHash with a salt) mod num_oov (integers:
    floormod unless oov_method="farmhash", which hashes the decimal string)."""

    def __init__(
        self, tokens: list, integer: bool, mask, oov, num_oov: int, oov_start: int,
        invert: bool = False, oov_method: str = "floormod", salt: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        self.integer, self.mask, self.oov, self.num_oov = integer, mask, oov, num_oov
        self.oov_start, self.invert = oov_start, invert
        self.oov_method, self.salt = oov_method, salt
        self.start = oov_start + num_oov
        self.keys = [t if integer else t.encode("utf-8") for t in tokens]
        self.index = {k: self.start + i for i, k in enumerate(self.keys)}
        self.mask_key = None if mask is None or integer else mask.encode("utf-8")
        if integer:
            self.mask_key = mask

    @staticmethod
    def text(value) -> bytes:
        value = value.item() if hasattr(value, "item") else value
        return value if isinstance(value, bytes) else str(value).encode("utf-8")

    def lookup(self, key, dropped_mask: bool):
        if self.mask_key is not None and key == self.mask_key:
            return None if dropped_mask else 0
        if key in self.index:
            return self.index[key]
        if self.num_oov == 0:
            raise ValueError(f"{key!r} is not in the vocabulary and num_oov_indices=0")
        if self.num_oov == 1:
            return self.oov_start
        if isinstance(key, int):
            if self.oov_method == "floormod":
                return self.oov_start + key % self.num_oov
            key = str(key).encode()
        if self.salt is not None:
            return self.oov_start + SipHash24.hash(self.salt, key) % self.num_oov
        return self.oov_start + FarmHash64.fingerprint(key) % self.num_oov

    def inverse(self, index: int):
        if self.mask is not None and index == 0:
            return self.mask
        if 0 <= index - self.start < len(self.keys):
            key = self.keys[index - self.start]
            return key if self.integer else key.decode("utf-8")
        return self.oov


class TextEncoding:
    """How the text layers read a batch and encode indices, as Keras does."""

    @staticmethod
    def rows(inputs) -> tuple[list[list], int]:
        """A batch (list, numpy array (B,) or (B, T), tensor) as rows, and its rank."""
        values = inputs.tolist() if hasattr(inputs, "tolist") else list(inputs)
        if values and all(isinstance(r, list | tuple) for r in values):
            return [list(r) for r in values], 2
        return [[v] for v in values], 1

    @staticmethod
    def counts(
        rows: list[list],
        mode: str,
        depth: int,
        like: torch.Tensor,
        idf: torch.Tensor | None,
    ) -> torch.Tensor:
        """multi_hot / count / tf_idf of rows of indices (None and out-of-range dropped), as
        floats of ``like``'s dtype (the next Keras 3 layer casts the int64 counts so)."""
        counts = torch.zeros((len(rows), depth), dtype=torch.int64)
        for r, row in enumerate(rows):
            for i in row:
                if i is not None and 0 <= i < depth:
                    counts[r, i] += 1
        if mode == "multi_hot":
            counts = (counts > 0).to(torch.int64)
        if mode == "tf_idf":
            return counts.to(idf.dtype) * idf[:depth]
        return counts.to(like.dtype)

    @staticmethod
    def encode(ids: list[list], rank: int, mode: str, depth: int, module: nn.Module):
        """Int ids shaped as the input, or encodings (multi_hot, count, tf_idf over the last
        axis; one_hot per value), as Keras' encode_categorical_inputs."""
        if mode == "int":
            out = [[0 if i is None else i for i in r] for r in ids]
            out = torch.tensor(out, dtype=torch.int64)
            return out[:, 0] if rank == 1 else out.reshape(len(ids), -1)
        idf, like = getattr(module, "idf_weights", None), module._float
        if mode == "one_hot":
            hot = TextEncoding.counts(
                [[i] for r in ids for i in r], "count", depth, like, None
            )
            if rank == 1 or all(len(r) == 1 for r in ids):
                return hot
            return hot.reshape(len(ids), -1, depth)
        if rank == 1:  # Keras bincounts a rank-1 batch as one sample
            flat = [[i for r in ids for i in r]]
            return TextEncoding.counts(flat, mode, depth, like, idf)[0]
        return TextEncoding.counts(ids, mode, depth, like, idf)


class KerasTextVectorization(nn.Module):
    """keras.layers.TextVectorization on a batch of texts (list of str/bytes, (B,) or (B, 1)).

    lower = ASCII A-Z only (tf.strings.lower); punctuation = the 32 ASCII punctuation bytes;
    whitespace = ASCII whitespace (tf.strings.split); characters = code points, invalid UTF-8
    as U+FFFD; n-grams joined with " "; int ids padded with 0 after the tokens."""

    PUNCTUATION = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    LOWER = bytes.maketrans(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz"
    )

    def __init__(
        self, vocabulary: list[str], standardize: str | None, split: str | None,
        widths: tuple[int, ...] | None, output_mode: str, length: int | None, depth: int,
        idf_size: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.standardize, self.split, self.widths = standardize, split, widths
        self.output_mode, self.length, self.depth = output_mode, length, depth
        self.table = TextTable(
            vocabulary, False, "", "[UNK]", 1, int(output_mode == "int")
        )
        self.register_buffer("_float", torch.zeros(0))
        if output_mode == "tf_idf":
            self.register_buffer("idf_weights", torch.zeros(idf_size))
            self.register_buffer("lookup_idf_weights", torch.zeros(idf_size))

    def tokens(self, text) -> list[bytes]:
        data = TextTable.text(text)
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            data = data.translate(self.LOWER)
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            data = data.translate(None, self.PUNCTUATION)
        if self.split == "whitespace":
            # bytes.split() splits on ASCII whitespace only, as tf.strings.split
            pieces = data.split()
        elif self.split == "character":
            pieces = [c.encode() for c in data.decode("utf-8", errors="replace")]
        else:
            pieces = [data]
        if not self.widths:
            return pieces
        return [
            b" ".join(pieces[i : i + w])
            for w in self.widths
            for i in range(len(pieces) - w + 1)
        ]

    def forward(self, texts) -> torch.Tensor:
        rows, _ = TextEncoding.rows(texts)
        int_mode = self.output_mode == "int"
        ids = [
            [self.table.lookup(t, not int_mode) for t in self.tokens(r[0])]
            for r in rows
        ]
        if not int_mode:
            idf = getattr(self, "lookup_idf_weights", None)
            return TextEncoding.counts(
                ids, self.output_mode, self.depth, self._float, idf
            )
        length = (
            self.length if self.length is not None else max(map(len, ids), default=0)
        )
        out = torch.zeros((len(ids), length), dtype=torch.int64)
        for r, row in enumerate(ids):
            out[r, : len(row[:length])] = torch.tensor(row[:length], dtype=torch.int64)
        return out


class KerasLookup(nn.Module):
    """keras.layers.StringLookup / IntegerLookup on a (B,) or (B, T) batch; the arguments
    before ``output_mode`` are TextTable's."""

    def __init__(
        self, tokens: list, integer: bool, mask, oov, num_oov: int, oov_start: int,
        invert: bool, oov_method: str, salt: tuple[int, int] | None, output_mode: str,
        depth: int, idf_size: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.table = TextTable(
            tokens, integer, mask, oov, num_oov, oov_start, invert, oov_method, salt
        )
        self.output_mode, self.depth = output_mode, depth
        self.register_buffer("_float", torch.zeros(0))
        if output_mode == "tf_idf":
            self.register_buffer("idf_weights", torch.zeros(idf_size))

    def forward(self, inputs):
        rows, rank = TextEncoding.rows(inputs)
        if self.table.invert:
            out = [[self.table.inverse(int(v)) for v in row] for row in rows]
            return [r[0] for r in out] if rank == 1 else out
        key = int if self.table.integer else TextTable.text
        int_mode = self.output_mode == "int"
        ids = [[self.table.lookup(key(v), not int_mode) for v in row] for row in rows]
        return TextEncoding.encode(ids, rank, self.output_mode, self.depth, self)


class KerasHashing(nn.Module):
    """keras.layers.Hashing: Fingerprint64 (SipHash with a salt) of the UTF-8 bytes (integers:
    their decimal string; floats truncated first) mod num_bins; mask_value at bin 0."""

    def __init__(
        self, num_bins: int, mask_value=None, salt=None, output_mode: str = "int"
    ) -> None:
        super().__init__()
        self.num_bins, self.mask_value, self.salt = num_bins, mask_value, salt
        self.output_mode = output_mode
        self.register_buffer("_float", torch.zeros(0))

    def bin(self, value) -> int:
        value = value.item() if hasattr(value, "item") else value
        masked = self.mask_value is not None and self.num_bins > 1
        texts = isinstance(value, str | bytes) and isinstance(
            self.mask_value, str | bytes
        )
        if masked and (
            TextTable.text(value) == TextTable.text(self.mask_value)
            if texts
            else value == self.mask_value
        ):
            return 0
        number = isinstance(value, int | float)
        data = str(int(value)).encode() if number else TextTable.text(value)
        n = self.num_bins - 1 if masked else self.num_bins
        if self.salt is not None:
            found = SipHash24.hash(self.salt, data) % n
        else:
            found = FarmHash64.fingerprint(data) % n
        return found + 1 if masked else found

    def forward(self, inputs) -> torch.Tensor:
        rows, rank = TextEncoding.rows(inputs)
        ids = [[self.bin(v) for v in row] for row in rows]
        out = TextEncoding.encode(ids, rank, self.output_mode, self.num_bins, self)
        return out if self.output_mode == "int" else out.to(self._float.dtype)
