"""TimeDistributed: the wrapped layer's converter, applied to every step.

Parity notes:
- The wrapped layer's weights, module and rows are its own converter's, under the wrapper's
  name (weights "time_distributed/kernel", module path "time_distributed.layer").
- Keras 2 and 3 pass the mask through unchanged and give the wrapped layer none; layers that
  make or read masks (recurrent, Embedding, Masking, wrappers, multi-input layers) are refused
  inside it by name (``NOT_DISTRIBUTABLE``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from parity.convert.mapping import Row
from parity.errors import ConversionError
from parity.ports.registry import CONVERTERS as ALL_CONVERTERS
from parity.ports.registry import (
    Config,
    Emitted,
    Example,
    LayerConverter,
    Masks,
    Shapes,
)
from parity.ports.structure import TimeDistributed

TIME_DISTRIBUTED = "TimeDistributed"
#: Wrapped classes whose Keras semantics need masks or several tensors per step.
NOT_DISTRIBUTABLE = (
    "LSTM",
    "GRU",
    "SimpleRNN",
    "Bidirectional",
    "TimeDistributed",
    "Embedding",
    "Masking",
)
#: Wrapped classes that take batch statistics in training (see TimeDistributed).
PER_STEP_STATISTICS = ("BatchNormalization",)


def _inner(config: Config) -> tuple[str, Config, LayerConverter]:
    """(class, config, converter) of the wrapped layer (the registry, filled by the time a
    model is built)."""
    layer = config.get("layer")
    if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
        raise ConversionError("TimeDistributed without a wrapped layer config")
    cls = layer.get("class_name")
    if cls not in ALL_CONVERTERS or cls in NOT_DISTRIBUTABLE or ALL_CONVERTERS[cls].inputs != 1:
        raise ConversionError(f"TimeDistributed({cls}) is not supported")
    return cls, layer["config"], ALL_CONVERTERS[cls]


def inner_class(config: Config) -> str | None:
    """The wrapped class when it can be distributed, else None (for refusal messages)."""
    try:
        return _inner(config)[0]
    except ConversionError:
        return None


def _weights(config: Config) -> tuple[str, ...]:
    _, inner, converter = _inner(config)
    return converter.weights(inner)


def _build(config: Config, shapes: Shapes, activations: dict[str, str]) -> nn.Module:
    cls, inner, converter = _inner(config)
    return TimeDistributed(converter.build(inner, shapes, activations), cls in PER_STEP_STATISTICS)


def _rows(layer: str, path: str, config: Config) -> list[Row]:
    _, inner, converter = _inner(config)
    return converter.rows(layer, f"{path}.layer", inner)


def _call(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    _, inner, converter = _inner(config)
    x = xs[0]
    outs, _ = converter.call(module.layer, {**inner, "_constants": []}, [module.fold(x)], [None])
    return [module.unfold(outs[0], x)], [masks[0]]


def _example(cls: str, **config: Any) -> dict[str, Any]:
    return {"layer": {"class_name": cls, "config": config}}


def _emit(module: nn.Module, config: Config, masked: tuple[bool, ...]) -> Emitted:
    """The wrapped layer's code on the steps folded into the batch; the mask passes through."""
    cls, inner, converter = _inner(config)
    if converter.emit is None:
        raise ConversionError(f"parity port: TimeDistributed({cls}) has no emitter")
    emitted = converter.emit(module.layer, {**inner, "_constants": []}, (False,))
    lines = ["{out0} = {x0}.flatten(0, 1)  # (B * T, ...): the steps as samples"]
    lines += [line.replace("{x0}", "{out0}") for line in emitted.lines]
    lines.append("{out0} = {out0}.unflatten(0, {x0}.shape[:2])")
    own_state = emitted.state or (lambda m: m.state_dict())
    return Emitted(
        emitted.module,
        tuple(lines),
        ("{m0}",),
        emitted.helpers,
        lambda m: own_state(m.layer),
        emitted.sources,
    )


CONVERTERS: dict[str, LayerConverter] = {
    TIME_DISTRIBUTED: LayerConverter(
        _weights,
        _build,
        _rows,
        _call,
        emit=_emit,
        examples=(
            Example(_example("Dense", units=3, activation="tanh"), "sequence"),
            Example(_example("Dense", units=2), "embedded"),
            Example(_example("Dropout", rate=0.3), "sequence"),
        ),
    ),
}
