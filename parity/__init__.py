"""keras-parity: Keras models in PyTorch, proven to compute the same thing.

Importing parity never imports keras or tensorflow.
"""

from __future__ import annotations

from parity import optim, plugins
from parity.api import ParityWarning, load, load_keras, save, text_preprocessor
from parity.codegen import port
from parity.errors import ConversionError
from parity.export import (
    compile_model,
    export,  # the function; the module stays importable as parity.export
)
from parity.init import keras_init_
from parity.version import __version__

__all__ = [
    "ConversionError",
    "ParityWarning",
    "__version__",
    "compile_model",
    "export",
    "keras_init_",
    "load",
    "load_keras",
    "optim",
    "plugins",
    "port",
    "save",
    "text_preprocessor",
]
