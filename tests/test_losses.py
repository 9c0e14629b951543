"""parity.losses against keras.losses / keras.regularizers on the same numbers.

Probabilities include saturated ones (0, 1, and within 1e-7 of them), where Keras' clipping
decides the value; the logits variants are checked against Keras fed a sigmoid/softmax output,
which is where Keras itself switches to the logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from parity import losses
from parity.check.tolerances import tolerance_for
from tests.conftest import needs_keras

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _probs(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, shape)
    flat = p.reshape(-1)
    flat[:6] = [0.0, 1.0, 1e-9, 1 - 1e-9, 5e-8, 1 - 5e-8]  # where clipping matters
    return p.astype(dtype)


def _close(ours: torch.Tensor, theirs: object, dtype: str) -> None:
    tol = tolerance_for(DTYPES[dtype], "cpu", "output")
    np.testing.assert_allclose(
        ours.detach().numpy(), np.asarray(theirs), atol=tol.atol, rtol=tol.rtol
    )


@needs_keras
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_binary_crossentropy_on_probabilities(dtype: str) -> None:
    import keras

    p = _probs((16, 3), dtype)
    y = (np.random.default_rng(1).uniform(size=p.shape) > 0.5).astype(dtype)
    theirs = keras.losses.binary_crossentropy(y, p)  # per sample (mean over the last axis)
    ours = losses.binary_crossentropy(torch.from_numpy(p), torch.from_numpy(y), reduce=False)
    _close(ours, theirs, dtype)
    _close(
        losses.binary_crossentropy(torch.from_numpy(p), torch.from_numpy(y)), np.mean(theirs), dtype
    )
    # torch's BCELoss clamps log at -100 instead: it disagrees on the saturated entries
    torch_bce = torch.nn.functional.binary_cross_entropy(
        torch.from_numpy(p), torch.from_numpy(y), reduction="none"
    ).mean(-1)
    assert not np.allclose(torch_bce.numpy(), np.asarray(theirs), atol=1e-3)


@needs_keras
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_categorical_crossentropies_on_probabilities(dtype: str) -> None:
    import keras

    raw = _probs((16, 5), dtype)
    p = (raw / raw.sum(-1, keepdims=True)).astype(dtype)
    p[0] = [1.0, 0, 0, 0, 0]
    labels = np.random.default_rng(2).integers(0, 5, 16)
    y = np.eye(5, dtype=dtype)[labels]
    ours = losses.categorical_crossentropy(torch.from_numpy(p), torch.from_numpy(y), reduce=False)
    _close(ours, keras.losses.categorical_crossentropy(y, p), dtype)
    ours = losses.sparse_categorical_crossentropy(
        torch.from_numpy(p), torch.from_numpy(labels), reduce=False
    )
    _close(ours, keras.losses.sparse_categorical_crossentropy(labels, p), dtype)


@needs_keras
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_logits_variant_is_what_keras_does_behind_an_activation(activation: str) -> None:
    """Keras, given a sigmoid/softmax output, uses its logits: saturated logits (|z| ~ 40) give
    finite, exact losses there and clipped ones from probabilities."""
    import keras

    z = np.array([[40.0, -3.0, 0.5], [-40.0, 2.0, 1.0], [0.1, -0.2, 25.0]], dtype="float32")
    y = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0]], dtype="float32")
    act = getattr(keras.activations, activation)
    out = act(keras.ops.convert_to_tensor(z))
    if activation == "sigmoid":
        theirs = keras.losses.binary_crossentropy(y, out)
        ours = losses.binary_crossentropy(
            None, torch.from_numpy(y), logits=torch.from_numpy(z), reduce=False
        )
        clipped = losses.binary_crossentropy(
            torch.sigmoid(torch.from_numpy(z)), torch.from_numpy(y), reduce=False
        )
    else:
        theirs = keras.losses.categorical_crossentropy(y, out)
        ours = losses.categorical_crossentropy(
            None, torch.from_numpy(y), logits=torch.from_numpy(z), reduce=False
        )
        clipped = losses.categorical_crossentropy(
            torch.softmax(torch.from_numpy(z), -1), torch.from_numpy(y), reduce=False
        )
    _close(ours, theirs, "float32")
    assert not np.allclose(clipped.numpy(), np.asarray(theirs), rtol=1e-3)


@needs_keras
def test_l2_is_keras_regularizer() -> None:
    import keras

    w = np.random.default_rng(3).normal(size=(7, 4)).astype("float64")
    for factor in (0.01, 1e-4):
        theirs = keras.regularizers.L2(factor)(keras.ops.convert_to_tensor(w))
        _close(losses.l2(torch.from_numpy(w), factor), theirs, "float64")
    total = losses.l2_penalty([torch.from_numpy(w), torch.from_numpy(w[:2])])
    expected = float(np.float32(0.01)) * (np.sum(w**2) + np.sum(w[:2] ** 2))
    assert float(total) == pytest.approx(expected, rel=1e-12)
