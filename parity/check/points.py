"""Activation points: where a Keras layer's output is found in the PyTorch port.

A port rarely has one torch submodule per Keras layer with the same output: an LSTM returns a
tuple, a Keras Activation layer is a function call inside forward(), a Keras Dense with softmax
is a torch Linear that outputs logits. Each pair therefore has a small table saying, per Keras
layer, which submodule to hook, whether to read its input or its output, which element of a
tuple to take and which activation to apply. Models without a table (built generically from a
file's config, with submodules named after Keras layers) get the default rule: a submodule with
the Keras layer's name, its output, the first element when it returns a tuple.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

#: Activations a point may apply after reading; "config.<attr>" names one from the model config.
_THEN: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax": lambda t: torch.softmax(t, dim=-1),
}
CONFIG_PREFIX = "config."


@dataclass(frozen=True)
class Point:
    """How to read one Keras layer's output from the torch model."""

    #: Submodule path in the torch model ("" = the model itself).
    module: str
    #: "output" (forward hook) or "input" (forward pre-hook: the first positional argument).
    hook: str = "output"
    #: Element of a tuple output to take (LSTM: 0 = the sequence output); None = as is.
    pick: int | None = None
    #: Activation applied afterwards (a key of _THEN or "config.<attribute>").
    then: str | None = None
    #: Default-rule points are dropped, not failed, when their shape differs from Keras'.
    optional: bool = False

    def read(self, model: nn.Module, value: Any) -> Tensor:
        """The Keras layer's output, from what the hook saw."""
        if self.pick is not None or isinstance(value, tuple | list):
            value = value[self.pick or 0]
        if self.then is not None:
            name = self.then
            if name.startswith(CONFIG_PREFIX):
                name = getattr(model.config, name.removeprefix(CONFIG_PREFIX))
            value = _THEN[name](value)
        return value


#: pair name -> (Keras layer name in the reference model, point), in model order.
ACTIVATION_POINTS: dict[str, tuple[tuple[str, Point], ...]] = {
    "embedding_dense": (
        ("embedding", Point("embedding")),
        ("flatten", Point("dense", hook="input")),  # Keras' channels-last Flatten = reshape
        ("dense", Point("dense", then="softmax")),  # Keras Dense outputs post-softmax
    ),
    "deepmoji": (
        ("embedding", Point("embedding")),
        ("activation", Point("embedding", then="tanh")),  # tanh is a call in forward()
        ("bi_lstm_0", Point("bi_lstm_0", pick=0)),  # LSTM returns (output, (h, c))
        ("bi_lstm_1", Point("bi_lstm_1", pick=0)),
        ("concat", Point("attlayer", hook="input")),  # the features the attention pools
        ("attlayer", Point("attlayer", pick=0)),  # (pooled, attention)
        ("softmax", Point("softmax", then="config.output_activation")),  # Linear gives logits
    ),
}


def point_names(
    model: nn.Module,
    pair_name: str | None,
    keras_layer_names: Sequence[str],
    role_names: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Keras layer name in the file -> its name in the pair's table, for every layer with a
    torch counterpart, in model order.

    ``keras_layer_names`` are the file's layers in model order (empty: not known, take the
    whole table); ``role_names`` maps the reference's names of weighted layers to the file's
    (a user's file may say dense_7 where the reference says dense).
    """
    present = list(keras_layer_names)
    roles = dict(role_names or {})
    table = ACTIVATION_POINTS.get(pair_name or "")
    if table is None:
        modules = dict(model.named_modules())
        return {name: name for name in present if name and name in modules}
    found = {}
    for reference_name, _point in table:
        name = roles.get(reference_name, reference_name)
        if not present or name in present:
            found[name] = reference_name
    return found


def resolve_points(pair_name: str | None, names: Mapping[str, str]) -> list[tuple[str, Point]]:
    """(Keras layer name, point) for point_names' result; default-rule points are optional."""
    table = dict(ACTIVATION_POINTS.get(pair_name or "", ()))
    return [(name, table.get(ref, Point(ref, optional=True))) for name, ref in names.items()]


def capture(
    model: nn.Module, points: Sequence[tuple[str, Point]]
) -> tuple[dict[str, Tensor], list[Any]]:
    """Register hooks recording each point's value; returns (values, handles to remove)."""
    values: dict[str, Tensor] = {}
    handles = []
    for name, point in points:
        module = model.get_submodule(point.module)

        def on_output(_m: nn.Module, _args: Any, out: Any, name=name, point=point) -> None:
            values[name] = point.read(model, out).detach()

        def on_input(_m: nn.Module, args: Any, name=name, point=point) -> None:
            values[name] = point.read(model, args[0]).detach()

        if point.hook == "input":
            handles.append(module.register_forward_pre_hook(on_input))
        else:
            handles.append(module.register_forward_hook(on_output))
    return values, handles


def points_from_meta(meta: Mapping[str, Any]) -> list[tuple[str, Point]]:
    """The points a golden file recorded (meta "activation_points": Keras name -> table name)."""
    return resolve_points(meta.get("pair"), meta.get("activation_points", {}))
