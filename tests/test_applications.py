"""Keras applications as acceptance: whole published architectures through the generic path.

MobileNetV2, ResNet50, VGG16 and EfficientNetB0 are built by keras.applications (weights=None:
nothing is downloaded), their BatchNormalization statistics drawn at random so no layer hides
behind an identity, saved as .keras, converted with ``parity.load_keras(path)`` and compared
with Keras: the logits and the gradient of every trainable weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import needs_keras
from tests.test_generic_layers import check_against_keras

pytestmark = [needs_keras, pytest.mark.keras, pytest.mark.slow]

#: The smallest input every one of them accepts, and a batch of two.
IMAGE = (32, 32, 3)
APPLICATIONS = ("MobileNetV2", "ResNet50", "VGG16", "EfficientNetB0")


def _random_batch_norm(model: Any, seed: int = 31) -> None:
    """Moving statistics, gamma and beta away from the identity, as a trained model has them."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, variance = (np.asarray(w) for w in layer.weights)
            layer.set_weights(
                [
                    1 + 0.1 * rng.standard_normal(gamma.shape),
                    0.1 * rng.standard_normal(beta.shape),
                    0.1 * rng.standard_normal(mean.shape),
                    1 + 0.5 * rng.random(variance.shape),
                ]
            )


@pytest.mark.parametrize("name", APPLICATIONS)
def test_keras_application_converts_and_matches(name: str, tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(30)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=IMAGE, classes=7, classifier_activation=None
    )
    _random_batch_norm(model)
    # Preprocessed-scale pixels: raw 0-255 inputs through 50 unnormalised layers make float32
    # gradients whose rounding, not the conversion, dominates the comparison.
    x = np.random.default_rng(32).uniform(-1, 1, (2, *IMAGE)).astype("float32")
    check_against_keras(model, x, tmp_path / f"{name}.keras", torch.float32)


#: Other writers and formats, one application each (the whole set in every format would make
#: the suite minutes longer): tf-keras' legacy .h5 and .keras, Keras 3's legacy .h5.
OTHER_WRITERS = (
    ("tf_keras", "MobileNetV2", ".h5"),
    ("tf_keras", "ResNet50", ".keras"),
    ("keras", "EfficientNetB0", ".h5"),
)


@pytest.mark.parametrize(("writer", "name", "suffix"), OTHER_WRITERS)
def test_keras_application_from_other_writers(
    writer: str, name: str, suffix: str, tmp_path: Path
) -> None:
    import importlib

    k = importlib.import_module(writer)
    k.utils.set_random_seed(33)
    model = getattr(k.applications, name)(
        weights=None, input_shape=IMAGE, classes=7, classifier_activation=None
    )
    _random_batch_norm(model)
    x = np.random.default_rng(34).uniform(-1, 1, (2, *IMAGE)).astype("float32")
    check_against_keras(model, x, tmp_path / f"{name}{suffix}", torch.float32)
