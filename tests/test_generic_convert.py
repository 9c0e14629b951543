"""The generic path end to end, live: seed-zoo models trained on real data (SS-Youtube), written
by Keras 3 and by tf-keras (Keras 2) in every format, converted with arch=None; Keras 1 per-gate
and CuDNN files interpreted as Keras itself interprets them; save/load of generic models.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

import parity
from parity.arch import ZOO
from parity.arch.generic import GenericModel
from parity.check import compare, tolerance_for
from tests.conftest import SHARED_DATA, WEIGHTS, needs_keras, needs_shared

pytestmark = [needs_keras, pytest.mark.keras]

VOCAB, MAXLEN, TRAIN, TEST = 2000, 30, 384, 48
TRAIN_SIZES: dict[str, dict[str, int]] = {
    "embedding_mlp": {"embedding_dim": 16, "hidden": 8},
    "cnn": {"embedding_dim": 16, "filters": 8, "hidden": 8},
    "cnn_lstm": {"embedding_dim": 16, "filters": 8, "units": 8},
    "stacked_rnn": {"embedding_dim": 16, "units": 8},
    "bigru_classifier": {"embedding_dim": 16, "units": 8},
    "bilstm_classifier": {"embedding_dim": 16, "units": 8},
    "lstm_regressor": {"embedding_dim": 16, "units": 8, "num_classes": 0},
}
assert set(TRAIN_SIZES) == set(ZOO)


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SS-Youtube train ids and labels, and test ids: half pre-, half post-padded."""
    from parity.text import encode, load_vocabulary
    from reference_keras.train import load_split

    splits = load_split(SHARED_DATA / "SS-Youtube.jsonl")
    vocabulary = load_vocabulary(WEIGHTS / "vocabulary.json")
    texts, labels = splits["train"]
    x = encode(texts[:TRAIN], vocabulary, MAXLEN, vocab_size=VOCAB)
    test = splits["test"][0][:TEST]
    half = TEST // 2
    x_test = np.concatenate(
        [
            encode(test[:half], vocabulary, MAXLEN, vocab_size=VOCAB, padding="pre"),
            encode(test[half:], vocabulary, MAXLEN, vocab_size=VOCAB, padding="post"),
        ]
    )
    return x, labels[:TRAIN], x_test


