"""The dtype a converted model computes in: the file's own, decided once per conversion.

Keras records it per layer (a dtype policy: "float32", "float64", "mixed_float16", as a string
or a DTypePolicy / Policy object) and in the stored arrays themselves. A float64 model stays
float64 (Keras' torch backend keeps it too). Half-precision and mixed policies compute in a
precision parity does not reproduce: they are refused by name unless the caller chooses a
dtype, never silently run in float32.
"""

from __future__ import annotations

from typing import Any

import torch

from parity.errors import ConversionError
from parity.keras.graph import INPUT_LAYER, KerasGraph
from parity.keras.read import KerasFile

#: Keras float policy names, and stored float array dtypes, -> the torch dtype that computes
#: exactly as Keras does. Any other policy naming a float (float16, bfloat16, mixed_float16,
#: quantized ones such as int8_from_float32) computes in a precision the ports do not reproduce.
EXACT: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_DTYPE = torch.float32


def policy_name(value: Any) -> str | None:
    """A layer config's ``dtype`` as a policy name: "float64" as is, or a Keras 3
    DTypePolicy / tf.keras Policy object's ``config.name``; None when absent or unreadable."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        config = value.get("config")
        if isinstance(config, dict) and isinstance(config.get("name"), str):
            return config["name"]
    return None


def _policies(graph: KerasGraph | None) -> dict[str, list[str]]:
    """Float policy name -> the layers that have it (InputLayer's dtype is the input's)."""
    found: dict[str, list[str]] = {}
    for node in graph.nodes if graph is not None else ():
        if node.class_name == INPUT_LAYER:
            continue
        name = policy_name(node.config.get("dtype"))
        if name is not None and "float" in name:  # int/bool/string layers compute no floats
            found.setdefault(name, []).append(node.name)
    return found


def _array_kinds(kfile: KerasFile) -> dict[str, list[str]]:
    """Stored float dtype -> the layers holding such weights."""
    found: dict[str, list[str]] = {}
    for layer in kfile.layers:
        for kind in {w.array.dtype for w in layer.weights}:
            if kind.kind == "f":
                found.setdefault(kind.name, []).append(layer.name)
    return found


def _named(layers: list[str]) -> str:
    shown = ", ".join(repr(n) for n in layers[:3])
    return shown + (f" and {len(layers) - 3} more" if len(layers) > 3 else "")


def file_dtype(kfile: KerasFile, graph: KerasGraph | None) -> torch.dtype:
    """The torch dtype that computes what ``kfile``'s Keras model computes; ConversionError
    naming the layers when that is a precision parity does not reproduce or several."""
    policies = _policies(graph)
    arrays = _array_kinds(kfile)
    refuse = [
        f"dtype policy {p!r} (layers {_named(layers)})"
        for p, layers in policies.items()
        if p not in EXACT
    ]
    refuse += [
        f"{kind} weights (layers {_named(layers)})"
        for kind, layers in arrays.items()
        if kind not in EXACT
    ]
    if refuse:
        raise ConversionError(
            f"{kfile.path}: the model computes in half, mixed or quantized precision "
            f"({'; '.join(refuse)}), which parity does not reproduce; pass dtype= "
            "(torch.float32 or torch.float64) to convert it in that precision anyway"
        )
    exact = {EXACT[p] for p in policies} or {EXACT[k] for k in arrays}
    if len(exact) > 1:
        detail = "; ".join(f"{p}: {_named(layers)}" for p, layers in (policies or arrays).items())
        raise ConversionError(
            f"{kfile.path}: layers compute in different precisions ({detail}); pass dtype= to "
            "convert the whole model in one"
        )
    return exact.pop() if exact else DEFAULT_DTYPE
