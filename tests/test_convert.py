"""Conversion from every Keras file format, live: Keras 3 and tf-keras (Keras 2) write the
files, parity converts them without TensorFlow, and the outputs match Keras' own.

Registry-driven: every pair in parity.arch.PAIRS is written in every format.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity.arch import PAIRS
from parity.check import compare, tolerance_for
from tests.conftest import needs_keras
from tests.golden_cases import ragged_ids

pytestmark = [needs_keras, pytest.mark.keras]

#: Small sizes per pair (everything else is the reference builder's default).
SMALL = {
    "embedding_dense": {"vocab_size": 50, "seq_len": 12, "embedding_dim": 4, "num_classes": 3},
    "deepmoji": {"vocab_size": 60, "embedding_dim": 8, "hidden_size": 6, "num_classes": 5},
}
SEQ_LEN = {"embedding_dense": 12, "deepmoji": 9}


def _ids(pair: str) -> np.ndarray:
    lengths = [SEQ_LEN[pair], 1, 4, SEQ_LEN[pair] - 1, 3, 6]
    return ragged_ids(
        SMALL[pair]["vocab_size"],
        lengths,
        SEQ_LEN[pair],
        seed=3,
        pre=[True, False, True, False, True, False],
    )


def _save_keras3(model, path: Path, how: str) -> Path:
    writers: dict[str, Callable[[Path], None]] = {
        "keras": lambda p: model.save(p),
        "weights.h5": lambda p: model.save_weights(p),
        "legacy-h5": lambda p: model.save(p),
    }
    suffix = {"keras": ".keras", "weights.h5": ".weights.h5", "legacy-h5": ".h5"}[how]
    target = path.with_suffix(suffix)
    writers[how](target)
    return target


def _save_keras2(model, path: Path, how: str) -> Path:
    suffix = {"h5": ".h5", "weights-h5": ".h5", "keras": ".keras"}[how]
    target = path.with_suffix(suffix)
    (model.save_weights if how == "weights-h5" else model.save)(str(target))
    return target


KERAS3_FORMATS = ("keras", "weights.h5", "legacy-h5")
KERAS2_FORMATS = ("h5", "weights-h5", "keras")


@pytest.fixture(scope="module", params=sorted(PAIRS))
def reference(request: pytest.FixtureRequest):
    """(pair name, Keras 3 model, tf-keras model with the same weights, ids, Keras 3 output)."""
    import keras

    name = request.param
    module = importlib.import_module(PAIRS[name].reference)
    keras.utils.set_random_seed(4)
    model = module.build(**SMALL[name])
    model2 = module.build_keras2(**SMALL[name])
    model2.set_weights(model.get_weights())
    ids = _ids(name)
    return name, model, model2, ids, np.asarray(model(ids))


def _check(path: Path, name: str, ids: np.ndarray, expected: np.ndarray) -> None:
    model = parity.load_keras(path, arch=name)
    ours = model(torch.from_numpy(ids).long()).detach().numpy()
    row = compare(
        str(path.name), "output", ours, expected, tolerance_for(torch.float32, "cpu", "output")
    )
    assert row.passed, str(row)
    # arch=None finds the same pair
    assert type(parity.load_keras(path)) is type(model)


@pytest.mark.parametrize("how", KERAS3_FORMATS)
def test_keras3_file_converts_and_matches(reference, how: str, tmp_path: Path) -> None:
    name, model, _, ids, expected = reference
    _check(_save_keras3(model, tmp_path / name, how), name, ids, expected)


@pytest.mark.parametrize("how", KERAS2_FORMATS)
def test_keras2_file_converts_and_matches(reference, how: str, tmp_path: Path) -> None:
    name, _, model2, ids, _ = reference
    expected2 = np.asarray(model2(ids))
    _check(_save_keras2(model2, tmp_path / name, how), name, ids, expected2)


def test_save_load_roundtrip_keeps_config_and_outputs(reference, tmp_path: Path) -> None:
    name, model, _, ids, _ = reference
    converted = parity.load_keras(_save_keras3(model, tmp_path / name, "keras"), arch=name)
    parity.save(converted, tmp_path / "m.safetensors")
    loaded = parity.load(tmp_path / "m.safetensors")
    assert loaded.config == converted.config
    x = torch.from_numpy(ids).long()
    torch.testing.assert_close(loaded(x), converted(x), rtol=0, atol=0)


def test_optimizer_state_is_left_out_on_purpose(reference, tmp_path: Path) -> None:
    import keras

    from parity.keras.read import read_keras_file

    name, shared, _, ids, _ = reference
    module = importlib.import_module(PAIRS[name].reference)
    model = module.build(**SMALL[name])  # trained here: keep the shared model untouched
    model.set_weights(shared.get_weights())
    keras.utils.set_random_seed(5)
    labels = np.zeros(len(ids), dtype=np.int32) if name == "embedding_dense" else None
    if labels is None:
        units = model.output_shape[-1]
        labels = np.zeros((len(ids), units), dtype=np.float32)
    model.fit(ids, labels, epochs=1, verbose=0)
    path = _save_keras3(model, tmp_path / name, "legacy-h5")
    assert read_keras_file(path).left_out == ["optimizer_weights"]
    _check(path, name, ids, np.asarray(model(ids)))


def _user_seed_models():
    """The seed model as a user writes it: unnamed layers (Keras picks embedding_3, dense_7...),
    once in Keras 3 and once in tf-keras, with the same weights."""
    import keras
    import tf_keras

    def build(k):
        return k.Sequential(
            [
                k.Input(shape=(100,), dtype="int32"),
                k.layers.Embedding(300, 8),
                k.layers.Flatten(),
                k.layers.Dense(2, activation="softmax"),
            ]
        )

    keras.utils.set_random_seed(6)
    for _ in range(3):  # bump Keras' auto-name counters so names differ from the pair's
        build(keras)
        build(tf_keras)
    model3, model2 = build(keras), build(tf_keras)
    model2.set_weights(model3.get_weights())
    return model3, model2


@pytest.mark.parametrize(
    "writer", [*(f"keras3-{h}" for h in KERAS3_FORMATS), *(f"keras2-{h}" for h in KERAS2_FORMATS)]
)
def test_users_own_seed_model_file_converts(writer: str, tmp_path: Path) -> None:
    model3, model2 = _user_seed_models()
    assert model3.layers[0].name != "embedding"  # auto names: matched by class and order
    version, how = writer.split("-", 1)
    if version == "keras3":
        path = _save_keras3(model3, tmp_path / "user", how)
    else:
        path = _save_keras2(model2, tmp_path / "user", how)
    ids = ragged_ids(300, [100, 1, 40, 99], 100, seed=9, pre=[True, True, False, False])
    _check(path, "embedding_dense", ids, np.asarray(model3(ids)))