@pytest.fixture(scope="module", params=sorted(ZOO))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(name, Keras 3 model trained 2 epochs on SS-Youtube, tf-keras twin, test ids, dir)."""
    if not SHARED_DATA.exists():
        pytest.skip("../shared data not present")
    import keras

    name = request.param
    module = importlib.import_module(ZOO[name].reference)
    keras.utils.set_random_seed(31)
    sizes = {"vocab_size": VOCAB, **TRAIN_SIZES[name]}
    model = module.build(**sizes)
    x, y, x_test = _data()
    targets = y.astype("float32")
    model.fit(x, targets, epochs=2, batch_size=128, verbose=0)
    twin = module.build_keras2(**sizes)
    twin.set_weights(model.get_weights())
    expected = {"model": np.asarray(model(x_test)), "twin": np.asarray(twin(x_test))}
    return name, model, twin, x_test, tmp_path_factory.mktemp(name), expected


def _assert_matches(path: Path, ids: np.ndarray, expected: np.ndarray) -> GenericModel:
    model = parity.load_keras(path)
    assert isinstance(model, GenericModel), type(model)
    ours = model(torch.from_numpy(ids).long()).detach().numpy()
    row = compare(
        path.name, "output", ours, expected, tolerance_for(torch.float32, "cpu", "output")
    )
    assert row.passed, str(row)
    return model


WRITERS = {
    "keras3-keras": ("model", ".keras"),
    "keras3-legacy-h5": ("model", ".h5"),
    "keras2-h5": ("twin", ".h5"),
    "keras2-keras": ("twin", ".keras"),
}


@needs_shared
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_trained_zoo_model_converts_with_arch_none(trained, writer: str) -> None:
    name, model, twin, ids, tmp, outputs = trained
    which, suffix = WRITERS[writer]
    keras_model = model if which == "model" else twin
    path = tmp / f"{writer}{suffix}"
    keras_model.save(str(path))
    converted = _assert_matches(path, ids, outputs[which])
    # the zoo entry accepts it too, and its static mapping table is the one the file produced
    assert set(parity.load_keras(path, arch=name).mapping) == set(ZOO[name].mapping())
    assert set(converted.mapping) == set(ZOO[name].mapping())


@needs_shared
@pytest.mark.parametrize("which", ["keras3", "keras2"])
def test_weights_only_file_needs_a_config(trained, which: str) -> None:
    _, model, twin, ids, tmp, outputs = trained
    path = tmp / ("w.weights.h5" if which == "keras3" else "w2.h5")
    (model if which == "keras3" else twin).save_weights(str(path))
    with pytest.raises(parity.ConversionError, match="no model config"):
        parity.load_keras(path)
    # ... and converts with the architecture taken from a full-model companion file
    companion = tmp / f"companion-{which}.keras"
    (model if which == "keras3" else twin).save(str(companion))
    converted = parity.load_keras(path, config=companion)
    expected = outputs["model"]
    ours = converted(torch.from_numpy(ids).long()).detach().numpy()
    row = compare(
        "companion", "output", ours, expected, tolerance_for(torch.float32, "cpu", "output")
    )
    assert row.passed, str(row)


@needs_shared
def test_generic_save_load_roundtrip(trained) -> None:
    _, model, _, ids, tmp, _ = trained
    path = tmp / "m.keras"
    model.save(path)
    converted = parity.load_keras(path)
    parity.save(converted, tmp / "m.safetensors")
    loaded = parity.load(tmp / "m.safetensors")
    assert isinstance(loaded, GenericModel) and loaded.config == converted.config
    x = torch.from_numpy(ids).long()
    torch.testing.assert_close(loaded(x), converted(x), rtol=0, atol=0)
    text = repr(loaded)  # readable: the Keras layer names and what each computes
    for layer in model.layers:
        assert f"({layer.name}):" in text


# --- old formats: Keras 1 per-gate arrays, CuDNN layers -------------------------------------------

V1, E1, U1, C1 = 20, 4, 3, 2
KERAS1_GATES = {"LSTM": ("i", "c", "f", "o"), "GRU": ("z", "r", "h")}
KERAS_GATES = {"LSTM": ("i", "f", "c", "o"), "GRU": ("z", "r", "h")}


def _write_keras1(path: Path, rnn: str, rng: np.random.Generator) -> None:
    """A Keras 1.2 full-model HDF5 file as Keras 1 wrote it: list-style Sequential config with
    Keras 1 keys (output_dim, inner_activation, bias) and per-gate W_/U_/b_ arrays."""
    layers = [
        {"class_name": "Embedding", "config": {"name": "embedding_1", "input_dim": V1,
         "output_dim": E1, "mask_zero": True, "batch_input_shape": [None, 7]}},
        {"class_name": rnn, "config": {"name": "rnn_1", "output_dim": U1, "activation": "tanh",
         "inner_activation": "hard_sigmoid", "return_sequences": False, "consume_less": "cpu"}},
        {"class_name": "Dense", "config": {"name": "dense_1", "output_dim": C1,
         "activation": "softmax", "bias": True}},
    ]  # fmt: skip
    n = len(KERAS_GATES[rnn])
    blocks = [
        dict(zip(KERAS_GATES[rnn], np.split(a, n, axis=-1), strict=True))
        for a in (
            rng.standard_normal((E1, n * U1)),
            rng.standard_normal((U1, n * U1)),
            rng.standard_normal(n * U1),
        )
    ]
    weights = {
        "embedding_1": [("embedding_1_W", rng.standard_normal((V1, E1)))],
        "rnn_1": [
            (f"rnn_1_{part}_{gate}", blocks[i][gate])
            for gate in KERAS1_GATES[rnn]
            for i, part in enumerate("WUb")
        ],
        "dense_1": [("dense_1_W", rng.standard_normal((U1, C1))), ("dense_1_b", np.ones(C1))],
    }
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = b"1.2.2"
        h5.attrs["backend"] = b"theano"
        h5.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": layers})
        root = h5.create_group("model_weights")
        root.attrs["layer_names"] = [name.encode() for name in weights]
        for layer, arrays in weights.items():
            group = root.create_group(layer)
            group.attrs["weight_names"] = [n.encode() for n, _ in arrays]
            for n, a in arrays:
                group[n] = a.astype("float32")


@pytest.mark.parametrize("rnn", ["LSTM", "GRU"])
def test_keras1_per_gate_file_matches_keras_own_reading(rnn: str, tmp_path: Path) -> None:
    """tf-keras' load_weights converts Keras 1 per-gate arrays itself; parity must agree."""
    import tf_keras as k

    path = tmp_path / "keras1.h5"
    _write_keras1(path, rnn, np.random.default_rng(32))
    extra = {"reset_after": False} if rnn == "GRU" else {}
    reference = k.Sequential(
        [
            k.Input((7,), dtype="int32"),
            k.layers.Embedding(V1, E1, mask_zero=True),
            getattr(k.layers, rnn)(U1, recurrent_activation="hard_sigmoid", **extra),
            k.layers.Dense(C1, activation="softmax"),
        ]
    )
    reference.load_weights(str(path))
    ids = np.array([[0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 0, 0, 0, 0], [5, 5, 5, 5, 5, 5, 9]])
    model = _assert_matches(path, ids, np.asarray(reference(ids)))
    assert model.rnn_1.gate_activation == "hard_sigmoid_keras2"  # Keras 1 file


