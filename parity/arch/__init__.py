"""Architectures by name: the table of contents of the project and the test matrix.

Adding a pair = one module here (parity notes, config, module, mapping table, check points,
``ARCH``) listed in ``PAIRS``, one reference_keras module of the same name, one golden-case row.
Adding a zoo model = one entry in parity/arch/zoo.py. Every conversion, parity, init and
fine-tuning test is parametrised over these tables.
"""

from __future__ import annotations

from torch import nn

from parity.arch import deepmoji, embedding_dense
from parity.arch.base import Architecture, PairArch, Plan, Point
from parity.arch.generic import GenericArch
from parity.arch.zoo import ZOO
from parity.errors import ConversionError

PAIRS: dict[str, PairArch] = {arch.name: arch for arch in (embedding_dense.ARCH, deepmoji.ARCH)}
GENERIC_NAME = "generic"
GENERIC = GenericArch(GENERIC_NAME)


def arch_names() -> list[str]:
    """Every name arch= accepts: the pairs, "generic", the zoo."""
    return [*PAIRS, GENERIC_NAME, *ZOO]


def get_arch(name: str) -> Architecture:
    table: dict[str, Architecture] = {**PAIRS, GENERIC_NAME: GENERIC, **ZOO}
    if name not in table:
        raise ConversionError(f"unknown arch {name!r}; registered: {', '.join(arch_names())}")
    return table[name]


def arch_of(model: nn.Module) -> Architecture:
    """The architecture that built ``model`` (a pair, or the generic one)."""
    for arch in (*PAIRS.values(), GENERIC):
        if arch.owns(model):
            return arch
    raise TypeError(f"{type(model).__name__} is not a keras-parity model")


__all__ = [
    "GENERIC",
    "GENERIC_NAME",
    "PAIRS",
    "ZOO",
    "Architecture",
    "GenericArch",
    "PairArch",
    "Plan",
    "Point",
    "arch_names",
    "arch_of",
    "get_arch",
]
