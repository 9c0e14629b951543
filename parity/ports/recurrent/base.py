"""What LSTM, GRU and SimpleRNN share, as torch's nn.RNNBase does for nn.LSTM/GRU/RNN.

Argument checking, parameters and their names (``weight_ih_l0``, ``weight_hh_l0``, ``_reverse``
for the backward direction), reset, repr, and the forward driver: unbatched and PackedSequence
input, batch_first, initial states, Keras masks, layers with dropout between them. A subclass
says how one layer runs (``_run_layer``) and which biases it has.

Keras masking, the rule every loop follows: a masked step carries the state; its output is zeros
(``zero_output_for_mask``, as inside Keras' Bidirectional) or the previous output (a plain Keras
RNN), where the previous output starts at zeros, not at the initial state.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from parity.ports.activations import ActivationSlot

#: Set by ``operators()``: eager forwards take the traced path (the registered operators).
_AS_TRACED: ContextVar[bool] = ContextVar("parity_recurrent_as_traced", default=False)


@contextlib.contextmanager
def operators() -> Iterator[None]:
    """Run every recurrent layer through its registered operator (recurrent.ops) in eager, as
    torch.compile / torch.export run it: for tests and for debugging a traced model."""
    token = _AS_TRACED.set(True)
    try:
        yield
    finally:
        _AS_TRACED.reset(token)


def traced() -> bool:
    """Whether this forward takes the traced path: under torch.compile / torch.export, or
    inside ``operators()``."""
    return torch.compiler.is_compiling() or _AS_TRACED.get()


#: Parameter-name suffix per direction: forward, backward (torch's names).
DIRECTION_SUFFIXES = ("", "_reverse")

#: torch's recurrent bias, which Keras' LSTM and SimpleRNN do not have (they add one bias).
FIXED_BIAS_PREFIX = "bias_hh_"

#: The recurrent state: (h, c) for an LSTM, (h,) otherwise; returned to the caller as a tuple.
State = Sequence[Tensor]
#: Runs one layer: (x, state, mask, layer) -> (output, final state); see ``_run_layer``.
LayerRunner = Callable[[Tensor, State, Tensor | None, int], tuple[Tensor, State]]


class KerasRNNBase(nn.Module):
    """Base of the Keras-computing recurrent layers; see the module docstring.

    Subclasses set ``gates`` (gate blocks stacked in a weight's rows), ``state_names`` (the
    tensors of the recurrent state, named as in error messages) and implement ``_run_layer``.
    """

    #: Gate blocks stacked in each weight's rows (torch's gate_size = gates * hidden_size).
    gates: ClassVar[int] = 1
    #: The state tensors, in the order the forward's ``hx`` holds them.
    state_names: ClassVar[tuple[str, ...]] = ("hx",)
    #: Keras runs these batch-first only; the constructor refuses batch_first=False.
    batch_first_only: ClassVar[bool] = False

    activation = ActivationSlot("_act_fn", recurrent=True)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        *,
        activation: str,
        zero_output_for_mask: bool | None,
        gate_activation: str | None = None,
        trainable_bias_hh: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if self.batch_first_only and not batch_first:
            raise ValueError(f"{name} is batch-first only, as Keras is")
        if input_size <= 0 or hidden_size <= 0 or num_layers <= 0:
            raise ValueError(
                "input_size, hidden_size and num_layers must be positive, got "
                f"{input_size}, {hidden_size}, {num_layers}"
            )
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout applies between {name} layers only; with num_layers=1 it does nothing",
                stacklevel=3,
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        if gate_activation is not None:
            self.gate_activation = gate_activation
        self.activation = activation
        self.zero_output_for_mask = (
            bidirectional if zero_output_for_mask is None else zero_output_for_mask
        )
        self.trainable_bias_hh = trainable_bias_hh
        factory = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes():
                shapes = self._parameter_shapes(layer_input, f"l{layer}{suffix}")
                for param_name, shape in shapes.items():
                    if self._is_fixed_bias(param_name):
                        # Keras has one bias: torch's second is a constant zero, not a parameter,
                        # so no optimizer moves the sum twice. A buffer keeps the state_dict's
                        # keys (nn.LSTM's) and follows .to().
                        self.register_buffer(param_name, torch.zeros(shape, **factory))
                    else:
                        param = nn.Parameter(torch.empty(shape, **factory))
                        self.register_parameter(param_name, param)
        self.reset_parameters()

    def _is_fixed_bias(self, name: str) -> bool:
        """Whether ``name`` is torch's second bias held at zero (``trainable_bias_hh=False``)."""
        return not self.trainable_bias_hh and name.startswith(FIXED_BIAS_PREFIX)

    # --- parameters --------------------------------------------------------------------------

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self) -> tuple[str, ...]:
        return DIRECTION_SUFFIXES[: self.num_directions]

    def _bias_shapes(self, gate_size: int) -> dict[str, tuple[int, ...]]:
        """Bias name (without the layer suffix) -> shape; torch's two biases by default."""
        return {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}

    def _parameter_shapes(self, layer_input: int, name: str) -> dict[str, tuple[int, ...]]:
        """One layer and direction's parameters (``name`` = "l0", "l0_reverse", ...), in
        registration (state_dict) order."""
        gate_size = self.gates * self.hidden_size
        shapes = {
            f"weight_ih_{name}": (gate_size, layer_input),
            f"weight_hh_{name}": (gate_size, self.hidden_size),
        }
        if self.bias:
            shapes |= {
                f"{kind}_{name}": shape for kind, shape in self._bias_shapes(gate_size).items()
            }
        return shapes

    def reset_parameters(self) -> None:
        """torch's default RNN init, U(-1/sqrt(h), 1/sqrt(h)); use parity.init for Keras'."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, so code written for torch's RNNs (torchMoji calls this) runs unchanged."""

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
        if not self.trainable_bias_hh:
            s += ", trainable_bias_hh=False"
        gate = getattr(self, "gate_activation", None)
        if gate is not None:
            s += f", gate_activation={gate!r}"
        if self.activation != "tanh":
            s += f", activation={self.activation!r}"
        return s

    # --- forward -----------------------------------------------------------------------------

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | State | None = None,
        *,
        mask: Tensor | None = None,
    ) -> tuple[Tensor | PackedSequence, Tensor | State]:
        """Run like the torch layer; ``mask`` (B, T), True = real step, gives Keras masking.

        The mask is (B, T) whatever ``batch_first`` says, as in Keras. PackedSequence input is
        run as post-padded input with a mask, which is what torch computes for it.
        """
        state = None if hx is None else self._as_state(hx)
        if isinstance(input, PackedSequence):
            if mask is not None:
                raise ValueError("pass either a PackedSequence or a mask, not both")
            output, state = self._forward_packed(input, state)
            return output, self._as_hx(state)

        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(0 if self.batch_first else 1)
            state = None if state is None else tuple(t.unsqueeze(1) for t in state)
            mask = None if mask is None else mask.unsqueeze(0)
        elif input.dim() != 3:
            raise ValueError(
                f"{type(self).__name__} input must be 2-D or 3-D, got shape {tuple(input.shape)}"
            )

        x = input.transpose(0, 1) if self.batch_first else input  # (T, B, in)
        output, state = self._forward_time_major(x, state, mask)
        if self.batch_first:
            output = output.transpose(0, 1)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            state = tuple(t.squeeze(1) for t in state)
        return output, self._as_hx(state)

    def _as_state(self, hx: Tensor | State) -> State:
        """The forward's ``hx`` as a tuple of state tensors (LSTM: (h, c); others: (h,))."""
        return (hx,) if isinstance(hx, Tensor) else tuple(hx)

    def _as_hx(self, state: State) -> Tensor | State:
        """The state tuple as the forward returns it: a tensor for a one-tensor state."""
        return state[0] if len(state) == 1 else state

    def _forward_packed(
        self, packed: PackedSequence, state: State | None
    ) -> tuple[PackedSequence, State]:
        # pad_packed_sequence restores the caller's batch order; hx and h_n are in that order too,
        # as torch's are.
        x, lengths = pad_packed_sequence(packed)  # (T, B, in), post-padded
        steps = torch.arange(x.shape[0], device=lengths.device)
        mask = (steps[None, :] < lengths[:, None]).to(x.device)
        output, state = self._forward_time_major(x, state, mask)
        if packed.sorted_indices is not None:
            output = output.index_select(1, packed.sorted_indices)
            lengths = lengths.index_select(0, packed.sorted_indices.to(lengths.device))
        data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
        repacked = PackedSequence(
            data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
        )
        return repacked, state

    def _forward_time_major(
        self, x: Tensor, state: State | None, mask: Tensor | None
    ) -> tuple[Tensor, State]:
        """x (T, B, in), state (L*D, B, h) each, mask (B, T) -> output (T, B, D*h), final state."""
        seq_len, batch = x.shape[0], x.shape[1]
        n_dir = self.num_directions
        state_shape = (self.num_layers * n_dir, batch, self.hidden_size)
        if state is None:
            zeros = x.new_zeros(state_shape)
            state = (zeros,) * len(self.state_names)
        else:
            if len(state) != len(self.state_names):
                raise ValueError(f"hx must hold {', '.join(self.state_names)}")
            for name, t in zip(self.state_names, state, strict=True):
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

        run_layer = self._layer_runner(x, state)
        finals: list[State] = []
        for layer in range(self.num_layers):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            states = slice(layer * n_dir, (layer + 1) * n_dir)
            x, layer_state = run_layer(x, [t[states] for t in state], m, layer)
            finals.append(layer_state)
        return x, tuple([torch.cat(parts) for parts in zip(*finals, strict=True)])

    def _layer_runner(self, x: Tensor, state: State) -> LayerRunner:
        """The function that runs each layer of this forward: the reference loop, or, while
        torch.compile / torch.export trace the model, the registered operator (its Python loop
        over the length cannot be traced with a dynamic length); LSTM picks among its loops."""
        return self._run_layer_op if traced() else self._run_layer

    #: The cell ``parity::keras_rnn`` runs for this class (recurrent.ops.CELLS); None: no op.
    cell: ClassVar[str | None] = None

    def _cell(self) -> str:
        """This layer's cell name for recurrent.ops (a GRU's depends on ``reset_after``)."""
        if self.cell is None:
            raise NotImplementedError(f"{type(self).__name__} has no registered operator")
        return self.cell

    def _direction_weights(self, layer: int) -> list[tuple[Tensor | None, ...]]:
        """Per direction (weight_ih, weight_hh, bias_ih or a single bias, bias_hh or None)."""
        out = []
        for suffix in self._suffixes():
            name = f"l{layer}{suffix}"
            shapes = self._parameter_shapes(1, name)
            biases = [getattr(self, n) for n in shapes if n.startswith("bias")]
            biases += [None] * (2 - len(biases))
            out.append(
                (getattr(self, f"weight_ih_{name}"), getattr(self, f"weight_hh_{name}"), *biases)
            )
        return out

    def _run_layer_op(
        self, x: Tensor, state: State, mask: Tensor | None, layer: int
    ) -> tuple[Tensor, State]:
        """One layer through the registered operator ``parity::keras_rnn`` (recurrent.ops)."""
        (h,) = state
        weights = self._direction_weights(layer)
        forward, reverse = weights[0], weights[1] if len(weights) > 1 else (None,) * 4
        out, h = torch.ops.parity.keras_rnn(
            x,
            h,
            None if mask is None else mask.squeeze(-1),
            *forward,
            *reverse,
            self._cell(),
            getattr(self, "gate_activation", "linear"),
            self.activation,
            self.zero_output_for_mask,
        )
        return out, (h,)

    def _run_layer(
        self, x: Tensor, state: State, mask: Tensor | None, layer: int
    ) -> tuple[Tensor, State]:
        """One layer, every direction. x (T, B, in); state (D, B, h) each; mask (T, B, 1) bool
        or None. Returns output (T, B, D*h) in time order and the final state (D, B, h) each.

        This one runs the reference loop ``reference_layer`` for a cell with one state tensor
        (GRU, SimpleRNN), whose arithmetic the subclass gives as ``_cell_fns``; LSTM overrides
        it."""
        (h0,) = state
        project, step = self._cell_fns()
        out, h = reference_layer(
            project, step, self._direction_weights(layer), x, h0, mask, self.zero_output_for_mask
        )
        return out, (h,)

    def _cell_fns(self) -> tuple[Projection, Step]:
        """(project, step): the input projection of every step and one recurrent step, on one
        direction's weights (see ``reference_layer``)."""
        raise NotImplementedError

    @staticmethod
    def _mask_step(
        m: Tensor | None, new: State, old: State, fill: Tensor, zero_output_for_mask: bool
    ) -> tuple[State, Tensor, Tensor]:
        """One step of Keras masking (see the module docstring). ``new`` and ``old`` are the
        state after and before the step, h first; ``fill`` what a masked step outputs.
        Returns (state, output, next fill)."""
        if m is None:
            return new, new[0], fill
        state = [torch.where(m, n, o) for n, o in zip(new, old, strict=True)]
        out = torch.where(m, new[0], fill)
        return state, out, fill if zero_output_for_mask else out


