"""The Keras recurrent layers as registered torch operators: ``parity::keras_lstm`` (LSTM) and
``parity::keras_rnn`` (GRU both variants, SimpleRNN).

Why: the eager loops branch on the mask's contents (which steps need masking) and run a Python
loop over the sequence length. torch.export and torch.compile trace Python, so with a dynamic
length they would have to specialise it, and a branch on the mask is a data-dependent guard they
cannot take. As one operator, a layer is one opaque node with a shape function (``register_fake``)
and a derivative (``register_autograd``): the graph stays valid for every batch size, length and
padding, and exporters translate the node as a whole (parity.export maps it to ONNX's LSTM).

- Forward: the loops the eager LSTM runs (``backends.select``: C++ or Python on CPU, Triton on
  CUDA; the reference loop for activations the fused loops do not cover).
- Backward: ``parity::keras_lstm_backward``, itself an operator (so compiled and exported training
  graphs hold it as one node too): on CPU float32 the C++ training pair (backends.cpp: the forward
  recomputed keeping the gates, then the written-out backward); elsewhere it recomputes the layer
  with the differentiable fused loop (or the reference loop) and takes its vector-Jacobian
  product with torch.func.vjp.
- ``keras_lstm_train``: keras_lstm for training under torch.compile on CPU float32 with the C++
  extension loaded; it also returns the gates and states the C++ backward reads, so its backward
  (``keras_lstm_train_backward``) recomputes nothing. Padded batches run the length-aware loop
  (backends.packed) inside it, its kept values in the same fixed-shape buffers, packed rows
  first. torch.export keeps keras_lstm (portable).
- ``keras_rnn`` runs the one-state reference loop (recurrent.base.reference_layer) with the
  cell's arithmetic from its module (``CELLS``); its backward is the same vjp.
- Weights are passed per direction, as the parameters themselves (no stacked copies), so the
  inference loops' packed weights are cached across calls, keyed by the parameters' identity and
  version, as the LSTM module's own cache is.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from parity.ports.recurrent import backends, base, gru, simple_rnn
from parity.ports.recurrent.backends import Loop, Weights, packed
from parity.ports.recurrent.backends.prepare import cache_key
from parity.ports.recurrent.lstm import reference_layer

#: The operator namespace (torch.ops.parity); the ONNX translation is registered under it too.
NAMESPACE = "parity"
#: Most prepared-weight entries kept (one per layer and kind of preparation): a few models.
CACHE_ENTRIES = 32


class _OpCache:
    """Prepared (folded, packed) weights by the identity of the weight tensors; an entry is used
    only while those very tensors are alive and unmodified (``prepare.cache_key``), so a freed
    tensor's reused address can never hit a stale entry."""

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[list[weakref.ref], tuple, object]] = {}

    def get(
        self,
        layer: int,
        kind: str,
        weights: Weights,
        gate: str,
        build: Callable[[Weights, str, int], object],
        hidden: int,
    ) -> object:
        """``PreparedCache.get``'s interface (``layer`` is not needed: identity says it)."""
        tensors = [w for direction in weights for w in direction if w is not None]
        ident = (kind, gate, *(id(t) for t in tensors))
        key = cache_key(weights, gate)
        entry = self._entries.get(ident)
        if entry is not None:
            refs, old_key, prepared = entry
            if old_key == key and all(r() is t for r, t in zip(refs, tensors, strict=True)):
                return prepared
        prepared = build(weights, gate, hidden)
        if len(self._entries) >= CACHE_ENTRIES:
            self._entries.pop(next(iter(self._entries)))
        self._entries[ident] = ([weakref.ref(t) for t in tensors], key, prepared)
        return prepared


_CACHE = _OpCache()


def _check_state(h0: Tensor, w_ih_reverse: object) -> None:
    """The state holds one (B, h) per direction given by the weights."""
    n_dir = 1 if w_ih_reverse is None else 2
    if h0.dim() != 3 or h0.shape[0] != n_dir:
        raise ValueError(f"initial state must be ({n_dir}, B, h) for {n_dir} direction(s)")


def _weights(*flat: Tensor | None) -> Weights:
    """(w_ih, w_hh, b_ih, b_hh) per direction; the reverse direction is there when its w_ih is."""
    forward, reverse = tuple(flat[:4]), tuple(flat[4:])
    return [forward] if reverse[0] is None else [forward, reverse]


