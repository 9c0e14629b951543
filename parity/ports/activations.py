"""The one table of activations: every fact any part of keras-parity needs about each name.

Keras names its activations, and several differ from torch's defaults (hard_sigmoid per Keras
version, leaky_relu's slope, gelu's approximation), so every name maps to one explicit function
here and an unknown name fails loudly. Keras 2 and Keras 3 disagree on ``hard_sigmoid`` (slope
0.2 vs 1/6), so the variant is always named explicitly: a model converted from a Keras 2 file
must keep computing the 0.2 version.

Readers of ``ACTIVATIONS``: the layers (Dense, Conv1D, Activation, the recurrent layers), the
LSTM's fused Python, C++ and Triton loops (``Fused``: affine split, tails, kernel codes), the
converter's gate resolution (``gate``, ``hard_sigmoid``), parity check's diagnosis and activation
points. None of them keeps a table of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity.conventions import (
    HARD_SIGMOID_KERAS2_OFFSET,
    HARD_SIGMOID_KERAS2_SLOPE,
    HARD_SIGMOID_KERAS3_OFFSET,
    HARD_SIGMOID_KERAS3_SLOPE,
    HARD_SIGMOID_OPTION,
    HARD_SIGMOID_VARIANTS,
    KERAS3_LEAKY_RELU_SLOPE,
    KERAS_LEAKY_RELU_LAYER_SLOPE,
)
from parity.errors import ConversionError
from parity.initializers import zeros_
from parity.ports.diagnosis import Alternative, Checked, Variant, copy_model
from parity.ports.registry import (
    Config,
    Emitted,
    Example,
    InitRule,
    LayerConverter,
    Masks,
    Shapes,
    call_keep_mask,
    no_rows,
    no_weights,
    simple_rows,
)

ActivationFn = Callable[[Tensor], Tensor]


# --- the functions ----------------------------------------------------------------------------


def _hard_sigmoid_keras2(x: Tensor) -> Tensor:
    # Multiply, add, clip as separate ops, like tf_keras backend.hard_sigmoid and Theano.
    return torch.clamp(x * HARD_SIGMOID_KERAS2_SLOPE + HARD_SIGMOID_KERAS2_OFFSET, 0.0, 1.0)


def _hard_sigmoid_keras3(x: Tensor) -> Tensor:
    # relu6(x + 3) / 6, as Keras 3 writes it; forward bit-equal to F.hardsigmoid, whose float64
    # backward uses a float32 1/6 (off by 5e-9) where this one's gradient is exact.
    return F.relu6(x + 3.0) / 6.0


def _linear(x: Tensor) -> Tensor:
    return x


def _softmax(x: Tensor) -> Tensor:
    return torch.softmax(x, dim=-1)  # Keras' softmax axis default is -1


def _log_softmax(x: Tensor) -> Tensor:
    return torch.log_softmax(x, dim=-1)


def _leaky_relu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, KERAS3_LEAKY_RELU_SLOPE)


def _hard_silu_keras3(x: Tensor) -> Tensor:
    return x * _hard_sigmoid_keras3(x)


def _clamp01(x: Tensor) -> Tensor:
    return x.clamp(0.0, 1.0)


def _clamp01_(x: Tensor) -> Tensor:
    return x.clamp_(0.0, 1.0)


def _identity_(x: Tensor) -> Tensor:
    return x


# --- what the fused LSTM loops need -----------------------------------------------------------


class CppTail(IntEnum):
    """Elementwise tails of the C++ loop: backends/csrc/lstm_cpu.cpp's ``Tail`` enum, same
    numbers."""

    CLAMP01 = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    IDENTITY = 4


class TritonTail(IntEnum):
    """Elementwise tails of the Triton kernels: the ``KIND`` of backends/triton.py's ``_tail``."""

    IDENTITY = 0
    CLAMP01 = 1
    SIGMOID = 2
    TANH = 3
    RELU = 4


