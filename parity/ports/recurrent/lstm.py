"""An LSTM that looks like ``torch.nn.LSTM`` but computes what a Keras LSTM computes.

Why not nn.LSTM: Keras LSTMs may use a hard-sigmoid gate (DeepMoji, every Keras <= 2.2 default),
and Keras masking (``Embedding(mask_zero=True)``) carries the state through masked steps wherever
they are (pre-padding, post-padding, holes); ``pack_padded_sequence`` handles post-padding only.

The constructor, parameter names and shapes, gate order (i, f, g, o) and the forward's return
value are nn.LSTM's, so a state_dict moves between the two unchanged and, with
``gate_activation="sigmoid"`` and no mask, the outputs are nn.LSTM's.

Three implementations compute the same thing: "reference", the readable loop below
(``reference_layer``); "fast" (the default), whose loop ``parity.ports.recurrent.backends.select``
picks per forward: on CPU the fused loops (in C++ for float32 inference and training when the
extension builds, in Python otherwise, an out-of-place form under autograd), on CUDA in float32 the
Triton kernels; and "op", one call per layer of the registered operator ``parity::keras_lstm``
(parity.ports.recurrent.ops), which runs those same loops inside and is what "fast" becomes while
torch.compile or torch.export trace the model. All pass the same oracle and golden tests."""

from __future__ import annotations

import torch
from torch import Tensor

from parity.conventions import LSTM_GATES
from parity.ports.activations import ACTIVATIONS, ActivationSlot
from parity.ports.recurrent import backends
from parity.ports.recurrent.backends import IMPLEMENTATIONS, Loop, PreparedCache, Weights
from parity.ports.recurrent.base import KerasRNNBase, LayerRunner, State, traced