def _cudnn_model(k: Any, cls: Any, bidirectional: bool) -> Any:
    rnn = cls(3, name="rnn", return_sequences=True)
    wrapped = k.layers.Bidirectional(rnn, name="rnn") if bidirectional else rnn
    return k.Sequential([k.Input((5, 4)), wrapped, k.layers.Dense(2, name="dense")])


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_cudnn_file_matches_keras_own_reading(cell: str, bidirectional: bool, tmp_path) -> None:
    """CuDNNLSTM/CuDNNGRU files (doubled biases, cuDNN kernel layout): tf-keras loads them into
    LSTM / GRU(reset_after=True) with its own converter; parity must agree."""
    import tf_keras as k

    cudnn = importlib.import_module(f"tf_keras.src.layers.rnn.cudnn_{cell.lower()}")
    cls = getattr(cudnn, f"CuDNN{cell}")
    model = _cudnn_model(k, cls, bidirectional)
    rng = np.random.default_rng(33)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / "cudnn.h5"
    model.save(str(path))
    extra = {"reset_after": True} if cell == "GRU" else {}

    def standard(units: int, **kwargs: Any) -> Any:
        return getattr(k.layers, cell)(units, recurrent_activation="sigmoid", **extra, **kwargs)

    reference = _cudnn_model(k, standard, bidirectional)
    reference.load_weights(str(path))
    x = rng.standard_normal((3, 5, 4)).astype("float32")
    converted = parity.load_keras(path)
    if cell == "LSTM":  # cuDNN trains an input and a recurrent bias: both stay parameters
        params = dict(converted.named_parameters())
        assert params["rnn.bias_hh_l0"].requires_grad and params["rnn.bias_ih_l0"].requires_grad
    ours = converted(torch.from_numpy(x)).detach().numpy()
    row = compare(
        "cudnn",
        "output",
        ours,
        np.asarray(reference(x)),
        tolerance_for(torch.float32, "cpu", "output"),
    )
    assert row.passed, str(row)