@dataclass(frozen=True)
class Fused:
    """An activation as the fused LSTM loops compute it: act(x) == tail(scale * x + offset).

    The affine part of a gate is folded into the weights that produce x (backends.prepare.fold),
    leaving one clamp per step for a hard sigmoid. Mathematically exact; in floating point it
    rounds differently (~1 ulp of x), well inside the float32 tolerance. The cell activation's
    inputs are not folded, so there only activations without an affine part run fused.
    """

    scale: float
    offset: float
    tail: ActivationFn  # out of place: the autograd loop
    tail_: ActivationFn  # in place: the inference loop
    cpp: CppTail
    triton: TritonTail

    @property
    def affine(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0


def _plain(fn: ActivationFn, fn_: ActivationFn, cpp: CppTail, triton: TritonTail) -> Fused:
    """The fused form of an activation without an affine part: its own tail."""
    return Fused(1.0, 0.0, fn, fn_, cpp, triton)


@dataclass(frozen=True)
class ActivationSpec:
    """One activation name: its function and what each consumer needs to know about it."""

    fn: ActivationFn
    #: Accepted as a recurrent layer's ``gate_activation`` or ``activation``.
    recurrent: bool = False
    #: What a Keras recurrent layer's ``recurrent_activation`` may convert to: a sigmoid. The
    #: converter accepts these (and the bare "hard_sigmoid"); parity check's diagnosis tries each.
    gate: bool = False
    #: The ``hard_sigmoid=`` variant ("keras2" / "keras3") this name is, if it is one.
    hard_sigmoid: str | None = None
    #: How the LSTM's fused loops compute it; None: the reference loop runs.
    fused: Fused | None = None


#: Every activation keras-parity computes, by the name the layers and converted configs use.
#: "hard_sigmoid" has no row on purpose: the file's Keras version decides the variant
#: (parity.arch.gates resolves it to one of the two names below). Order: the gates appear in
#: the order parity check's diagnosis tries them.
ACTIVATIONS: dict[str, ActivationSpec] = {
    "linear": ActivationSpec(
        _linear,
        recurrent=True,
        fused=_plain(_linear, _identity_, CppTail.IDENTITY, TritonTail.IDENTITY),
    ),
    "relu": ActivationSpec(
        torch.relu,
        recurrent=True,
        fused=_plain(torch.relu, torch.relu_, CppTail.RELU, TritonTail.RELU),
    ),
    "hard_sigmoid_keras2": ActivationSpec(
        _hard_sigmoid_keras2,
        recurrent=True,
        gate=True,
        hard_sigmoid="keras2",
        fused=Fused(
            HARD_SIGMOID_KERAS2_SLOPE,
            HARD_SIGMOID_KERAS2_OFFSET,
            _clamp01,
            _clamp01_,
            CppTail.CLAMP01,
            TritonTail.CLAMP01,
        ),
    ),
    "hard_sigmoid_keras3": ActivationSpec(
        _hard_sigmoid_keras3,
        recurrent=True,
        gate=True,
        hard_sigmoid="keras3",
        # relu6(x + 3) / 6 == clamp(x / 6 + 1/2, 0, 1)
        fused=Fused(
            HARD_SIGMOID_KERAS3_SLOPE,
            HARD_SIGMOID_KERAS3_OFFSET,
            _clamp01,
            _clamp01_,
            CppTail.CLAMP01,
            TritonTail.CLAMP01,
        ),
    ),
    "sigmoid": ActivationSpec(
        torch.sigmoid,
        recurrent=True,
        gate=True,
        fused=_plain(torch.sigmoid, torch.sigmoid_, CppTail.SIGMOID, TritonTail.SIGMOID),
    ),
    "tanh": ActivationSpec(
        torch.tanh,
        recurrent=True,
        fused=_plain(torch.tanh, torch.tanh_, CppTail.TANH, TritonTail.TANH),
    ),
    "softmax": ActivationSpec(_softmax),
    "log_softmax": ActivationSpec(_log_softmax),
    "softplus": ActivationSpec(F.softplus),
    "softsign": ActivationSpec(F.softsign),
    "elu": ActivationSpec(F.elu),  # alpha 1.0 in both
    "selu": ActivationSpec(F.selu),  # same constants as Keras
    "exponential": ActivationSpec(torch.exp),
    "gelu": ActivationSpec(F.gelu),  # Keras' gelu defaults to approximate=False, as torch's
    "swish": ActivationSpec(F.silu),
    "silu": ActivationSpec(F.silu),
    "relu6": ActivationSpec(F.relu6),
    "leaky_relu": ActivationSpec(_leaky_relu),
    "mish": ActivationSpec(F.mish),
    "hard_silu": ActivationSpec(_hard_silu_keras3),
    "hard_swish": ActivationSpec(_hard_silu_keras3),
}

#: The names a Keras ``activation=`` may take once "hard_sigmoid" is resolved (Dense, Conv1D,
#: Activation).
KERAS_ACTIVATIONS: tuple[str, ...] = tuple(ACTIVATIONS)
#: The names the recurrent layers accept as ``gate_activation`` or ``activation``.
RECURRENT_ACTIVATIONS: tuple[str, ...] = tuple(n for n, a in ACTIVATIONS.items() if a.recurrent)
#: The gates a Keras file's ``recurrent_activation`` may mean, in the order diagnosis tries them.
GATES: tuple[str, ...] = tuple(n for n, a in ACTIVATIONS.items() if a.gate)
#: hard_sigmoid variant ("keras2" / "keras3") -> its activation name.
HARD_SIGMOIDS: dict[str, str] = {
    a.hard_sigmoid: n for n, a in ACTIVATIONS.items() if a.hard_sigmoid is not None
}
assert tuple(HARD_SIGMOIDS) == HARD_SIGMOID_VARIANTS


def hard_sigmoid_name(variant: str) -> str:
    """The activation name of a hard_sigmoid variant ("keras2" -> "hard_sigmoid_keras2")."""
    try:
        return HARD_SIGMOIDS[variant]
    except KeyError:
        raise ValueError(
            f"unknown hard_sigmoid variant {variant!r}; expected one of {sorted(HARD_SIGMOIDS)}"
        ) from None


def hard_sigmoid(x: Tensor, variant: str) -> Tensor:
    """Keras' hard sigmoid; ``variant`` is "keras2" (slope 0.2) or "keras3" (slope 1/6)."""
    return ACTIVATIONS[hard_sigmoid_name(variant)].fn(x)


def get_activation(name: str) -> ActivationFn:
    """A recurrent layer's activation by name; unknown names fail loudly instead of silently
    defaulting."""
    spec = ACTIVATIONS.get(name)
    if spec is None or not spec.recurrent:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(RECURRENT_ACTIVATIONS)}"
        )
    return spec.fn


