"""Activation points: where a Keras layer's output is found in the PyTorch port.

A port rarely has one torch submodule per Keras layer with the same output: an LSTM returns a
tuple, a Keras Activation layer is a function call inside forward(), a Keras Dense with softmax
is a torch Linear that outputs logits. Each pair therefore has a small table saying, per Keras
layer, which submodule to hook, whether to read its input or its output, which element of a
tuple to take and which activation to apply: each architecture's ``check_points``. Models built
generically from a file's config (submodules named after Keras layers) get the default rule: a
submodule with the Keras layer's name, its output, the first element when it returns a tuple.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from parity.arch import PAIRS, PairArch, arch_of, get_arch
from parity.arch.base import Point
from parity.arch.generic import module_name
from parity.ports.activations import keras_activation

#: A point's ``then`` names an activation of parity.ports.activations; "config.<attr>" names
#: one from the model config.
CONFIG_PREFIX = "config."


def read_point(model: nn.Module, point: Point, value: Any) -> Tensor:
    """The Keras layer's output, from what the point's hook saw."""
    if point.pick is not None or isinstance(value, tuple | list):
        value = value[point.pick or 0]
    if point.then is not None:
        name = point.then
        if name.startswith(CONFIG_PREFIX):
            name = getattr(model.config, name.removeprefix(CONFIG_PREFIX))
        value = keras_activation(name)(value)
    return value


def point_names(
    model: nn.Module,
    keras_layer_names: Sequence[str],
    role_names: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Keras layer name in the file -> its name in the architecture's table, for every layer
    with a torch counterpart, in model order.

    ``keras_layer_names`` are the file's layers in model order (empty: not known; a pair then
    takes its whole table, a generic model none); ``role_names`` maps the reference's names of
    weighted layers to the file's (a user's file may say dense_7 where the reference says dense).
    """
    arch = arch_of(model)
    present = list(keras_layer_names)
    roles = dict(role_names or {})
    found = {}
    for reference_name, _point in arch.check_points(model):
        name = roles.get(reference_name, reference_name)
        if (not present and isinstance(arch, PairArch)) or name in present:
            found[name] = reference_name
    return found


def resolve_points(arch_name: str | None, names: Mapping[str, str]) -> list[tuple[str, Point]]:
    """(Keras layer name, point) for point_names' result. A generic model's points are its
    submodules named after the Keras layers, optional (layouts may differ)."""
    table = dict(get_arch(arch_name).check_points()) if arch_name in PAIRS else {}
    return [
        (name, table.get(ref, Point(module_name(ref), optional=True)))
        for name, ref in names.items()
    ]


def capture(
    model: nn.Module, points: Sequence[tuple[str, Point]]
) -> tuple[dict[str, Tensor], list[Any]]:
    """Register hooks recording each point's value; returns (values, handles to remove)."""
    values: dict[str, Tensor] = {}
    handles = []
    for name, point in points:
        module = model.get_submodule(point.module)

        def on_output(_m: nn.Module, _args: Any, out: Any, name=name, point=point) -> None:
            values[name] = read_point(model, point, out).detach()

        def on_input(_m: nn.Module, args: Any, name=name, point=point) -> None:
            values[name] = read_point(model, point, args[0]).detach()

        if point.hook == "input":
            handles.append(module.register_forward_pre_hook(on_input))
        else:
            handles.append(module.register_forward_hook(on_output))
    return values, handles


def points_from_meta(meta: Mapping[str, Any]) -> list[tuple[str, Point]]:
    """The points a golden file recorded (meta "activation_points": Keras name -> table name)."""
    return resolve_points(meta.get("pair"), meta.get("activation_points", {}))
