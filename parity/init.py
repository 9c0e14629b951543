"""Keras' default initializers for PyTorch modules, in place: ``keras_init_(module)``.

Why: torch's defaults differ from Keras' for every layer (kaiming-uniform Linear, N(0, 1)
Embedding, U(+-1/sqrt(h)) RNNs), so a model trained "from scratch" in PyTorch starts somewhere
Keras never would and needs other learning rates. Each layer gets what the Keras layer it mirrors
gets: the rule lives in the layer's port (``INIT_RULES`` in parity/ports/<family>.py), and this
module asks the registry. The initializers themselves (VarianceScaling and its presets,
orthogonal) are parity.initializers, re-exported here.
"""

from __future__ import annotations

from torch import nn

from parity.initializers import (
    KERAS_FAN_AXES,
    PRESETS,
    TORCH_FAN_AXES,
    Preset,
    glorot_uniform_,
    initialize_,
    orthogonal_,
    variance_scaling_,
)
from parity.ports import CONVERTERS

__all__ = [
    "KERAS_FAN_AXES",
    "PRESETS",
    "TORCH_FAN_AXES",
    "Preset",
    "glorot_uniform_",
    "initialize_",
    "keras_init_",
    "orthogonal_",
    "variance_scaling_",
]


def keras_init_(module: nn.Module) -> nn.Module:
    """Re-initialize ``module`` and all its submodules as Keras would, in place; returns it.

    A submodule that owns parameters but has no rule raises TypeError rather than keeping
    torch's defaults silently; give its port an init rule (or a plug-in, ``init_rules=``).
    """
    for name, sub in module.named_modules():
        rule = CONVERTERS.init_rule(sub)
        if rule is not None:
            rule(sub)
        elif any(True for _ in sub.parameters(recurse=False)):
            where = name or type(module).__name__
            raise TypeError(
                f"keras_init_: no Keras initialization rule for {where} ({type(sub).__name__}); "
                "add one to its port's INIT_RULES (parity.ports) or register_layer(init_rules=)"
            )
    return module