def keras_activation(name: str) -> ActivationFn:
    """The function a resolved Keras activation name computes; unknown names raise ValueError."""
    try:
        return ACTIVATIONS[name].fn
    except KeyError:
        raise ValueError(
            f"unsupported Keras activation {name!r}; supported: {', '.join(KERAS_ACTIVATIONS)}"
        ) from None


class ActivationSlot:
    """A layer attribute that names an activation (``layer.activation = "relu"``).

    Setting the name validates it and sets the function the forward calls (attribute
    ``fn_attr``), so name and function never disagree: parity check's diagnosis swaps a layer's
    activation by assigning a name. Only setting goes through here (no ``__get__``): reading
    the name or the function is a plain instance-dict read, as fast as before.
    """

    def __init__(self, fn_attr: str, *, recurrent: bool = False, gate: bool = False) -> None:
        self.fn_attr = fn_attr
        #: Names limited to RECURRENT_ACTIVATIONS (else any Keras activation).
        self.recurrent = recurrent
        #: A recurrent gate: diagnosis tries every GATES name here, elsewhere only the other
        #: hard sigmoid variant.
        self.gate = gate
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __set__(self, obj: object, name: str) -> None:
        lookup = get_activation if self.recurrent else keras_activation
        obj.__dict__[self.fn_attr] = lookup(name)
        obj.__dict__[self.name] = name