class LSTM(KerasRNNBase):
    """Drop-in ``nn.LSTM`` with Keras gate activations and Keras masking.

    Extra keyword-only arguments:
        gate_activation: Keras ``recurrent_activation``, applied to the i, f, o gates.
        activation: Keras ``activation``, applied to the candidate g and to the cell output.
        zero_output_for_mask: output zeros at masked steps (Keras Bidirectional) instead of the
            carried previous output (a plain Keras LSTM). ``None`` means ``bidirectional``.
        trainable_bias_hh: False makes bias_hh a zero buffer instead of a parameter: Keras has
            one bias (bias_ih here), so an optimizer must not move a second one (conversion
            builds it so; a CuDNNLSTM file's two trained biases stay parameters).
        impl: "fast" (default), "reference", "op", "packed" ("fast", with the length-aware
            inference loop backends.packed on any device; "fast" uses it on CPU with the C++
            extension, for float32 training too) or "masked" ("fast" without it: every step,
            masked); see the module docstring. A plain attribute, so it can be switched on a
            built model (benchmarks compare them).

    ``proj_size`` exists only to keep nn.LSTM's positional order; any value but 0 is refused.
    """

    gates = LSTM_GATES
    state_names = ("h0", "c0")

    gate_activation = ActivationSlot("_gate_fn", recurrent=True, gate=True)

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
        trainable_bias_hh: bool = True,
        impl: str = "fast",
    ) -> None:
        if proj_size != 0:
            raise ValueError("parity.ports.LSTM does not support proj_size (Keras has none)")
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
            gate_activation=gate_activation,
            activation=activation,
            zero_output_for_mask=zero_output_for_mask,
            trainable_bias_hh=trainable_bias_hh,
        )
        self.proj_size = 0
        self.impl = impl
        #: Weights prepared for the fast loops, per layer, rebuilt when a weight changes.
        self._prepared = PreparedCache()

    # --- choosing the loop -----------------------------------------------------------------------

    def _layer_runner(self, x: Tensor, state: State) -> LayerRunner:
        """The loop every layer of this forward runs: the registered operator when asked for
        (``impl="op"``) or while torch.compile / torch.export trace the model (its loops branch
        on the mask's contents and run a Python loop over the length, neither traceable with a
        dynamic length); otherwise as backends.select picks it."""
        if self.impl == "op" or (self.impl != "reference" and traced()):
            return self._run_layer_op
        h0, c0 = state
        loop = backends.select(
            self.impl, self.gate_activation, self.activation, x, h0, c0, self.parameters
        )
        if loop is Loop.REFERENCE:
            return self._run_layer  # the reference loop below
        run = backends.RUNNERS[loop]
        gate, activation, zero_output = (
            self.gate_activation,
            self.activation,
            self.zero_output_for_mask,
        )

        def run_layer(
            x: Tensor, state: State, mask: Tensor | None, layer: int
        ) -> tuple[Tensor, State]:
            h, c = state
            weights = self._direction_weights(layer)
            out, h, c = run(
                weights, self._prepared, layer, x, h, c, mask, gate, activation, zero_output
            )
            return out, (h, c)

        return run_layer

    def _direction_weights(self, layer: int) -> Weights:
        """Per direction (weight_ih, weight_hh, bias_ih, bias_hh); biases None without bias."""
        return [
            tuple(
                getattr(self, f"{kind}_l{layer}{suffix}", None)
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            for suffix in self._suffixes()
        ]

    # --- the reference loop ----------------------------------------------------------------------

    def _run_layer(
        self, x: Tensor, state: State, mask: Tensor | None, layer: int
    ) -> tuple[Tensor, State]:
        """The reference loop (``reference_layer``) on this layer's weights."""
        h, c = state
        out, h, c = reference_layer(
            self._direction_weights(layer),
            x,
            h,
            c,
            mask,
            gate=self.gate_activation,
            activation=self.activation,
            zero_output_for_mask=self.zero_output_for_mask,
        )
        return out, (h, c)

    def _run_layer_op(
        self, x: Tensor, state: State, mask: Tensor | None, layer: int
    ) -> tuple[Tensor, State]:
        """One layer through the registered operator ``parity::keras_lstm`` (recurrent.ops):
        one opaque node for torch.export, torch.compile and the ONNX exporter, whatever the mask
        holds and however long the sequence is."""
        h, c = state
        weights = self._direction_weights(layer)
        forward, reverse = weights[0], weights[1] if len(weights) > 1 else (None,) * 4
        op = torch.ops.parity.keras_lstm
        gate, activation = self.gate_activation, self.activation
        # Training under torch.compile with the C++ loop loaded: the operator that keeps the
        # gates for its backward (a build cannot run while tracing; until the first eager call
        # loads the extension, the traced backward recomputes the layer instead). Not in
        # torch.export's programs: they stay portable (any device, ONNX's translation).
        if (
            not torch.compiler.is_exporting()
            and backends.records_grad((x, h, c), self.parameters)
            and backends.cpp_training(x, h, c, gate, activation, build=False)
        ):
            op = torch.ops.parity.keras_lstm_train
        out, h, c, *_ = op(
            x,
            h,
            c,
            None if mask is None else mask.squeeze(-1),
            *forward,
            *reverse,
            gate,
            activation,
            self.zero_output_for_mask,
        )
        return out, (h, c)


def _loop_order(per_direction: list[Tensor]) -> Tensor:
    """Stack per-direction (T, ...) tensors into (T, D, ...), the reverse one time-reversed,
    so that loop step s reads time s forward and time T-1-s in reverse."""
    return torch.stack([t.flip(0) if d else t for d, t in enumerate(per_direction)], dim=1)


def reference_layer(
    weights: Weights,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    mask: Tensor | None,
    *,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The reference loop, the readable definition every other loop must match: one layer,
    both directions at once. ``weights`` per direction (weight_ih, weight_hh, bias_ih, bias_hh),
    biases None without bias; x: (T, B, in); h, c: (D, B, h); mask: (T, B, 1) bool or None.
    Returns output (T, B, D*h) and the final h, c, each (D, B, h)."""
    n_dir, hidden = h.shape[0], h.shape[-1]
    step_mask = None if mask is None else _loop_order([mask] * n_dir)  # (T, D, B, 1)
    seq_len, batch = x.shape[0], x.shape[1]
    # Both directions' weights stacked, so one batched matmul serves both: w_ih_t (D, in, 4h)
    # and w_hh_t (D, h, 4h) as transposed views (CPU baddbmm is fastest on those), b (D, 1, 4h).
    w_ih_t = torch.stack([w[0] for w in weights]).transpose(1, 2)
    w_hh_t = torch.stack([w[1] for w in weights]).transpose(1, 2)
    b = None
    if weights[0][2] is not None:
        b = torch.stack([w[2] + w[3] for w in weights]).unsqueeze(1)
    # Input projection for every step and direction in one batched matmul, hoisted out of
    # the loop. The reverse direction projects the time-reversed input, so the result is
    # already in loop order: step s reads time s forward and time T-1-s in reverse.
    x_in = _loop_order([x] * n_dir).transpose(0, 1)  # (D, T, B, in)
    x_in = x_in.reshape(n_dir, seq_len * batch, -1)
    if b is None:
        x_proj = torch.bmm(x_in, w_ih_t)
    else:
        x_proj = torch.baddbmm(b, x_in, w_ih_t)
    x_proj = x_proj.view(n_dir, seq_len, batch, LSTM_GATES * hidden)  # (D, T, B, 4h)
    gate_fn, act = ACTIVATIONS[gate].fn, ACTIVATIONS[activation].fn
    # What a masked step outputs: zeros, or the previous output. Keras' previous output starts
    # at zeros (not at the initial state), so a pre-padded row outputs zeros until its first
    # real step in both modes.
    fill = h.new_zeros(h.shape)
    outputs = []
    for s in range(seq_len):
        z = torch.baddbmm(x_proj[:, s], h, w_hh_t)  # (D, B, 4h)
        z_i, z_f, z_g, z_o = z.chunk(LSTM_GATES, dim=-1)
        c_new = gate_fn(z_f) * c + gate_fn(z_i) * act(z_g)
        h_new = gate_fn(z_o) * act(c_new)
        m = None if step_mask is None else step_mask[s]  # (D, B, 1)
        (h, c), out, fill = KerasRNNBase._mask_step(
            m, (h_new, c_new), (h, c), fill, zero_output_for_mask
        )
        outputs.append(out)
    if not outputs:  # no steps: an empty output, the initial state
        return x.new_zeros(0, batch, n_dir * hidden), h, c
    if n_dir == 2:  # time order: the reverse direction's step s is time T-1-s
        out = torch.stack(
            [torch.cat((outputs[t][0], outputs[-1 - t][1]), -1) for t in range(seq_len)]
        )  # (T, B, 2h)
    else:
        out = torch.stack([o[0] for o in outputs])  # (T, B, h)
    return out, h, c
