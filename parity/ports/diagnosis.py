"""What a port tells parity check about the conventions its conversion can get wrong.

An ``Alternative`` is one Keras/torch convention (the hard-sigmoid slope, GRU gate order, the
bias split, Flatten order, ...) with a function that builds ``Variant``s: modified copies of the
converted model, each saying what it changed. A port lists the alternatives that concern its
Keras class (``LayerConverter.diagnoses``) and its family file defines them (``DIAGNOSES``);
parity.check.diagnose re-runs the check under each variant and reports the one that closes the
gap. Modules are found by what they hold, so hand-written pairs are covered as well.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from torch import nn

GradFix = Callable[[np.ndarray], np.ndarray]


class Checked(Protocol):
    """The torch side of a check, as variant builders read it (parity.check.harness.Subject)."""

    model: nn.Module
    #: (Keras weight, torch parameter, transform) rows that converted the model.
    mapping: Sequence[tuple[str | None, str, str]]


@dataclass
class Variant:
    """One way of re-running the torch side; ``label`` says what differs."""

    label: str
    model: nn.Module | None = None
    #: Move padding of pre- ("post") or post-padded ("pre") rows before running.
    padding_to: str | None = None
    grad_fixes: dict[str, GradFix] = field(default_factory=dict)
    allow_tf32: bool = False
    #: False when the change moves gradients between Keras weights (only forward rows count).
    gradients_comparable: bool = True


#: (the checked model, the check's ids (B, T), device) -> the variants to try.
VariantBuilder = Callable[[Any, np.ndarray, str], list[Variant]]


@dataclass(frozen=True)
class Alternative:
    #: What the conversion got wrong if this variant explains the gap; {label} is filled in.
    cause: str
    variants: VariantBuilder
    #: Keras classes it concerns: it is tried when the file has one (always, when the file has
    #: no class names). Empty: any model. The registry fills it from the ports that list it.
    keras_classes: frozenset[str] = frozenset()


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def groups(items: list) -> list[list]:
    """Each item alone, then all together (one converter made them all): the first variant
    that explains the gap names the smallest change."""
    return [[item] for item in items] + ([items] if len(items) > 1 else [])