def activation_slots(module: object) -> dict[str, ActivationSlot]:
    """The ActivationSlots of ``module``'s class, by attribute name."""
    return {
        name: slot
        for cls in reversed(type(module).__mro__)
        for name, slot in vars(cls).items()
        if isinstance(slot, ActivationSlot)
    }


# ------------------------------------------------------------------------------------------------
# Keras' parametrised activation layers in torch: ReLU, LeakyReLU, PReLU, ELU, Softmax.
#
# Their parameter-free defaults are the named activations of parity.ports.activations; these
# modules add the parameters (slopes, ceilings, axes) those names fix.

#: Keras ReLU: max_value 6 without threshold uses relu6 (the same values as clip(relu, 0, 6)).
RELU6_MAX = 6.0


class ReLU(nn.Module):
    """keras.layers.ReLU(max_value, negative_slope, threshold), as keras.activations.relu.

    Parity notes: x for x > threshold else 0, clipped to [0, max_value], minus
    negative_slope * relu(threshold - x); plain leaky_relu when only a slope is given.
    """

    def __init__(
        self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0
    ) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x: Tensor) -> Tensor:
        slope, threshold = self.negative_slope, self.threshold
        if slope != 0.0 and self.max_value is None and threshold == 0.0:
            return F.leaky_relu(x, slope)
        negative = F.relu(threshold - x) if slope != 0.0 else None
        out = torch.where(x > threshold, x, torch.zeros_like(x)) if threshold != 0.0 else F.relu(x)
        if self.max_value is not None:
            out = out.clamp(0.0, self.max_value)
        return out - slope * negative if negative is not None else out

    def extra_repr(self) -> str:
        return (
            f"max_value={self.max_value}, negative_slope={self.negative_slope}, "
            f"threshold={self.threshold}"
        )


class LeakyReLU(nn.LeakyReLU):
    """keras.layers.LeakyReLU: torch's, with the slope the Keras config names."""


class ELU(nn.Module):
    """keras.layers.ELU(alpha): x for x > 0, else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Softmax(nn.Module):
    """keras.layers.Softmax(axis): softmax over one axis or, for several, exp(x - logsumexp)."""

    def __init__(self, axis: int | tuple[int, ...] = -1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.axis, tuple):
            return torch.exp(x - torch.logsumexp(x, dim=self.axis, keepdim=True))
        return torch.softmax(x, dim=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class PReLU(nn.Module):
    """keras.layers.PReLU: relu(x) - alpha * relu(-x), ``alpha`` shaped as Keras' (the input's
    non-batch shape with size 1 on shared axes), so it maps without a transform."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(shape))  # Keras' alpha_initializer "zeros"

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x) - self.alpha * F.relu(-x)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.alpha.shape)}"


# ------------------------------------------------------------------------------------------------
# Activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax. All pass the Keras mask on.
#
# Parity notes:
# - LeakyReLU's slope is ``negative_slope`` in Keras 3 and ``alpha`` in Keras 2; both default 0.3
#   (the layer's default, not the 0.2 of the "leaky_relu" activation).
# - Softmax given a Keras mask is refused at call: Keras applies the mask to the logits there
#   (-1e9 where masked, by a rule that differs between Keras 2 and 3), which is not reproduced.


