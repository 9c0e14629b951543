"""The ported torch layers under their former import path (``parity.layers.LSTM`` and so on).

The layers now live in parity.ports, one file per Keras layer family beside their conversion.
This package hands every name on to parity.ports, and keeps the former submodule paths
(``parity.layers.recurrent``, ``parity.layers.backends``, ...) importable as the modules they
became.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from parity import ports

__all__ = ports.__all__

#: Former submodule -> the module it became.
MOVED = {
    "activations": "parity.ports.activations",
    "activation_layers": "parity.ports.activations",
    "attention": "parity.ports.attention",
    "keras_attention": "parity.ports.attention",
    "backends": "parity.ports.recurrent.backends",
    "conv": "parity.ports.conv",
    "conv2d": "parity.ports.vision",
    "core": "parity.ports.core",
    "image_preprocessing": "parity.ports.preprocessing",
    "noise": "parity.ports.noise",
    "norm": "parity.ports.norm",
    "pooling": "parity.ports.pooling",
    "pooling2d": "parity.ports.vision",
    "preprocessing": "parity.ports.preprocessing",
    "recurrent": "parity.ports.recurrent",
    "structure": "parity.ports.structure",
}
for _old, _new in MOVED.items():
    sys.modules[f"{__name__}.{_old}"] = importlib.import_module(_new)


def __getattr__(name: str) -> Any:
    if name in MOVED:
        return sys.modules[f"{__name__}.{name}"]
    return getattr(ports, name)