def _run(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    mask: Tensor | None,
    weights: Weights,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The layer through the loop the eager LSTM would pick (no gradient recorded here)."""
    m = None if mask is None else mask.to(torch.bool).unsqueeze(-1)  # (T, B, 1)
    # The inputs may require grad (the operator's autograd formula handles that); here only the
    # values are computed, so the inference loops apply.
    with torch.no_grad():
        loop = backends.select("fast", gate, activation, x, h0, c0, list)
        if loop is Loop.REFERENCE:
            return reference_layer(
                weights, x, h0, c0, m, gate=gate, activation=activation,
                zero_output_for_mask=zero_output_for_mask,
            )  # fmt: skip
        run = backends.RUNNERS[loop]
        return run(weights, _CACHE, 0, x, h0, c0, m, gate, activation, zero_output_for_mask)


@torch.library.custom_op(f"{NAMESPACE}::keras_lstm", mutates_args=())
def keras_lstm(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    mask: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_ih_reverse: Tensor | None,
    w_hh_reverse: Tensor | None,
    b_ih_reverse: Tensor | None,
    b_hh_reverse: Tensor | None,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """One Keras LSTM layer, one or two directions. x: (T, B, in); h0, c0: (D, B, h); mask:
    (T, B) bool, True = real step, or None; weights as torch's nn.LSTM names them (rows i, f,
    g, o), the ``_reverse`` ones None for one direction. Returns output (T, B, D*h) and the final
    h, c (D, B, h), Keras masking throughout (see parity.ports.recurrent.base)."""
    weights = _weights(
        w_ih, w_hh, b_ih, b_hh, w_ih_reverse, w_hh_reverse, b_ih_reverse, b_hh_reverse
    )
    out, h, c = _run(x, h0, c0, mask, weights, gate, activation, zero_output_for_mask)
    # An operator's outputs must not alias its inputs (zero steps return the initial state).
    h, c = (t.clone() if t is s else t.contiguous() for t, s in ((h, h0), (c, c0)))
    return out.contiguous(), h, c


@keras_lstm.register_fake
def _keras_lstm_fake(
    x: Tensor, h0: Tensor, c0: Tensor, mask: Tensor | None, w_ih: Tensor, *rest: object
) -> tuple[Tensor, Tensor, Tensor]:
    _check_state(h0, rest[3])
    n_dir, hidden = h0.shape[0], h0.shape[2]
    return (
        x.new_empty(x.shape[0], x.shape[1], n_dir * hidden),
        h0.new_empty(h0.shape),
        c0.new_empty(c0.shape),
    )


#: Positions of the differentiable inputs of keras_lstm: x, h0, c0, then the eight weights.
_DIFFERENTIABLE = (0, 1, 2, *range(4, 12))
#: keras_lstm's (and keras_lstm_train's) inputs: x, h0, c0, mask, eight weights, three options.
_N_INPUTS = 15


@torch.library.custom_op(f"{NAMESPACE}::keras_lstm_backward", mutates_args=())
def keras_lstm_backward(
    grad_out: Tensor,
    grad_h: Tensor,
    grad_c: Tensor,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    mask: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_ih_reverse: Tensor | None,
    w_hh_reverse: Tensor | None,
    b_ih_reverse: Tensor | None,
    b_hh_reverse: Tensor | None,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> list[Tensor]:
    """Gradients of keras_lstm w.r.t. x, h0, c0 and each weight that is not None, in that
    order: the layer recomputed with a differentiable loop, then its vector-Jacobian product."""
    flat = [w_ih, w_hh, b_ih, b_hh, w_ih_reverse, w_hh_reverse, b_ih_reverse, b_hh_reverse]
    present = [i for i, w in enumerate(flat) if w is not None]
    if backends.cpp_training(x, h0, c0, gate, activation):  # the C++ backward
        grads = backends.cpp.layer_gradients(
            _weights(*flat), x, h0, c0, None if mask is None else mask.to(torch.bool),
            (grad_out, grad_h, grad_c), gate=gate, activation=activation,
            zero_output_for_mask=zero_output_for_mask,
        )  # fmt: skip
        # Fresh, contiguous tensors already (the bias pair as two), as an operator must return.
        return [*grads[:3], *(grads[3 + i] for i in present)]
    m = None if mask is None else mask.to(torch.bool).unsqueeze(-1)
    fused = backends.fusable(gate, activation)

    def layer(x: Tensor, h0: Tensor, c0: Tensor, *given: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ws: list[Tensor | None] = [None] * len(flat)
        for i, w in zip(present, given, strict=True):
            ws[i] = w
        weights = _weights(*ws)
        kwargs = {"gate": gate, "activation": activation}
        if fused:  # the fused autograd loop: fewer recorded ops, the same numbers
            return backends.python.run_layer_autograd(
                weights, x, h0, c0, m, zero_output_for_mask=zero_output_for_mask, **kwargs
            )
        return reference_layer(
            weights, x, h0, c0, m, zero_output_for_mask=zero_output_for_mask, **kwargs
        )

    _, vjp = torch.func.vjp(layer, x, h0, c0, *(flat[i] for i in present))
    # Fresh tensors: a gradient may be another one (b_ih and b_hh get the same) or an input.
    return [g.clone(memory_format=torch.contiguous_format) for g in vjp((grad_out, grad_h, grad_c))]


@keras_lstm_backward.register_fake
def _keras_lstm_backward_fake(
    grad_out: Tensor, grad_h: Tensor, grad_c: Tensor, x: Tensor, h0: Tensor, c0: Tensor,
    mask: Tensor | None, *rest: object,
) -> list[Tensor]:  # fmt: skip
    weights = [w for w in rest[:8] if w is not None]
    # Contiguous, as the implementation's gradients are (x may be a transposed view).
    return [t.new_empty(t.shape) for t in (x, h0, c0, *weights)]


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: object) -> None:
    tensors = inputs[:12]
    ctx.save_for_backward(*tensors)
    ctx.options = inputs[12:]


def _place(grads: list[Tensor], weights: Sequence[Tensor | None]) -> tuple[Tensor | None, ...]:
    """keras_lstm's (and keras_lstm_train's) input gradients, for autograd: ``grads`` holds x's,
    h0's, c0's, then one per weight that is not None (as the backward operators return them)."""
    given = iter(grads)
    result: list[Tensor | None] = [None] * _N_INPUTS
    for i in _DIFFERENTIABLE:
        if i < 4 or weights[i - 4] is not None:
            result[i] = next(given)
    return tuple(result)


def _backward(
    ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor, grad_h: Tensor, grad_c: Tensor
) -> tuple[Tensor | None, ...]:
    saved = ctx.saved_tensors
    grads = keras_lstm_backward(grad_out, grad_h, grad_c, *saved, *ctx.options)
    return _place(grads, saved[4:12])


keras_lstm.register_autograd(_backward, setup_context=_setup_context)


# --- LSTM training on CPU: the forward keeps what the backward needs ---------------------------


@torch.library.custom_op(f"{NAMESPACE}::keras_lstm_train", mutates_args=())
def keras_lstm_train(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    mask: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_ih_reverse: Tensor | None,
    w_hh_reverse: Tensor | None,
    b_ih_reverse: Tensor | None,
    b_hh_reverse: Tensor | None,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """keras_lstm for training on CPU float32 (where ``backends.cpp_training`` says so; the
    traced LSTM picks it when autograd records): the same arguments and
    first three results, then what the C++ backward reads, each (D, T, B, .): the gates (i, f,
    o, g after their tails), activation(c) and h, c before each step. A padded batch runs the
    length-aware loop (backends.packed, as the eager LSTM does): then each holds its packed
    rows' values first, (D, N, .) of the flattened (D, T * B, .)."""
    weights = _weights(
        w_ih, w_hh, b_ih, b_hh, w_ih_reverse, w_hh_reverse, b_ih_reverse, b_hh_reverse
    )
    params = [w for direction in weights for w in direction]
    n_dir, batch, steps = h0.shape[0], x.shape[1], x.shape[0]
    options = backends.cpp.train_options(gate, activation, zero_output_for_mask, x, n_dir)
    m = None if mask is None else mask.to(torch.bool)
    with torch.no_grad():
        rows = packed.skippable_rows(m)
        if rows is not None:  # padded steps cost nothing
            out, h, c, kept = packed.train_forward(
                weights, x, h0, c0, *rows, options, capacity=steps * batch
            )
            return out, h, c, *(k.view(n_dir, steps, batch, -1) for k in kept)
        out, h, c, *kept = backends.cpp.train_forward(x, h0, c0, m, options, params)
    return out, h, c, *kept