def _relu(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    max_value = config.get("max_value")
    return ReLU(
        None if max_value is None else float(max_value),
        float(config.get("negative_slope") or 0.0),
        float(config.get("threshold") or 0.0),
    )


def _leaky_relu(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    slope = config.get("negative_slope", config.get("alpha", KERAS_LEAKY_RELU_LAYER_SLOPE))
    return LeakyReLU(float(slope))


def _softmax(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    axis = config.get("axis", -1)
    return Softmax(tuple(axis) if isinstance(axis, list | tuple) else int(axis))


def _call_softmax(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    if masks[0] is not None:
        raise ConversionError("a Softmax layer given a Keras mask is not supported")
    return [module(xs[0])], [None]


def _prelu_weights(config: Config) -> tuple[str, ...]:
    return ("alpha",)


def _emit_relu(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    if module.negative_slope != 0.0 or module.threshold != 0.0:
        raise ConversionError("parity port: ReLU with negative_slope or threshold has no emitter")
    if module.max_value is None:
        return Emitted(None, ("{out0} = torch.relu({x0})",), ("{m0}",))
    code = f"{{x0}}.clamp(0.0, {float(module.max_value)!r})"
    return Emitted(None, (f"{{out0}} = {code}",), ("{m0}",))


CONVERTERS: dict[str, LayerConverter] = {
    "ReLU": LayerConverter(
        no_weights,
        _relu,
        no_rows,
        call_keep_mask,
        examples=(
            Example({}, "sequence"),
            Example({"max_value": 0.8, "threshold": 0.1, "negative_slope": 0.3}, "sequence"),
            Example({"max_value": 6.0}, "embedded"),
        ),
        emit=_emit_relu,
    ),
    "LeakyReLU": LayerConverter(
        no_weights,
        _leaky_relu,
        no_rows,
        call_keep_mask,
        examples=(Example({}, "sequence"), Example({"negative_slope": 0.1}, "embedded")),
    ),
    "ELU": LayerConverter(
        no_weights,
        lambda c, s, a: ELU(float(c.get("alpha", 1.0))),
        no_rows,
        call_keep_mask,
        examples=(Example({"alpha": 0.7}, "sequence"),),
    ),
    "Softmax": LayerConverter(
        no_weights,
        _softmax,
        no_rows,
        _call_softmax,
        examples=(Example({"axis": 1}, "sequence"), Example({"axis": -1}, "vector")),
    ),
    "PReLU": LayerConverter(
        _prelu_weights,
        lambda c, s, a: PReLU(s["alpha"]),
        simple_rows(_prelu_weights, ("alpha", "alpha", "identity")),
        call_keep_mask,
        examples=(Example({}, "sequence"), Example({"shared_axes": [1]}, "embedded")),
    ),
}


# --- Keras' default initialization of these modules (parity.init.keras_init_) ---------------

#: Module type -> its Keras default initialization: PReLU's alpha_initializer is "zeros".
INIT_RULES: dict[type, InitRule] = {PReLU: lambda m: zeros_(m.alpha)}

# --- diagnosis: the conventions a conversion of these classes can get wrong (parity check) -----


def _gate_variants(subject: Checked, ids: np.ndarray, device: str) -> list[Variant]:
    """Every layer's gate (and hard-sigmoid activation) swapped to another choice at once: a
    conversion decides the hard sigmoid once per file. Layers are found by their activation
    slots (parity.ports.activations.ActivationSlot); assigning a name swaps the function."""
    hard_sigmoids = tuple(HARD_SIGMOIDS.values())
    current = {
        (path, attr, slot.gate): getattr(module, attr)
        for path, module in subject.model.named_modules()
        for attr, slot in activation_slots(module).items()
        if getattr(module, attr, None) in (GATES if slot.gate else hard_sigmoids)
    }
    if not current:
        return []
    variants = []
    for choice in GATES:
        changes = {
            key: name
            for key, name in current.items()
            if name != choice and (key[2] or choice in hard_sigmoids)
        }
        if not changes:
            continue
        model = copy_model(subject.model)
        for path, attr, _gate in changes:
            setattr(model.get_submodule(path), attr, choice)
        olds = sorted(set(changes.values()))
        paths = sorted({path for path, _, _ in changes})
        variant = ACTIVATIONS[choice].hard_sigmoid
        hint = f"{HARD_SIGMOID_OPTION} {variant}" if variant else ""
        label = f"{choice} instead of {', '.join(olds)} in {', '.join(paths)}"
        variants.append(Variant(label + (f" (rerun with {hint})" if hint else ""), model))
    return variants


DIAGNOSES: dict[str, Alternative] = {
    "hard_sigmoid": Alternative("gate activation: the file computes {label}", _gate_variants),
}
