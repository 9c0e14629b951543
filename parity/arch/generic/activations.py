"""Activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax. All pass the Keras mask on.

Parity notes:
- LeakyReLU's slope is ``negative_slope`` in Keras 3 and ``alpha`` in Keras 2; both default 0.3
  (the layer's default, not the 0.2 of the "leaky_relu" activation).
- Softmax given a Keras mask is refused at call: Keras applies the mask to the logits there
  (-1e9 where masked, by a rule that differs between Keras 2 and 3), which is not reproduced.
"""

from __future__ import annotations

from torch import Tensor, nn

from parity.arch.generic.converter import (
    Config,
    Example,
    LayerConverter,
    Masks,
    Shapes,
    call_keep_mask,
    no_rows,
    no_weights,
    simple_rows,
)
from parity.conventions import KERAS_LEAKY_RELU_LAYER_SLOPE
from parity.errors import ConversionError
from parity.layers.activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax


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
