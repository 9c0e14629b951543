"""A parity plug-in as a user writes one: their own Keras layer, its torch module, the converter.

``parity --plugin tests.plugin_example convert|check FILE`` imports this module, which
registers the layer; tests/test_plugins.py uses it from Python and from the command line.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn

from parity.plugins import Emitted, LayerConverter, call_keep_mask, register_layer, simple_rows

CLASS = "ScaledDense"
PACKAGE = "my_project"


class ScaledDense(nn.Module):
    """y = (x @ kernel) * scale: the user's layer, in torch."""

    def __init__(self, fan_in: int, units: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(units, fan_in))
        self.scale = nn.Parameter(torch.empty(units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weight.T) * self.scale


def _emit(module: nn.Module, config: dict[str, Any], masked: tuple[bool, ...]) -> Emitted:
    """parity port's code for the layer: the class itself goes into keras_layers.py."""
    units, fan_in = module.weight.shape
    return Emitted(
        f"ScaledDense({fan_in}, {units})",
        ("{out0} = {self}({x0})",),
        ("{m0}",),
        helpers=("ScaledDense",),
        sources=(inspect.getsource(ScaledDense),),
    )


def _weights(config: dict[str, Any]) -> tuple[str, ...]:
    return ("kernel", "scale")


def _init(module: nn.Module) -> None:
    nn.init.xavier_uniform_(module.weight)  # Keras' glorot_uniform, same fans
    nn.init.ones_(module.scale)


CONVERTER = LayerConverter(
    weights=_weights,
    build=lambda config, shapes, acts: ScaledDense(*shapes["kernel"]),
    rows=simple_rows(_weights, ("kernel", "weight", "transpose"), ("scale", "scale", "identity")),
    call=call_keep_mask,
    emit=_emit,
)


@functools.cache
def keras_class() -> type:
    """The Keras 3 class, defined on first use: converting needs no Keras, live checks do."""
    import keras

    @keras.saving.register_keras_serializable(package=PACKAGE, name=CLASS)
    class ScaledDense(keras.layers.Layer):  # the class name the file records
        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(
                name="kernel", shape=(input_shape[-1], self.units), initializer="glorot_uniform"
            )
            self.scale = self.add_weight(name="scale", shape=(self.units,), initializer="ones")

        def call(self, x: Any) -> Any:
            return keras.ops.matmul(x, self.kernel) * self.scale

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units}

    return ScaledDense


def keras_objects() -> dict[str, type]:
    return {CLASS: keras_class()}


def register() -> None:
    register_layer(CLASS, CONVERTER, keras_objects=keras_objects, init_rules={ScaledDense: _init})


register()
