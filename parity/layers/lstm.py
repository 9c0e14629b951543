"""An LSTM that looks like ``torch.nn.LSTM`` but computes what a Keras LSTM computes.

Why not nn.LSTM: Keras LSTMs may use a hard-sigmoid gate (DeepMoji, every Keras <= 2.2 default),
and Keras masking (``Embedding(mask_zero=True)``) carries the state through masked steps wherever
they are (pre-padding, post-padding, holes); ``pack_padded_sequence`` handles post-padding only.

The constructor, parameter names and shapes, gate order (i, f, g, o) and the forward's return
value are nn.LSTM's, so a state_dict moves between the two unchanged and, with
``gate_activation="sigmoid"`` and no mask, the outputs are nn.LSTM's.

Two implementations compute the same thing: "reference", the readable loop below, and "fast"
(the default): on CPU, parity.layers._lstm_fast's fused loops (an in-place one on oneDNN-packed
weights when no gradient is recorded, run in C++ by _lstm_cpp when its extension builds; an
out-of-place one that autograd differentiates otherwise); on CUDA in float32, _lstm_triton's
kernels (one launch per time step, forward and backward). All pass the same oracle and golden
tests.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from parity.conventions import LSTM_GATES
from parity.layers import _lstm_fast, _lstm_triton
from parity.layers.activations import AFFINE_SPLIT, get_activation

_DIRECTION_SUFFIXES = ("", "_reverse")
#: Below this batch size a training step is faster through the reference loop: the fast path's
#: per-direction loops record twice the autograd nodes, which dominates at tiny batches
#: (DeepMoji bi_lstm_0, T=30, CPU: B=1 fast 104 ms vs reference 42 ms; B=4 on par; B=16 and
#: B=32 fast 1.2x and 1.6x faster).
FAST_AUTOGRAD_MIN_BATCH = 4

#: LSTM(impl=...) choices.
IMPLEMENTATIONS = ("fast", "reference")


class LSTM(nn.Module):
    """Drop-in ``nn.LSTM`` with Keras gate activations and Keras masking.

    Extra keyword-only arguments:
        gate_activation: Keras ``recurrent_activation``, applied to the i, f, o gates.
        activation: Keras ``activation``, applied to the candidate g and to the cell output.
        zero_output_for_mask: output zeros at masked steps (Keras Bidirectional) instead of the
            carried previous output (a plain Keras LSTM). ``None`` means ``bidirectional``.
        impl: "fast" (default) or "reference"; see the module docstring. A plain attribute, so
            it can be switched on a built model (benchmarks compare the two).

    ``proj_size`` exists only to keep nn.LSTM's positional order; any value but 0 is refused.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        gate_activation: str = "sigmoid",
        activation: str = "tanh",
        zero_output_for_mask: bool | None = None,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        if proj_size != 0:
            raise ValueError("parity.layers.LSTM does not support proj_size (Keras has none)")
        if input_size <= 0 or hidden_size <= 0 or num_layers <= 0:
            raise ValueError(
                "input_size, hidden_size and num_layers must be positive, got "
                f"{input_size}, {hidden_size}, {num_layers}"
            )
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout applies between LSTM layers only; with num_layers=1 it does nothing",
                stacklevel=2,
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0
        self.gate_activation = gate_activation
        self.activation = activation
        self.zero_output_for_mask = (
            bidirectional if zero_output_for_mask is None else zero_output_for_mask
        )
        self._gate_fn = get_activation(gate_activation)
        self._act_fn = get_activation(activation)
        self.impl = impl
        #: layer -> its weights prepared for the fast loop, rebuilt when a weight changes.
        self._fast_cache: dict[int, _lstm_fast.Prepared] = {}
        #: layer -> (cache key, weights prepared for the Triton inference loop), on CUDA.
        self._triton_cache: dict[int, tuple[tuple, tuple]] = {}

        factory = {"device": device, "dtype": dtype}
        gate_size = LSTM_GATES * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in _DIRECTION_SUFFIXES[: self.num_directions]:
                name = f"l{layer}{suffix}"
                shapes = {
                    f"weight_ih_{name}": (gate_size, layer_input),
                    f"weight_hh_{name}": (gate_size, hidden_size),
                }
                if bias:
                    shapes[f"bias_ih_{name}"] = (gate_size,)
                    shapes[f"bias_hh_{name}"] = (gate_size,)
                for param_name, shape in shapes.items():
                    self.register_parameter(param_name, nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    def __getstate__(self) -> dict[str, object]:
        """Pickle and deepcopy without the fast loop's cache: oneDNN-packed weights are opaque
        tensors that neither can copy, and the cache rebuilds itself on the next forward."""
        state = self.__dict__.copy()
        state["_fast_cache"] = {}
        state["_triton_cache"] = {}
        return state

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        """nn.LSTM's default init, U(-1/sqrt(h), 1/sqrt(h)); use parity.init for Keras' init."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, so code written for nn.LSTM (torchMoji calls this) runs unchanged."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        s += f", gate_activation={self.gate_activation!r}"
        if self.activation != "tanh":
            s += f", activation={self.activation!r}"
        return s

    # --- forward ---------------------------------------------------------------------------------

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: tuple[Tensor, Tensor] | None = None,
        *,
        mask: Tensor | None = None,
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        """Run the LSTM like nn.LSTM; ``mask`` (B, T), True = real step, gives Keras masking.

        The mask is (B, T) whatever ``batch_first`` says, as in Keras. PackedSequence input is
        run as post-padded input with a mask, which is what torch computes for it.
        """
        if isinstance(input, PackedSequence):
            if mask is not None:
                raise ValueError("pass either a PackedSequence or a mask, not both")
            return self._forward_packed(input, hx)

        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(0 if self.batch_first else 1)
            hx = None if hx is None else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
            mask = None if mask is None else mask.unsqueeze(0)
        elif input.dim() != 3:
            raise ValueError(f"LSTM input must be 2-D or 3-D, got shape {tuple(input.shape)}")

        x = input.transpose(0, 1) if self.batch_first else input  # (T, B, in)
        output, state = self._forward_time_major(x, hx, mask)
        if self.batch_first:
            output = output.transpose(0, 1)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            state = (state[0].squeeze(1), state[1].squeeze(1))
        return output, state

    def _forward_packed(
        self, packed: PackedSequence, hx: tuple[Tensor, Tensor] | None
    ) -> tuple[PackedSequence, tuple[Tensor, Tensor]]:
        # pad_packed_sequence restores the caller's batch order; hx and h_n are in that order too,
        # as nn.LSTM's are.
        x, lengths = pad_packed_sequence(packed)  # (T, B, in), post-padded
        steps = torch.arange(x.shape[0], device=lengths.device)
        mask = (steps[None, :] < lengths[:, None]).to(x.device)
        output, state = self._forward_time_major(x, hx, mask)
        if packed.sorted_indices is not None:
            output = output.index_select(1, packed.sorted_indices)
            lengths = lengths.index_select(0, packed.sorted_indices.to(lengths.device))
        data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
        repacked = PackedSequence(
            data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
        )
        return repacked, state

    def _forward_time_major(
        self, x: Tensor, hx: tuple[Tensor, Tensor] | None, mask: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        seq_len, batch = x.shape[0], x.shape[1]
        n_dir = self.num_directions
        state_shape = (self.num_layers * n_dir, batch, self.hidden_size)
        if hx is None:
            h0 = c0 = x.new_zeros(state_shape)
        else:
            h0, c0 = hx
            for name, t in (("h0", h0), ("c0", c0)):
                if tuple(t.shape) != state_shape:
                    raise ValueError(f"{name} must have shape {state_shape}, got {tuple(t.shape)}")

        m = None
        if mask is not None:
            if tuple(mask.shape) != (batch, seq_len):
                raise ValueError(
                    f"mask must have shape (batch, time) = {(batch, seq_len)}, "
                    f"got {tuple(mask.shape)}"
                )
            m = mask.to(device=x.device, dtype=torch.bool).t().unsqueeze(-1)  # (T, B, 1)

        run_layer = self._run_layer_reference
        if self.impl == "fast" and self._fast_applies():
            if _lstm_triton.applies(x, self.gate_activation, self.activation):
                run_layer = self._run_layer_triton
            elif not self._records_grad(x, h0, c0):
                run_layer = self._run_layer_fast
            elif batch >= FAST_AUTOGRAD_MIN_BATCH:
                run_layer = self._run_layer_fast_autograd
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            states = slice(layer * n_dir, (layer + 1) * n_dir)
            x, h, c = run_layer(x, h0[states], c0[states], m, layer)
            h_n.append(h)
            c_n.append(c)
        return x, (torch.cat(h_n), torch.cat(c_n))

    def _fast_applies(self) -> bool:
        """The fused loops need in-place forms of both activations (activations.AFFINE_SPLIT).
        They fold the gate's affine part into the weights; the activation's inputs (the g rows,
        the cell) get no such fold, so an activation with an affine part (a hard sigmoid used
        as ``activation``) runs the reference loop."""
        return (
            self.gate_activation in AFFINE_SPLIT
            and self.activation in AFFINE_SPLIT
            and AFFINE_SPLIT[self.activation][:2] == (1.0, 0.0)
        )

    def _records_grad(self, *tensors: Tensor) -> bool:
        """Whether autograd would record this forward (then the in-place loop will not do)."""
        if not torch.is_grad_enabled():
            return False
        return any(t.requires_grad for t in tensors) or any(
            p.requires_grad for p in self.parameters()
        )

    def _direction_weights(self, layer: int) -> _lstm_fast.Weights:
        """Per direction (weight_ih, weight_hh, bias_ih, bias_hh); biases None without bias."""
        return [
            tuple(
                getattr(self, f"{kind}_l{layer}{suffix}", None)
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            for suffix in _DIRECTION_SUFFIXES[: self.num_directions]
        ]

    def _run_layer_fast(
        self, x: Tensor, h: Tensor, c: Tensor, mask: Tensor | None, layer: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The fused inference loop, on this layer's cached prepared weights."""
        weights = self._direction_weights(layer)
        prep = self._fast_cache.get(layer)
        if prep is None or prep.key != _lstm_fast.cache_key(weights, self.gate_activation):
            prep = _lstm_fast.prepare(weights, self.gate_activation, self.hidden_size)
            self._fast_cache[layer] = prep
        return _lstm_fast.run_layer(
            prep,
            x.contiguous(),
            h,
            c,
            mask,
            gate=self.gate_activation,
            activation=self.activation,
            zero_output_for_mask=self.zero_output_for_mask,
        )

    def _run_layer_triton(
        self, x: Tensor, h: Tensor, c: Tensor, mask: Tensor | None, layer: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """CUDA: one Triton kernel per step (see _lstm_triton); inference weights cached."""
        weights = self._direction_weights(layer)
        prepared = None
        if not self._records_grad(x, h, c):
            key = _lstm_fast.cache_key(weights, self.gate_activation)
            cached = self.__dict__.setdefault("_triton_cache", {}).get(layer)
            if cached is None or cached[0] != key:
                cached = _lstm_triton.prepare(weights, self.gate_activation, self.hidden_size)
                self._triton_cache[layer] = cached
            prepared = cached[1]
        return _lstm_triton.run_layer(
            weights,
            prepared,
            x,
            h,
            c,
            mask,
            gate=self.gate_activation,
            activation=self.activation,
            zero_output_for_mask=self.zero_output_for_mask,
        )

    def _run_layer_fast_autograd(
        self, x: Tensor, h: Tensor, c: Tensor, mask: Tensor | None, layer: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The fused loop's arithmetic, out of place, for training."""
        return _lstm_fast.run_layer_autograd(
            self._direction_weights(layer),
            x,
            h,
            c,
            mask,
            gate=self.gate_activation,
            activation=self.activation,
            zero_output_for_mask=self.zero_output_for_mask,
        )

    def _loop_order(self, per_direction: list[Tensor]) -> Tensor:
        """Stack per-direction (T, ...) tensors into (T, D, ...), the reverse one time-reversed,
        so that loop step s reads time s forward and time T-1-s in reverse."""
        return torch.stack([t.flip(0) if d else t for d, t in enumerate(per_direction)], dim=1)

    def _layer_weights(self, layer: int) -> tuple[Tensor, Tensor | None, Tensor]:
        """Both directions' weights stacked, so one batched matmul serves both: w_ih_t (D, in, 4h)
        and w_hh_t (D, h, 4h) as transposed views (CPU baddbmm is fastest on those), b (D, 1, 4h).
        """
        names = [f"l{layer}{s}" for s in _DIRECTION_SUFFIXES[: self.num_directions]]
        w_ih_t = torch.stack([getattr(self, f"weight_ih_{n}") for n in names]).transpose(1, 2)
        w_hh_t = torch.stack([getattr(self, f"weight_hh_{n}") for n in names]).transpose(1, 2)
        b = None
        if self.bias:
            b = torch.stack(
                [getattr(self, f"bias_ih_{n}") + getattr(self, f"bias_hh_{n}") for n in names]
            ).unsqueeze(1)
        return w_ih_t, b, w_hh_t

    def _run_layer_reference(
        self, x: Tensor, h: Tensor, c: Tensor, mask: Tensor | None, layer: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One layer, both directions at once. x: (T, B, in); h, c: (D, B, h); mask: (T, B, 1)
        bool or None. Returns output (T, B, D*h) and the final h, c (D, B, h)."""
        n_dir, hidden = self.num_directions, self.hidden_size
        step_mask = None if mask is None else self._loop_order([mask] * n_dir)  # (T, D, B, 1)
        seq_len, batch = x.shape[0], x.shape[1]
        w_ih_t, b, w_hh_t = self._layer_weights(layer)
        # Input projection for every step and direction in one batched matmul, hoisted out of
        # the loop. The reverse direction projects the time-reversed input, so the result is
        # already in loop order: step s reads time s forward and time T-1-s in reverse.
        x_in = self._loop_order([x] * n_dir).transpose(0, 1)  # (D, T, B, in)
        x_in = x_in.reshape(n_dir, seq_len * batch, -1)
        if b is None:
            x_proj = torch.bmm(x_in, w_ih_t)
        else:
            x_proj = torch.baddbmm(b, x_in, w_ih_t)
        x_proj = x_proj.view(n_dir, seq_len, batch, LSTM_GATES * hidden)  # (D, T, B, 4h)
        gate, act = self._gate_fn, self._act_fn
        # What a masked step outputs: zeros, or the previous output. Keras' previous output starts
        # at zeros (not at the initial state), so a pre-padded row outputs zeros until its first
        # real step in both modes.
        fill = h.new_zeros(h.shape)
        outputs = []
        for s in range(seq_len):
            z = torch.baddbmm(x_proj[:, s], h, w_hh_t)  # (D, B, 4h)
            z_i, z_f, z_g, z_o = z.chunk(LSTM_GATES, dim=-1)
            c_new = gate(z_f) * c + gate(z_i) * act(z_g)
            h_new = gate(z_o) * act(c_new)
            if step_mask is None:
                h, c, out = h_new, c_new, h_new
            else:
                m = step_mask[s]  # (D, B, 1)
                h = torch.where(m, h_new, h)
                c = torch.where(m, c_new, c)
                out = torch.where(m, h_new, fill)
                if not self.zero_output_for_mask:
                    fill = out
            outputs.append(out)
        if self.bidirectional:  # time order: the reverse direction's step s is time T-1-s
            out = torch.stack(
                [torch.cat((outputs[t][0], outputs[-1 - t][1]), -1) for t in range(seq_len)]
            )  # (T, B, 2h)
        else:
            out = torch.stack([o[0] for o in outputs])  # (T, B, h)
        return out, h, c
