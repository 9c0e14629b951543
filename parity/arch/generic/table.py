"""Every Keras layer class the generic path converts: each family's converter table added to
the one registry (parity.arch.generic.converter.CONVERTERS), which refuses duplicates."""

from __future__ import annotations

from parity.arch.generic import (
    activations,
    attention,
    conv,
    core,
    merge,
    noise,
    norm,
    pooling,
    preprocessing,
    recurrent,
    structure,
    vision,
    wrappers,
)
from parity.arch.generic.converter import CONVERTERS

#: The families, in the order their tables are added to CONVERTERS (duplicates refused).
FAMILIES = (
    core,
    conv,
    pooling,
    norm,
    recurrent,
    merge,
    structure,
    activations,
    vision,
    preprocessing,
    noise,
    attention,
    wrappers,
)
for _family in FAMILIES:
    CONVERTERS.add_family(_family.__name__.rsplit(".", 1)[-1], _family.CONVERTERS)

__all__ = ["CONVERTERS", "FAMILIES"]