#: (x (B, T, in), one direction's weights) -> the input projection (B, T, gates * h).
Projection = Callable[[Tensor, tuple[Tensor | None, ...]], Tensor]
#: (projected input (B, gates * h), h (B, h), one direction's weights) -> the new h.
Step = Callable[[Tensor, Tensor, tuple[Tensor | None, ...]], Tensor]


def reference_layer(
    project: Projection,
    step: Step,
    weights: list[tuple[Tensor | None, ...]],
    x: Tensor,
    h0: Tensor,
    mask: Tensor | None,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor]:
    """The reference loop of a one-state cell (GRU, SimpleRNN), the directions one after the
    other, batch-first. x (T, B, in); h0 (D, B, h); mask (T, B, 1) bool or None; ``weights`` per
    direction. Returns output (T, B, D*h) in time order and the final h (D, B, h)."""
    xb = x.transpose(0, 1)  # (B, T, in): back to the caller's batch-first view
    outs, finals = [], []
    for d, direction in enumerate(weights):
        seq_len = xb.shape[1]
        x_proj = project(xb, direction)  # (B, T, gates * h)
        h = h0[d]
        fill = h.new_zeros(h.shape)  # Keras' previous output starts at zeros
        outputs: list[Tensor] = [fill] * seq_len
        for t in range(seq_len - 1, -1, -1) if d == 1 else range(seq_len):
            h_new = step(x_proj[:, t], h, direction)
            m = None if mask is None else mask[t]  # (B, 1)
            (h,), out, fill = KerasRNNBase._mask_step(m, (h_new,), (h,), fill, zero_output_for_mask)
            outputs[t] = out
        outs.append(
            torch.stack(outputs, dim=1) if outputs else xb.new_zeros(xb.shape[0], 0, h.shape[-1])
        )
        finals.append(h)
    return torch.cat(outs, dim=-1).transpose(0, 1), torch.stack(finals)
