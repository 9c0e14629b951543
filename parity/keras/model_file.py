"""What reading any Keras file produces, format-independent: the types every reader returns
(parity.keras.read for HDF5 and .keras, parity.keras.tf_checkpoint for TensorFlow formats) and
the format names `parity inspect` reports. No reading here, so the readers import it, never
each other."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: File formats, as reported by `parity inspect` and KerasFile.format.
FORMAT_KERAS_V3 = "keras"  # .keras zip
FORMAT_KERAS_V3_WEIGHTS = "weights.h5"  # Keras 3 save_weights
FORMAT_LEGACY_MODEL = "legacy-h5-model"  # model.save("x.h5"), any Keras
FORMAT_LEGACY_WEIGHTS = "legacy-h5-weights"  # save_weights("x.h5"), Keras 1/2/tf.keras


@dataclass(frozen=True)
class KerasWeight:
    """One stored array and the name it has in the file (path inside its layer group)."""

    name: str
    array: np.ndarray


@dataclass
class KerasLayer:
    """A layer as the file describes it; class and config are None when the file has no config."""

    name: str
    class_name: str | None = None
    config: dict[str, Any] | None = None
    weights: list[KerasWeight] = field(default_factory=list)
    #: The group name Keras 3 derived from the class (e.g. "bidirectional_1"), when known.
    auto_name: str | None = None

    @property
    def class_key(self) -> str | None:
        """snake_case class name: from the config, else from a Keras 3 auto group name."""
        if self.class_name is not None:
            return snake_case(self.class_name)
        if self.auto_name is not None:
            return re.sub(r"_\d+$", "", self.auto_name)
        return None


@dataclass
class KerasFile:
    """Everything read from one Keras file, format-independent."""

    path: Path
    format: str
    keras_version: str | None
    backend: str | None
    model_config: dict[str, Any] | None
    layers: list[KerasLayer]
    #: Groups recognised as training state and deliberately not converted.
    left_out: list[str] = field(default_factory=list)
    #: The optimizer's variables, named by their path in its group, in saved order (iteration
    #: first, then per weight); read only on request (read_keras_file(training_state=True)).
    optimizer_weights: list[KerasWeight] = field(default_factory=list)
    #: The optimizer as the file's training/compile config saves it: {"class_name", "config"}.
    optimizer_config: dict[str, Any] | None = None
    #: Files a Keras 3 archive stores under assets/ (the lookup layers' vocabulary.txt), by
    #: their path below assets/ ("layers/text_vectorization/vocabulary.txt"); bytes, unparsed.
    assets: dict[str, bytes] = field(default_factory=dict)
    #: A tf_keras SavedModel directory whose saved_model.pb holds the lookup layers' tables
    #: (the file's own, or a SavedModel companion's); None otherwise.
    saved_model: Path | None = None

    @property
    def weighted_layers(self) -> list[KerasLayer]:
        return [layer for layer in self.layers if layer.weights]

    @property
    def keras_major(self) -> int | None:
        """Major Keras version that wrote the file; Keras 3 weight files carry none but are 3."""
        if self.keras_version:
            match = re.match(r"(\d+)", self.keras_version)
            if match:
                return int(match.group(1))
        if self.format == FORMAT_KERAS_V3_WEIGHTS:
            return 3
        return None


def snake_case(class_name: str) -> str:
    """Keras' class -> auto-name rule: GlobalAveragePooling1D -> global_average_pooling1d."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
