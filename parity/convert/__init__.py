"""Keras file -> PyTorch module, in three separate steps.

read        file -> KerasFile (named arrays in saved order, config, version); knows file formats.
transforms  named layout changes between Keras and torch weights (and their inverses), and the
            normalisations of old layouts (Keras 1 per-gate arrays, CuDNN layers).
load        strict application of a model's mapping table to a module.
"""

from parity.convert.load import apply_mapping, collect_weights
from parity.convert.read import (
    KerasFile,
    KerasLayer,
    KerasWeight,
    read_keras_file,
    read_model_config,
)

__all__ = [
    "KerasFile",
    "KerasLayer",
    "KerasWeight",
    "apply_mapping",
    "collect_weights",
    "read_keras_file",
    "read_model_config",
]