@keras_lstm_train.register_fake
def _keras_lstm_train_fake(
    x: Tensor, h0: Tensor, c0: Tensor, mask: Tensor | None, w_ih: Tensor, *rest: object
) -> tuple[Tensor, ...]:
    _check_state(h0, rest[3])
    n_dir, batch, hidden = h0.shape
    steps = x.shape[0]
    return (
        x.new_empty(steps, batch, n_dir * hidden),
        h0.new_empty(h0.shape),
        c0.new_empty(c0.shape),
        x.new_empty(n_dir, steps, batch, 4 * hidden),
        *(x.new_empty(n_dir, steps, batch, hidden) for _ in range(3)),
    )


@torch.library.custom_op(f"{NAMESPACE}::keras_lstm_train_backward", mutates_args=())
def keras_lstm_train_backward(
    grad_out: Tensor,
    grad_h: Tensor,
    grad_c: Tensor,
    x: Tensor,
    mask: Tensor | None,
    gates: Tensor,
    tc: Tensor,
    hprev: Tensor,
    cprev: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_ih_reverse: Tensor | None,
    w_hh_reverse: Tensor | None,
    b_ih_reverse: Tensor | None,
    b_hh_reverse: Tensor | None,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> list[Tensor]:
    """Gradients of keras_lstm_train w.r.t. x, h0, c0 and each weight that is not None, from
    the kept tensors (the C++ backward; nothing recomputed)."""
    flat = [w_ih, w_hh, b_ih, b_hh, w_ih_reverse, w_hh_reverse, b_ih_reverse, b_hh_reverse]
    weights = _weights(*flat)
    params = [w for direction in weights for w in direction]
    n_dir = hprev.shape[0]
    options = backends.cpp.train_options(gate, activation, zero_output_for_mask, x, n_dir)
    m = None if mask is None else mask.to(torch.bool)
    rows = packed.skippable_rows(m)
    if rows is not None:  # the forward ran the length-aware loop: its packed rows come first
        n = int(rows[1].sum())
        kept = [k.view(n_dir, -1, k.shape[-1])[:, :n] for k in (gates, tc, hprev, cprev)]
        dx, dh, dc, grads = packed.train_backward(
            weights, x, *rows, kept, options, grad_out, grad_h, grad_c
        )
    else:
        dx, dh, dc, grads = backends.cpp.backward(
            x, m, [gates, tc, hprev, cprev], params, options, grad_out, grad_h, grad_c, True
        )
    present = [g for g, w in zip(grads, params, strict=True) if w is not None]
    return [dx, dh, dc, *present]


@keras_lstm_train_backward.register_fake
def _keras_lstm_train_backward_fake(
    grad_out: Tensor, grad_h: Tensor, grad_c: Tensor, x: Tensor, mask: Tensor | None,
    gates: Tensor, tc: Tensor, hprev: Tensor, cprev: Tensor, *rest: object,
) -> list[Tensor]:  # fmt: skip
    weights = [w for w in rest[:8] if w is not None]
    n_dir, batch, hidden = hprev.shape[0], hprev.shape[2], hprev.shape[3]
    state = (n_dir, batch, hidden)
    return [x.new_empty(x.shape), x.new_empty(state), x.new_empty(state),
            *(w.new_empty(w.shape) for w in weights)]  # fmt: skip


def _train_setup_context(
    ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple
) -> None:
    ctx.mark_non_differentiable(*output[3:])
    ctx.save_for_backward(inputs[0], inputs[3], *output[3:], *inputs[4:12])
    ctx.options = inputs[12:]


def _train_backward(
    ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor, grad_h: Tensor, grad_c: Tensor,
    *unused: Tensor,
) -> tuple[Tensor | None, ...]:  # fmt: skip
    x, mask, gates, tc, hprev, cprev, *weights = ctx.saved_tensors
    grads = keras_lstm_train_backward(
        grad_out, grad_h, grad_c, x, mask, gates, tc, hprev, cprev, *weights, *ctx.options
    )
    return _place(grads, weights)


keras_lstm_train.register_autograd(_train_backward, setup_context=_train_setup_context)


# --- GRU, SimpleRNN -----------------------------------------------------------------------------

#: ``cell`` argument of keras_rnn -> (cell, gate, activation) -> (project, step) for
#: base.reference_layer.
CELLS: dict[str, Callable[[str, str, str], tuple[base.Projection, base.Step]]] = {
    "gru": gru.cell_fns,
    "gru_reset_before": gru.cell_fns,
    "simple": simple_rnn.cell_fns,
}


def _rnn_layer(
    x: Tensor,
    h0: Tensor,
    mask: Tensor | None,
    weights: list[tuple[Tensor | None, ...]],
    cell: str,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor]:
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {sorted(CELLS)}")
    project, step = CELLS[cell](cell, gate, activation)
    m = None if mask is None else mask.to(torch.bool).unsqueeze(-1)  # (T, B, 1)
    return base.reference_layer(project, step, weights, x, h0, m, zero_output_for_mask)


@torch.library.custom_op(f"{NAMESPACE}::keras_rnn", mutates_args=())
def keras_rnn(
    x: Tensor,
    h0: Tensor,
    mask: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_ih_reverse: Tensor | None,
    w_hh_reverse: Tensor | None,
    b_ih_reverse: Tensor | None,
    b_hh_reverse: Tensor | None,
    cell: str,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor]:
    """One Keras GRU (``cell`` "gru": reset_after=True, "gru_reset_before") or SimpleRNN
    ("simple") layer, one or two directions. x: (T, B, in); h0: (D, B, h); mask: (T, B) bool or
    None; per direction the weights as the parity layer names them (a GRU's one ``bias`` in
    ``b_ih``, ``b_hh`` None). Returns output (T, B, D*h) and the final h (D, B, h)."""
    weights = _weights(
        w_ih, w_hh, b_ih, b_hh, w_ih_reverse, w_hh_reverse, b_ih_reverse, b_hh_reverse
    )
    with torch.no_grad():
        out, h = _rnn_layer(x, h0, mask, weights, cell, gate, activation, zero_output_for_mask)
    # Contiguous, as the shape function promises (the loop's output is a transposed view).
    return out.contiguous(), h.clone() if h is h0 else h.contiguous()


@keras_rnn.register_fake
def _keras_rnn_fake(x: Tensor, h0: Tensor, *rest: object) -> tuple[Tensor, Tensor]:
    _check_state(h0, rest[5])
    n_dir, hidden = h0.shape[0], h0.shape[2]
    return x.new_empty(x.shape[0], x.shape[1], n_dir * hidden), h0.new_empty(h0.shape)


#: Positions of the differentiable inputs of keras_rnn: x, h0, then the eight weights.
_RNN_DIFFERENTIABLE = (0, 1, *range(3, 11))


@torch.library.custom_op(f"{NAMESPACE}::keras_rnn_backward", mutates_args=())
def keras_rnn_backward(
    grad_out: Tensor,
    grad_h: Tensor,
    x: Tensor,
    h0: Tensor,
    mask: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_ih_reverse: Tensor | None,
    w_hh_reverse: Tensor | None,
    b_ih_reverse: Tensor | None,
    b_hh_reverse: Tensor | None,
    cell: str,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> list[Tensor]:
    """Gradients of keras_rnn w.r.t. x, h0 and each weight that is not None, in that order: the
    reference loop's vector-Jacobian product."""
    flat = [w_ih, w_hh, b_ih, b_hh, w_ih_reverse, w_hh_reverse, b_ih_reverse, b_hh_reverse]
    present = [i for i, w in enumerate(flat) if w is not None]

    def layer(x: Tensor, h0: Tensor, *given: Tensor) -> tuple[Tensor, Tensor]:
        ws: list[Tensor | None] = [None] * len(flat)
        for i, w in zip(present, given, strict=True):
            ws[i] = w
        return _rnn_layer(x, h0, mask, _weights(*ws), cell, gate, activation, zero_output_for_mask)

    _, vjp = torch.func.vjp(layer, x, h0, *(flat[i] for i in present))
    return [g.clone(memory_format=torch.contiguous_format) for g in vjp((grad_out, grad_h))]


@keras_rnn_backward.register_fake
def _keras_rnn_backward_fake(
    grad_out: Tensor, grad_h: Tensor, x: Tensor, h0: Tensor, mask: Tensor | None, *rest: object
) -> list[Tensor]:
    return [t.new_empty(t.shape) for t in (x, h0, *(w for w in rest[:8] if w is not None))]


def _rnn_setup_context(
    ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: object
) -> None:
    ctx.save_for_backward(*inputs[:11])
    ctx.options = inputs[11:]


def _rnn_backward(
    ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor, grad_h: Tensor
) -> tuple[Tensor | None, ...]:
    saved = ctx.saved_tensors
    grads = iter(keras_rnn_backward(grad_out, grad_h, *saved, *ctx.options))
    result: list[Tensor | None] = [None] * (len(saved) + len(ctx.options))
    for i in _RNN_DIFFERENTIABLE:
        if saved[i] is not None:
            result[i] = next(grads)
    return tuple(result)


keras_rnn.register_autograd(_rnn_backward, setup_context=_rnn_setup_context)

__all__ = [
    "CELLS",
    "NAMESPACE",
    "keras_lstm",
    "keras_lstm_backward",
    "keras_lstm_train",
    "keras_lstm_train_backward",
    "keras_rnn",
    "keras_rnn_backward",
]
