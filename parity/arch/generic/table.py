"""Every Keras layer class the generic path converts: the families' converter tables merged."""

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
from parity.arch.generic.converter import LayerConverter

#: Keras class name (normalised by parity.keras.graph) -> converter.
CONVERTERS: dict[str, LayerConverter] = {
    **core.CONVERTERS,
    **conv.CONVERTERS,
    **pooling.CONVERTERS,
    **norm.CONVERTERS,
    **recurrent.CONVERTERS,
    **merge.CONVERTERS,
    **structure.CONVERTERS,
    **activations.CONVERTERS,
    **vision.CONVERTERS,
    **preprocessing.CONVERTERS,
    **noise.CONVERTERS,
    **attention.CONVERTERS,
    **wrappers.CONVERTERS,
}
