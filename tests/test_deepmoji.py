"""DeepMoji conversion as users meet it: DeepMoji's own Keras 2 weight-file layout with inner
names this project never wrote, the released model's sizes, and the hard-sigmoid decision."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import parity
from parity.arch import get_arch
from parity.check import compare_to_golden
from tests.conftest import needs_keras
from tests.golden_cases import GOLDEN, ragged_ids

pytestmark = [needs_keras, pytest.mark.keras]

SMALL = {"vocab_size": 80, "embedding_dim": 12, "hidden_size": 7, "num_classes": 4}


def _ids(vocab_size: int, seq_len: int = 11) -> np.ndarray:
    lengths = [seq_len, 1, 6, 3, seq_len - 2]
    return ragged_ids(vocab_size, lengths, seq_len, seed=11, pre=[True, False, True, False, True])


def _rename_like_keras_2_0(path: Path) -> None:
    """Rewrite a tf-keras save_weights file as Keras 2.0.x named it (DeepMoji's era): other
    inner names (no lstm_cell, other auto numbers, attlayer_W), keras_version 2.0.9."""
    renames = {
        "forward_lstm": "forward_lstm_4",
        "backward_lstm": "backward_lstm_4",
        "forward_lstm_1": "forward_lstm_5",
        "backward_lstm_1": "backward_lstm_5",
    }
    with h5py.File(path, "r+") as h5:
        h5.attrs["keras_version"] = np.bytes_("2.0.9")
        for layer in h5.attrs["layer_names"]:
            group = h5[layer]
            new_names = []
            for old in group.attrs["weight_names"]:
                old = old.decode() if isinstance(old, bytes) else old
                parts = [renames.get(p, p) for p in old.split("/") if p != "lstm_cell"]
                new = "/".join(parts)
                data = np.asarray(group[old])
                del group[old]
                group[new] = data
                new_names.append(new.encode())
            group.attrs["weight_names"] = np.array(new_names, dtype="S")


def test_deepmoji_keras2_weight_file_never_seen_converts_and_matches(tmp_path: Path) -> None:
    import keras

    from reference_keras import deepmoji

    keras.utils.set_random_seed(12)
    model2 = deepmoji.build_keras2(**SMALL)
    weights = [w * 3.0 if w.ndim == 2 and w.shape[1] % 4 == 0 else w for w in model2.get_weights()]
    model2.set_weights(weights)  # larger gate pre-activations: the hard sigmoid saturates
    path = tmp_path / "deepmoji_weights.hdf5"
    model2.save_weights(str(path))
    _rename_like_keras_2_0(path)
    ids = _ids(SMALL["vocab_size"])
    expected = np.asarray(model2(ids))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = parity.load_keras(path, arch="deepmoji")
    assert model.config.gate_activation == "hard_sigmoid_keras2"
    assert any("assuming" in str(w.message) for w in caught)  # no config: says what it assumed
    ours = model(torch.from_numpy(ids).long()).detach().numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6, rtol=1e-5)
    # the Keras 3 slope computes something measurably different on these weights
    other = parity.load_keras(path, arch="deepmoji", hard_sigmoid="keras3")
    assert np.abs(other(torch.from_numpy(ids).long()).detach().numpy() - expected).max() > 1e-4


def test_weights_h5_without_config_warns_and_override_is_honoured(tmp_path: Path) -> None:
    """A Keras 3 .weights.h5 cannot tell which hard sigmoid its model used."""
    import keras

    from reference_keras import deepmoji

    src = GOLDEN / "deepmoji-hard_sigmoid_keras3-saturated-float32.keras"
    model3 = keras.models.load_model(src, custom_objects=deepmoji.CUSTOM_OBJECTS, compile=False)
    path = tmp_path / "m.weights.h5"
    model3.save_weights(path)
    with pytest.warns(parity.ParityWarning, match="hard_sigmoid='keras3'"):
        assumed = parity.load_keras(path, arch="deepmoji")
    assert assumed.config.gate_activation == "hard_sigmoid_keras2"
    told = parity.load_keras(path, arch="deepmoji", hard_sigmoid="keras3")
    assert told.config.gate_activation == "hard_sigmoid_keras3"
    ids = _ids(100, 14)
    ours = told(torch.from_numpy(ids).long()).detach().numpy()
    np.testing.assert_allclose(ours, np.asarray(model3(ids)), atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_full_size_deepmoji_matches_keras_outputs_attention_and_gradients(tmp_path: Path) -> None:
    """The released model's sizes: 50000 words, 256-wide embedding, 2x512 BiLSTM, 64 classes."""
    import keras

    from parity.check.keras_side import keras_side
    from reference_keras import deepmoji

    keras.utils.set_random_seed(13)
    model = deepmoji.build(return_attention=True)
    path = tmp_path / "deepmoji_full.keras"
    model.save(path)
    ids = _ids(50000, 16)[:3]
    golden = keras_side(model, "deepmoji", ids)
    converted = parity.load_keras(path)
    assert converted.config.vocab_size == 50000 and converted.config.hidden_size == 512
    assert converted.config.num_classes == 64
    rows = compare_to_golden(converted, get_arch("deepmoji").mapping(), golden)
    failed = [str(row) for row in rows if not row.passed]
    assert len(rows) == 2 + 16 and not failed, "\n".join(failed)
