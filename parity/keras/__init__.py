"""The Keras side of a file, without Keras: reading every format, parsing every config version.

read       file -> KerasFile (named arrays in saved order, config, version); knows file formats
graph      model config (Keras 1, 2, tf.keras, 3) -> one normalised KerasGraph, parsed once
tensor_bundle, tf_checkpoint   TF checkpoints and SavedModels -> the same KerasFile, without TF
"""

from parity.keras.graph import KerasGraph, parse_graph
from parity.keras.read import KerasFile, KerasLayer, KerasWeight, read_keras_file, read_model_config

__all__ = [
    "KerasFile",
    "KerasGraph",
    "KerasLayer",
    "KerasWeight",
    "parse_graph",
    "read_keras_file",
    "read_model_config",
]
