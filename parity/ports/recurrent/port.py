"""Recurrent layers: SimpleRNN, LSTM, GRU (reset_after True and False), Bidirectional.

Parity notes:
- Masked steps carry the state; a plain RNN outputs its previous output at masked steps, inside
  Bidirectional zeros. ``go_backwards`` returns the sequence in processing (reversed) order, as
  Keras does; Bidirectional flips it back.
- initial_state (Keras 1/2: extra inbound tensors after the input; Keras 3: the keyword)
  starts the recurrence; Bidirectional takes the forward layer's states, then the backward's.
  Plain RNNs' outputs at masked steps before the first real one are the initial h, as Keras'.
- Keras 1 per-gate arrays and cuDNN layouts arrive here already normalised to the Keras 2 layout
  (parity.convert.transforms), so one set of rows serves every version.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from parity.conventions import LSTM_FORGET_BIAS, LSTM_FORGET_GATE_INDEX, LSTM_GATES
from parity.convert.mapping import Row
from parity.errors import ConversionError
from parity.initializers import glorot_uniform_, orthogonal_
from parity.keras.graph import CUDNN_LSTM_BIASES_KEY
from parity.ports.recurrent.gru import GRU
from parity.ports.recurrent.lstm import LSTM
from parity.ports.recurrent.simple_rnn import SimpleRNN
from parity.ports.registry import (
    MASK_PASSED_KEY,
    Config,
    Emitted,
    Example,
    InitRule,
    LayerConverter,
    Masks,
    Shapes,
    declared,
    literal,
    written_by_keras3,
)

RNN_CLASSES = ("SimpleRNN", "LSTM", "GRU")
#: State tensors per direction (an initial_state passes this many per direction).
STATE_COUNT = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}
RNN_WEIGHTS = ("kernel", "recurrent_kernel", "bias")
#: A CuDNNLSTM's weights: its recurrent bias is a trained weight of its own.
CUDNN_LSTM_WEIGHTS = (*RNN_WEIGHTS, "recurrent_bias")
MERGE_MODES = ("concat", "sum", "mul", "ave")
#: Config flags with no torch counterpart here: refused by name.
UNSUPPORTED_FLAGS = ("stateful", "time_major", "unroll_initial_state")
#: Keras' recurrent class defaults where a config omits the key.
RNN_ACTIVATION_DEFAULTS = (("activation", "tanh"), ("recurrent_activation", "sigmoid"))
GATED_ACTIVATIONS = ("activation", "recurrent_activation")
#: What parity check tries when a file with each class fails (parity.ports.recurrent.diagnosis,
#: the gate's in parity.ports.activations, padding side in parity.check.diagnose).
RNN_DIAGNOSES = {
    "SimpleRNN": ("bias_split", "padding_side"),
    "LSTM": ("hard_sigmoid", "bias_split", "padding_side"),
    "GRU": ("hard_sigmoid", "gru_gate_order", "gru_reset_after", "bias_split", "padding_side"),
}
BIDIRECTIONAL_DIRECTIONS = (("forward_", ""), ("backward_", "_reverse"))

_MERGES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "concat": lambda a, b: torch.cat([a, b], dim=-1),
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / 2,
}


def inner_config(config: Config) -> Config:
    inner = config["layer"]
    return inner.get("config", inner)


def _rnn_weights(config: Config) -> tuple[str, ...]:
    if not config.get("use_bias", True):
        return RNN_WEIGHTS[:2]
    return CUDNN_LSTM_WEIGHTS if config.get(CUDNN_LSTM_BIASES_KEY) else RNN_WEIGHTS


def _bidirectional_weights(config: Config) -> tuple[str, ...]:
    inner = _rnn_weights(inner_config(config))
    return tuple(f"{d}{w}" for d, _ in BIDIRECTIONAL_DIRECTIONS for w in inner)


def _rnn_rows(
    layer: str, path: str, cls: str, use_bias: bool, prefix: str, suffix: str, cudnn: bool
) -> list[Row]:
    kernel = "gru_kernel" if cls == "GRU" else "transpose"
    rows: list[Row] = [
        (f"{layer}/{prefix}kernel", f"{path}.weight_ih_l0{suffix}", kernel),
        (f"{layer}/{prefix}recurrent_kernel", f"{path}.weight_hh_l0{suffix}", kernel),
    ]
    if use_bias and cls == "GRU":
        rows.append((f"{layer}/{prefix}bias", f"{path}.bias_l0{suffix}", "gru_bias"))
    elif use_bias:
        # Keras has one bias; torch's second one is a zero buffer (trainable_bias_hh=False),
        # except in a CuDNNLSTM, which trains both.
        recurrent = (f"{layer}/{prefix}recurrent_bias", "identity") if cudnn else (None, "zeros")
        rows += [
            (f"{layer}/{prefix}bias", f"{path}.bias_ih_l0{suffix}", "identity"),
            (recurrent[0], f"{path}.bias_hh_l0{suffix}", recurrent[1]),
        ]
    return rows


def _single_rows(layer: str, path: str, config: Config) -> list[Row]:
    cudnn = bool(config.get(CUDNN_LSTM_BIASES_KEY))
    use_bias = config.get("use_bias", True)
    return _rnn_rows(layer, path, config["_rnn_class"], use_bias, "", "", cudnn)


def _bidirectional_rows(layer: str, path: str, config: Config) -> list[Row]:
    inner = inner_config(config)
    use_bias, cudnn = inner.get("use_bias", True), bool(inner.get(CUDNN_LSTM_BIASES_KEY))
    rows: list[Row] = []
    for prefix, suffix in BIDIRECTIONAL_DIRECTIONS:
        rows += _rnn_rows(layer, path, config["_rnn_class"], use_bias, prefix, suffix, cudnn)
    return rows


def _build_rnn(
    config: Config, shapes: Shapes, acts: dict[str, str], *, bidirectional: bool = False
) -> nn.Module:
    cls = config["_rnn_class"]
    prefix = "forward_" if bidirectional else ""
    fan_in = shapes[f"{prefix}kernel"][0]
    units = shapes[f"{prefix}recurrent_kernel"][0]
    declared(config, "units", units, "the recurrent kernel")
    for flag in UNSUPPORTED_FLAGS:
        if config.get(flag):
            raise ConversionError(f"{cls} with {flag}=True is not supported")
    common = {
        "bias": f"{prefix}bias" in shapes,
        "batch_first": True,
        "bidirectional": bidirectional,
        "activation": acts.get("activation", "tanh"),
        "zero_output_for_mask": bidirectional,
    }
    builders: dict[str, Callable[[], nn.Module]] = {
        "LSTM": lambda: LSTM(
            fan_in,
            units,
            gate_activation=acts["recurrent_activation"],
            trainable_bias_hh=bool(config.get(CUDNN_LSTM_BIASES_KEY)),
            **common,
        ),
        "GRU": lambda: GRU(
            fan_in,
            units,
            gate_activation=acts["recurrent_activation"],
            reset_after=bool(config.get("reset_after", False)),
            **common,
        ),
        "SimpleRNN": lambda: SimpleRNN(fan_in, units, trainable_bias_hh=False, **common),
    }
    return builders[cls]()


def _build_bidirectional(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    if config.get("merge_mode", "concat") not in MERGE_MODES:
        raise ConversionError(f"Bidirectional merge_mode {config.get('merge_mode')!r} unsupported")
    if shapes.get("backward_kernel") != shapes.get("forward_kernel"):
        raise ConversionError("Bidirectional with differently sized directions is not supported")
    merged = {**inner_config(config), "_rnn_class": config["_rnn_class"]}
    return _build_rnn(merged, shapes, acts, bidirectional=True)


def run_rnn(
    module: nn.Module, x: Tensor, mask: Tensor | None, initial: list[Tensor] | None = None
) -> tuple[Tensor, list[Tensor]]:
    """(sequence output, final states as Keras returns them: [h] or [h, c]); ``initial``: the
    initial states as torch takes them, each (directions, B, units)."""
    hx = None if not initial else (initial[0] if len(initial) == 1 else tuple(initial))
    out, state = module(x, hx, mask=mask)
    return out, list(state) if isinstance(state, tuple) else [state]


def _initial_states(config: Config, states: list[Tensor], directions: int) -> list[Tensor] | None:
    """Keras' initial_state tensors (each (B, units); Bidirectional: the forward layer's, then
    the backward layer's) as torch's per-state (directions, B, units); None when none given."""
    if not states:
        return None
    per_direction = STATE_COUNT[config["_rnn_class"]]
    if len(states) != per_direction * directions:
        raise ValueError(
            f"{config['_rnn_class']} is given {len(states)} initial states; it takes "
            f"{per_direction * directions}"
        )
    return [
        torch.stack([states[d * per_direction + i] for d in range(directions)])
        for i in range(per_direction)
    ]


def _run_mask(config: Config, xs: list[Tensor], masks: Masks) -> Tensor | None:
    """The mask the recurrence runs under. Keras 3 hands a layer its input's mask only when the
    call passes one tensor argument: an RNN given initial_state runs unmasked unless the call
    passed mask= (its output still carries the input's mask); Keras 1/2 use the input's."""
    if len(xs) > 1 and written_by_keras3(config) and not config.get(MASK_PASSED_KEY):
        return None
    return masks[0]


def _call_rnn(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    x, mask = xs[0], _run_mask(config, xs, masks)
    if config.get("go_backwards"):  # Keras reverses the input and keeps the output in that order
        x = x.flip(1)
        mask = None if mask is None else mask.flip(1)
    seq, states = run_rnn(module, x, mask, _initial_states(config, xs[1:], 1))
    out = seq if config.get("return_sequences") else states[0][0]
    outputs = [out]
    if config.get("return_state"):
        outputs += [state[0] for state in states]
    out_mask = masks[0] if config.get("return_sequences") else None
    return outputs, [out_mask] + [None] * (len(outputs) - 1)


def _call_bidirectional(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    inner = inner_config(config)
    mask = _run_mask(config, xs, masks)
    seq, states = run_rnn(module, xs[0], mask, _initial_states(config, xs[1:], 2))
    hidden = seq.shape[-1] // 2
    if inner.get("return_sequences"):
        forward, backward = seq[..., :hidden], seq[..., hidden:]
    else:
        forward, backward = states[0][0], states[0][1]
    outputs = [_MERGES[config.get("merge_mode", "concat")](forward, backward)]
    if inner.get("return_state"):  # Keras: forward states, then backward states
        outputs += [state[0] for state in states] + [state[1] for state in states]
    out_mask = masks[0] if inner.get("return_sequences") else None
    return outputs, [out_mask] + [None] * (len(outputs) - 1)


# --- parity port: the code of each call ----------------------------------------------------

#: parity's recurrent modules -> the readable layer keras_layers.py gives the generated code.
EMITTED_CLASSES = {LSTM: "KerasLSTM", GRU: "KerasGRU", SimpleRNN: "KerasSimpleRNN"}


def _parameters_only(module: nn.Module) -> dict[str, Tensor]:
    """The trained weights: a converted LSTM's zero bias_hh buffer has no place in the code."""
    return {name: p.detach() for name, p in module.named_parameters()}


def _rnn_module(module: nn.Module) -> tuple[str, tuple[str, ...]]:
    cls = EMITTED_CLASSES[type(module)]
    options = [f"bidirectional={module.bidirectional}"]
    options.append(f"activation={literal(module.activation)}")
    if not isinstance(module, SimpleRNN):
        options.append(f"gate_activation={literal(module.gate_activation)}")
    if isinstance(module, GRU):
        options.append(f"reset_after={module.reset_after}")
    options.append(f"zero_output_for_mask={module.zero_output_for_mask}")
    if not module.bias:
        options.append("bias=False")
    if any(name.startswith("bias_hh") for name, _ in module.named_parameters()):
        options.append("two_biases=True")  # cuDNN's trained recurrent bias
    return f"{cls}({module.input_size}, {module.hidden_size}, {', '.join(options)})", (cls,)


def _call_code(
    config: Config, masked: tuple[bool, ...], directions: int, backwards: bool
) -> list[str]:
    """The lines up to the layer's call: {out0} = its output, {state} = its final state tuple.
    Initial states ({x1}, ..., each (B, u); Bidirectional: the forward layer's, then the
    backward's) are stacked as (D, B, u)."""
    lines = []
    # Keras 3 hands an RNN given initial_state its input's mask only when the call passes one
    runs_masked = masked[0] and not (
        len(masked) > 1 and written_by_keras3(config) and not config.get(MASK_PASSED_KEY)
    )
    x, mask = "{x0}", "{m0}" if runs_masked else "None"
    if backwards:  # Keras reverses the input and keeps the output reversed
        lines.append("{out0} = {x0}.flip(1)")
        x, mask = "{out0}", "{m0}.flip(1)" if runs_masked else "None"
    state = ""
    if len(masked) > 1:
        per_direction = STATE_COUNT[config["_rnn_class"]]
        if len(masked) - 1 != per_direction * directions:
            raise ConversionError(f"{len(masked) - 1} initial states, {directions} direction(s)")
        stacked = []
        for i in range(per_direction):
            given = [f"{{x{1 + d * per_direction + i}}}" for d in range(directions)]
            stacked.append(f"torch.stack([{', '.join(given)}])")
        state = f", initial_state=({', '.join(stacked)},)"
    lines.append(f"{{out0}}, {{state}} = {{self}}({x}, mask={mask}{state})")
    return lines


def _emit_rnn(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    constructor, helpers = _rnn_module(module)
    states = STATE_COUNT[config["_rnn_class"]]
    returned = config.get("return_state")
    lines = _call_code(config, masked, 1, bool(config.get("go_backwards")))
    if returned:  # h (and c) of the one direction
        outs = ", ".join(f"{{out{1 + i}}}" for i in range(states))
        lines.append(f"{outs} = " + ", ".join(f"{{state}}[{i}][0]" for i in range(states)))
    if not config.get("return_sequences"):  # the last output: h after the last real step
        lines.append("{out0} = {state}[0][0]")
    mask = "{m0}" if config.get("return_sequences") else "None"
    extra = ("None",) * (states if returned else 0)
    return Emitted(constructor, tuple(lines), (mask, *extra), helpers, _parameters_only)


_MERGE_CODE = {
    "concat": "torch.cat([{out0}_f, {out0}_b], dim=-1)",
    "sum": "{out0}_f + {out0}_b",
    "mul": "{out0}_f * {out0}_b",
    "ave": "({out0}_f + {out0}_b) / 2",
}


def _emit_bidirectional(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    inner = inner_config(config)
    if inner.get("go_backwards"):
        raise ConversionError("parity port: Bidirectional(go_backwards=True) has no emitter")
    constructor, helpers = _rnn_module(module)
    states = STATE_COUNT[config["_rnn_class"]]
    merge = config.get("merge_mode", "concat")
    sequences, returned = inner.get("return_sequences"), inner.get("return_state")
    lines = _call_code(config, masked, 2, False)
    if sequences and merge != "concat":  # concat is the module's own output: [fwd, bwd]
        lines.append(f"{{out0}}_f, {{out0}}_b = {{out0}}.split({module.hidden_size}, dim=-1)")
        lines.append(f"{{out0}} = {_MERGE_CODE[merge]}")
    elif not sequences:  # each direction's h after its last real step
        lines.append("{out0}_f, {out0}_b = {state}[0][0], {state}[0][1]")
        lines.append(f"{{out0}} = {_MERGE_CODE[merge]}")
    extra: tuple[str, ...] = ()
    if returned:  # Keras returns the forward states, then the backward states
        outs = [f"{{out{1 + i}}}" for i in range(2 * states)]
        parts = [f"{{state}}[{i}][{d}]" for d in range(2) for i in range(states)]
        lines.append(f"{', '.join(outs)} = {', '.join(parts)}")
        extra = ("None",) * len(outs)
    mask = "{m0}" if sequences else "None"
    return Emitted(constructor, tuple(lines), (mask, *extra), helpers, _parameters_only)


CONVERTERS: dict[str, LayerConverter] = {
    **{
        cls: LayerConverter(
            _rnn_weights,
            _build_rnn,
            _single_rows,
            _call_rnn,
            # SimpleRNN has no gates, so no recurrent_activation
            activations=("activation",) if cls == "SimpleRNN" else GATED_ACTIVATIONS,
            activation_defaults=RNN_ACTIVATION_DEFAULTS,
            inputs=1 + STATE_COUNT[cls],  # the input, then initial_state
            versioned=True,
            diagnoses=RNN_DIAGNOSES[cls],
            emit=_emit_rnn,
            examples=(
                Example({"units": 3, "return_sequences": True}, "embedded"),
                Example({"units": 3, "go_backwards": True}, "embedded"),
            ),
        )
        for cls in RNN_CLASSES
    },
    "Bidirectional": LayerConverter(
        _bidirectional_weights,
        _build_bidirectional,
        _bidirectional_rows,
        _call_bidirectional,
        activations=GATED_ACTIVATIONS,
        activation_defaults=RNN_ACTIVATION_DEFAULTS,
        inputs=1 + 2 * max(STATE_COUNT.values()),
        versioned=True,
        diagnoses=("hard_sigmoid", "padding_side"),
        examples=tuple(
            Example(
                {"layer": {"class_name": cls, "config": {"units": 3}}, "merge_mode": m}, "embedded"
            )
            for cls, m in (("LSTM", "concat"), ("GRU", "sum"), ("SimpleRNN", "ave"))
        ),
        emit=_emit_bidirectional,
    ),
}


# --- Keras' default initialization of these modules (parity.init.keras_init_) ---------------


def _recurrent_init(forget_bias: bool) -> InitRule:
    """Kernel glorot_uniform, recurrent orthogonal, biases zero (LSTM: forget block 1), for every
    layer and direction of a module whose parameters are named as nn.RNN/GRU/LSTM's.

    Covers torch's modules and parity's LSTM, SimpleRNN and GRU; parity's GRU keeps Keras' bias
    in one ``bias_l0`` ((2, 3u) with reset_after, (3u,) without): zero like every other bias.
    Gate order does not matter here: glorot and orthogonal are drawn over the whole matrix, and a
    permutation of gate blocks keeps both distributions.
    """

    @torch.no_grad()
    def init(m: nn.Module) -> None:
        for name, p in m.named_parameters(recurse=False):
            if name.startswith("weight_ih"):
                glorot_uniform_(p)  # torch (k*u, in) = Keras (in, k*u) transposed: same fans
            elif name.startswith("weight_hh"):
                orthogonal_(p)
            elif name.startswith("bias"):
                p.zero_()
                # Keras has one bias; torch adds bias_ih and bias_hh (a zero buffer in a
                # converted model), so only one carries the 1.
                if forget_bias and name.startswith("bias_ih"):
                    block = p.shape[-1] // LSTM_GATES
                    start = LSTM_FORGET_GATE_INDEX * block
                    p[..., start : start + block] = LSTM_FORGET_BIAS
            else:  # a new parameter must get a deliberate rule, not torch's default
                raise TypeError(
                    f"keras_init_: no Keras initialization rule for {type(m).__name__}.{name}"
                )

    return init


#: Module type -> its Keras default initialization, for parity's layers and torch's own.
INIT_RULES: dict[type, InitRule] = {
    nn.RNN: _recurrent_init(forget_bias=False),
    nn.GRU: _recurrent_init(forget_bias=False),
    nn.LSTM: _recurrent_init(forget_bias=True),
    SimpleRNN: _recurrent_init(forget_bias=False),
    GRU: _recurrent_init(forget_bias=False),
    LSTM: _recurrent_init(forget_bias=True),
}
