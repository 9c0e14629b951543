"""Code generation: a converted model as standalone PyTorch code (``parity port``).

port.py          the driver: plan the Keras calls, ask each layer's port for its code, write and
                 prove the package
templates/keras_layers.py   the Keras-semantics layers torch lacks, written plainly; a generated
                 package gets a copy of the ones it uses (held to ruff's defaults, as it is)
"""

from __future__ import annotations

from parity.codegen.port import PortResult, port

__all__ = ["PortResult", "port"]
