"""Which gate activation a Keras recurrent layer computes, decided from the file.

Keras 3 changed hard_sigmoid (slope 0.2 became 1/6), so the name "hard_sigmoid" in a config
means different functions depending on the Keras that runs it; see parity.conventions.
"""

from __future__ import annotations

from typing import Any

from parity.conventions import (
    HARD_SIGMOID_CONFIG_NAME,
    HARD_SIGMOID_KERAS3_FROM_MAJOR,
    HARD_SIGMOID_VARIANTS,
)
from parity.errors import ConversionError
from parity.keras.read import KerasFile
from parity.ports.activations import ACTIVATIONS, GATES, hard_sigmoid_name

#: Config names a recurrent_activation may have: the activation table's gates, each one function
#: whatever the Keras version ("hard_sigmoid_keras2" is reference_keras' registered Keras 2
#: gate), and the bare "hard_sigmoid", resolved by Keras version.
GATE_CONFIG_NAMES = (*GATES, HARD_SIGMOID_CONFIG_NAME)


def activation_name(value: Any) -> str:
    """A config's activation entry -> its name (Keras 3 serialises functions as dicts)."""
    if isinstance(value, dict):
        inner = value.get("config")
        name = inner if isinstance(inner, str) else value.get("registered_name") or ""
        return str(name).rsplit(">", 1)[-1]
    return str(value)


def check_variant(hard_sigmoid: str | None) -> None:
    if hard_sigmoid is not None and hard_sigmoid not in HARD_SIGMOID_VARIANTS:
        raise ConversionError(
            f"hard_sigmoid must be one of {', '.join(HARD_SIGMOID_VARIANTS)}; got {hard_sigmoid!r}"
        )


def resolve_gate(
    kfile: KerasFile,
    configured: Any,
    hard_sigmoid: str | None,
    *,
    default: str,
    layer: str,
) -> tuple[str, list[str]]:
    """(gate activation, notes): from the layer config if the file has one, else ``default``.

    ``hard_sigmoid`` ("keras2"/"keras3") forces the variant of any hard sigmoid. Notes say what
    was assumed when the file could not tell. ``layer`` names the layer(s) in messages.
    """
    check_variant(hard_sigmoid)
    notes: list[str] = []
    if configured is None:
        name = default
        notes.append(
            f"{kfile.path}: no config for {layer}; assuming gate activation "
            f"{default} (the architecture's default)"
        )
    else:
        name = activation_name(configured)
    if name not in GATE_CONFIG_NAMES:
        raise ConversionError(
            f"{kfile.path}: {layer} uses gate activation {name!r}; supported: "
            f"{', '.join(GATE_CONFIG_NAMES)}"
        )
    versioned = name == HARD_SIGMOID_CONFIG_NAME
    if hard_sigmoid is not None and (versioned or ACTIVATIONS[name].hard_sigmoid is not None):
        return hard_sigmoid_name(hard_sigmoid), notes
    if not versioned:
        return name, notes
    major = kfile.keras_major if configured is not None or kfile.keras_version else None
    if major is None:
        notes.append(
            f"{kfile.path}: the file does not say which Keras wrote it; assuming the Keras 2 "
            f"hard sigmoid clip(0.2x + 0.5, 0, 1) for {layer} "
            "(pass hard_sigmoid='keras3' for Keras 3's relu6(x + 3) / 6)"
        )
        return hard_sigmoid_name("keras2"), notes
    variant = "keras3" if major >= HARD_SIGMOID_KERAS3_FROM_MAJOR else "keras2"
    return hard_sigmoid_name(variant), notes
