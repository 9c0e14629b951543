"""TensorFlow SavedModel directories and checkpoints, read without TensorFlow.

Live (keras extra): tf-keras 2.21 writes TF2 checkpoints (``save_weights`` in TF format,
``tf.train.Checkpoint``), SavedModels (``save(dir, save_format="tf")``) and TF1 name-keyed
checkpoints (``tf.compat.v1.train.Saver``) of every seed-zoo model, DeepMoji and a model with
nested layers; parity reads them, converts them, and `parity check`'s harness compares outputs
AND every weight's gradient with Keras' own numbers (parity.check.tolerances). What is read equals
what the legacy HDF5 path reads for the same model (layer names, weight names, order, values).

Without TensorFlow: a golden checkpoint (tests/golden/tf_checkpoint/, made by
tests/golden_tf_checkpoint.py) converts and matches Keras' stored numbers; DeepMoji's golden
model as a TF1 name-keyed checkpoint (written by tests/tf_bundles.py) matches its golden file;
and every field of a checkpoint is corrupted in turn (hostile cases), each one ConversionError
naming the file and the tensor.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import parity
from parity.api import convert_keras
from parity.arch import ZOO
from parity.check import check, subject_for
from parity.check.harness import load_golden
from parity.check.run import check_inputs
from parity.cli import main as parity_main
from parity.keras import tensor_bundle
from parity.keras.read import read_keras_file
from parity.keras.tensor_bundle import FOOTER_SIZE, crc32c, mask_crc, snappy_decompress
from parity.keras.tf_checkpoint import (
    FORMAT_SAVED_MODEL,
    FORMAT_TF1_CHECKPOINT,
    FORMAT_TF_CHECKPOINT,
)
from tests import tf_bundles
from tests.conftest import GOLDEN, REPO, needs_keras
from tests.tf_bundles import Tensor, keras_checkpoint, numeric, strings, write_bundle

TF_GOLDEN = GOLDEN / "tf_checkpoint"
DEEPMOJI_GOLDEN = "deepmoji-hard_sigmoid_keras2-saturated-float32"

#: Small sizes for the live models (the reference builders' other defaults kept).
ZOO_SIZES: dict[str, dict[str, int]] = {
    "embedding_mlp": {"embedding_dim": 6, "hidden": 5},
    "cnn": {"embedding_dim": 6, "filters": 4, "hidden": 5},
    "cnn_lstm": {"embedding_dim": 6, "filters": 4, "units": 5},
    "stacked_rnn": {"embedding_dim": 6, "units": 5},
    "bigru_classifier": {"embedding_dim": 6, "units": 5},
    "bilstm_classifier": {"embedding_dim": 6, "units": 5},
    "lstm_regressor": {"embedding_dim": 6, "units": 5, "num_classes": 0},
}
VOCAB, SEQ_LEN = 40, 12


# --- live: tf-keras writes, parity reads, the harness compares with Keras ---------------------


def _perturb(model: Any, seed: int) -> None:
    """Random weights everywhere (biases too), positive variances: nothing left at its init."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        value = rng.standard_normal(tuple(weight.shape)).astype(weight.dtype.as_numpy_dtype) * 0.4
        if "variance" in weight.name:
            value = np.abs(value) + 0.5
        values.append(value)
    model.set_weights(values)


def _keras_numbers(keras_model: Any, converted: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """The check subject of a conversion and Keras' numbers for it (run on the live model)."""
    from parity.check.keras_side import keras_side, weight_variables

    subject, keras_args = subject_for(converted.model, converted.kfile)
    ids = check_inputs(converted.model, converted.kfile)
    golden = keras_side(
        keras_model,
        subject.pair,
        ids.astype(np.int32),
        activation_points=keras_args["activation_points"],
        variables=weight_variables(keras_model, keras_args["layer_names"], keras_args["weights"]),
    )
    return subject, golden


def _assert_parity(keras_model: Any, path: Path, **load: Any) -> dict[str, float]:
    """Convert ``path``; outputs and every gradient within tolerance; the largest diffs."""
    converted = convert_keras(path, **load)
    subject, golden = _keras_numbers(keras_model, converted)
    report = check(subject, golden)
    failed = [str(row) for row in report.rows if not row.passed]
    assert report.passed, failed
    kinds = {row.kind for row in report.rows}
    assert {"output", "gradient"} <= kinds, kinds
    return {kind: max(row.max_abs for row in report.rows if row.kind == kind) for kind in kinds}


def _same_as_hdf5(tf_path: Path, h5_path: Path, *, sort: bool = False, **read: Any) -> None:
    """The checkpoint reads as the legacy HDF5 file of the same model: same weighted layers,
    weight names, order and values (``sort``: layers in name order, as a TF1 checkpoint without
    a config can only give them)."""
    ours = read_keras_file(tf_path, **read).weighted_layers
    theirs = read_keras_file(h5_path).weighted_layers
    if sort:
        theirs = sorted(theirs, key=lambda layer: layer.name)
    assert [layer.name for layer in ours] == [layer.name for layer in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert [w.name for w in a.weights] == [w.name for w in b.weights], a.name
        for wa, wb in zip(a.weights, b.weights, strict=True):
            np.testing.assert_array_equal(wa.array, wb.array)


def _write_all(model: Any, tmp: Path, *, traces: bool = False) -> dict[str, Path]:
    """The model in every TF layout, plus its legacy HDF5 weights and its JSON config.

    SavedModels are written without traced call functions unless ``traces`` (tracing an RNN
    takes minutes on a loaded CI machine; the Keras metadata and variables are the same: the
    nested model's traced SavedModel was checked once, 2026-12-02, at the same diffs)."""
    import tensorflow as tf

    paths = {
        "checkpoint": tmp / "ckpt" / "weights",
        "saved_model": tmp / "saved_model",
        "h5": tmp / "weights.h5",
        "json": tmp / "model.json",
        "tf_checkpoint": tmp / "tfckpt" / "model",
    }
    model.save_weights(str(paths["checkpoint"]))
    model.save(str(paths["saved_model"]), save_format="tf", save_traces=traces)
    model.save_weights(str(paths["h5"]))
    paths["json"].write_text(model.to_json())
    tf.train.Checkpoint(model=model).write(str(paths["tf_checkpoint"]))
    return paths


def _record(case: str, diffs: dict[str, float]) -> None:
    """Print the largest differences (pytest -s shows them; the README quotes them)."""
    print(f"\n{case}: max |diff| " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(diffs.items())))


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("name", sorted(ZOO_SIZES))
def test_zoo_model_in_every_tf_layout_matches_keras(name: str, tmp_path: Path) -> None:
    """SavedModel (config from keras_metadata.pb), TF2 checkpoint + --config (JSON, or the
    SavedModel directory), tf.train.Checkpoint, all at parity; reads as the HDF5 path reads."""
    import tf_keras

    tf_keras.utils.set_random_seed(5)
    module = importlib.import_module(ZOO[name].reference)
    sizes = {"vocab_size": VOCAB, "seq_len": SEQ_LEN, **ZOO_SIZES[name]}
    model = module.build_keras2(**sizes)
    _perturb(model, 11)
    # one model written with its traced call functions too (the default; quick without RNNs)
    paths = _write_all(model, tmp_path, traces=name == "embedding_mlp")

    saved = read_keras_file(paths["saved_model"])
    assert saved.format == FORMAT_SAVED_MODEL and saved.model_config is not None
    assert saved.keras_version and saved.keras_version.startswith("2.")
    _record(f"{name}/saved_model", _assert_parity(model, paths["saved_model"]))
    ckpt = paths["checkpoint"]
    assert read_keras_file(ckpt).format == FORMAT_TF_CHECKPOINT
    _record(f"{name}/checkpoint", _assert_parity(model, ckpt, config=paths["json"]))
    _assert_parity(model, Path(f"{ckpt}.index"), config=paths["saved_model"])
    _assert_parity(model, ckpt.parent, config=paths["json"])
    _assert_parity(model, paths["tf_checkpoint"], config=paths["json"])
    for path in (paths["saved_model"], ckpt, paths["tf_checkpoint"]):
        _same_as_hdf5(path, paths["h5"], model_config=json.loads(paths["json"].read_text()))


@pytest.fixture(scope="module")
def deepmoji_keras2() -> Any:
    import tf_keras

    from reference_keras import deepmoji

    tf_keras.utils.set_random_seed(6)
    model = deepmoji.build_keras2(vocab_size=VOCAB, embedding_dim=8, hidden_size=6, num_classes=5)
    _perturb(model, 12)
    return model


@needs_keras
@pytest.mark.keras
def test_deepmoji_tf2_checkpoint_and_saved_model_match_keras(deepmoji_keras2, tmp_path) -> None:
    """DeepMoji (custom attention layer, hard-sigmoid LSTMs): a weights-only TF2 checkpoint is
    matched to the deepmoji pair by its layer names; the SavedModel converts as deepmoji too."""
    model = deepmoji_keras2
    ckpt = tmp_path / "ckpt" / "weights"
    model.save_weights(str(ckpt))
    model.save_weights(str(tmp_path / "w.h5"))
    _same_as_hdf5(ckpt, tmp_path / "w.h5")
    with pytest.warns(parity.ParityWarning, match="assuming gate activation hard_sigmoid"):
        # a checkpoint records no config: DeepMoji's default gate is assumed, and said so
        _record("deepmoji/checkpoint", _assert_parity(model, ckpt, hard_sigmoid="keras2"))
        assert type(parity.load_keras(ckpt, hard_sigmoid="keras2")).__name__ == "DeepMoji"
    from reference_keras.deepmoji import keras2_custom_objects  # noqa: F401  (registered names)

    saved = tmp_path / "saved_model"
    model.save(str(saved), save_format="tf", save_traces=False)
    converted = convert_keras(saved)
    assert converted.plan.arch.name == "deepmoji"
    _record("deepmoji/saved_model", _assert_parity(model, saved))


@needs_keras
@pytest.mark.keras
def test_deepmoji_tf1_name_keyed_checkpoint_matches_keras(deepmoji_keras2, tmp_path) -> None:
    """A TF1 Saver checkpoint keyed by variable names (bi_lstm_0/forward_lstm/lstm_cell/kernel):
    sorted alphabetically in the file, put back in Keras' order, matched to deepmoji."""
    import tensorflow as tf

    model = deepmoji_keras2
    prefix = tmp_path / "tf1" / "model"
    saver = tf.compat.v1.train.Saver(var_list={w.name[:-2]: w for w in model.weights})
    saver.save(None, str(prefix))
    model.save_weights(str(tmp_path / "w.h5"))
    assert read_keras_file(prefix).format == FORMAT_TF1_CHECKPOINT
    _same_as_hdf5(prefix, tmp_path / "w.h5", sort=True)
    with pytest.warns(parity.ParityWarning, match="assuming gate activation hard_sigmoid"):
        diffs = _assert_parity(model, prefix, arch="deepmoji", hard_sigmoid="keras2")
    _record("deepmoji/tf1", diffs)


def _nested_model() -> Any:
    """Bidirectional GRU and LSTM (forward_layer/backward_layer -> cell), BatchNormalization
    (non-trainable statistics), a Functional model (InputLayer in its layers)."""
    import tf_keras

    layers = tf_keras.layers
    ids = tf_keras.Input((SEQ_LEN,), dtype="int32", name="ids")
    x = layers.Embedding(VOCAB, 6, mask_zero=True, name="embedding")(ids)
    x = layers.Bidirectional(layers.GRU(4, return_sequences=True), name="bi_gru")(x)
    x = layers.Bidirectional(layers.LSTM(3), name="bi_lstm")(x)
    x = layers.BatchNormalization(name="norm")(x)
    out = layers.Dense(3, activation="softmax", name="output")(x)
    return tf_keras.Model(ids, out, name="nested")


@needs_keras
@pytest.mark.keras
def test_nested_layers_match_keras_in_every_tf_layout(tmp_path: Path) -> None:
    import tf_keras

    tf_keras.utils.set_random_seed(7)
    model = _nested_model()
    _perturb(model, 13)
    paths = _write_all(model, tmp_path)
    _record("nested/saved_model", _assert_parity(model, paths["saved_model"]))
    _record("nested/checkpoint", _assert_parity(model, paths["checkpoint"], config=paths["json"]))
    for path in (paths["saved_model"], paths["checkpoint"], paths["tf_checkpoint"]):
        _same_as_hdf5(path, paths["h5"])


@needs_keras
@pytest.mark.keras
def test_nested_model_weights_read_in_keras_order(tmp_path: Path) -> None:
    """A model nested in a model (not convertible by the generic path, but read like HDF5):
    Keras saves all trainable weights of the sub-model first, then its BN statistics."""
    import tf_keras

    layers = tf_keras.layers
    inner = tf_keras.Sequential(
        [layers.Dense(4, name="d0"), layers.BatchNormalization(name="bn"), layers.Dense(2)],
        name="inner",
    )
    ids = tf_keras.Input((5,), name="x")
    model = tf_keras.Model(ids, layers.Dense(3, name="head")(inner(ids)))
    _perturb(model, 14)
    paths = {"ckpt": tmp_path / "c" / "w", "h5": tmp_path / "w.h5", "sm": tmp_path / "sm"}
    model.save_weights(str(paths["ckpt"]))
    model.save_weights(str(paths["h5"]))
    model.save(str(paths["sm"]), save_format="tf", save_traces=False)
    # the sub-model's variables are named after its layers (d0/kernel, bn/gamma): its own name
    # comes from the config
    _same_as_hdf5(paths["ckpt"], paths["h5"], model_config=json.loads(model.to_json()))
    _same_as_hdf5(paths["sm"], paths["h5"])


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("shards", [1, 3])
def test_tensorflow_reads_the_test_writer_and_parity_reads_it_back(shards, tmp_path) -> None:
    """tests/tf_bundles.py writes what TensorFlow reads (so the hostile cases corrupt real
    structure), several shards included; parity reads the same numbers."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    arrays = {
        "dense": [("kernel", rng.standard_normal((3, 4))), ("bias", rng.standard_normal(4))],
        "emb": [("embeddings", rng.standard_normal((7, 2)).astype(np.float32))],
    }
    prefix = tmp_path / "w"
    write_bundle(prefix, keras_checkpoint(list(arrays.items()), shards=shards), num_shards=shards)
    reader = tf.train.load_checkpoint(str(prefix))
    kfile = read_keras_file(prefix)
    for layer in kfile.weighted_layers:
        for (attribute, array), weight in zip(arrays[layer.name], layer.weights, strict=True):
            key = f"layer_with_weights-{list(arrays).index(layer.name)}/{attribute}"
            np.testing.assert_array_equal(
                reader.get_tensor(f"{key}/.ATTRIBUTES/VARIABLE_VALUE"), array
            )
            np.testing.assert_array_equal(weight.array, array)
            assert weight.name == f"{layer.name}/{attribute}:0"


@needs_keras
@pytest.mark.keras
def test_cli_inspect_convert_and_check_a_saved_model(tmp_path: Path, capsys) -> None:
    import tf_keras

    from reference_keras import bilstm_classifier

    tf_keras.utils.set_random_seed(8)
    model = bilstm_classifier.build_keras2(
        vocab_size=VOCAB, seq_len=SEQ_LEN, embedding_dim=6, units=4
    )
    _perturb(model, 15)
    paths = _write_all(model, tmp_path)
    assert parity_main(["inspect", str(paths["saved_model"])]) == 0
    out = capsys.readouterr().out
    assert f"format:        {FORMAT_SAVED_MODEL}" in out and "converts as:   generic" in out
    assert parity_main(["inspect", f"{paths['checkpoint']}.index"]) == 0
    assert f"format:        {FORMAT_TF_CHECKPOINT}" in capsys.readouterr().out
    dst = tmp_path / "m.safetensors"
    code = parity_main(
        ["convert", str(paths["checkpoint"]), str(dst), "--config", str(paths["json"])]
    )
    assert code == 0 and dst.exists()
    restored = parity.load(dst)
    direct = parity.load_keras(paths["saved_model"])
    ids = torch.from_numpy(check_inputs(direct, None)).long()
    torch.testing.assert_close(restored(ids), direct(ids), rtol=0, atol=0)
    report = tmp_path / "report.json"
    assert parity_main(["check", str(paths["saved_model"]), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["passed"]


# --- without TensorFlow: golden checkpoint, DeepMoji as a TF1 checkpoint ------------------------


def test_golden_tf_checkpoint_matches_keras_numbers_without_tensorflow() -> None:
    """A tf-keras checkpoint stored in the repo (bilstm_classifier, tf-keras 2.21) with Keras'
    outputs and gradients: converted with its JSON config, every number within tolerance."""
    prefix = TF_GOLDEN / "bilstm_classifier" / "weights"
    converted = convert_keras(prefix, config=TF_GOLDEN / "bilstm_classifier.json")
    assert converted.kfile.format == FORMAT_TF_CHECKPOINT
    subject, _ = subject_for(converted.model, converted.kfile)
    report = check(subject, load_golden(TF_GOLDEN / "bilstm_classifier.npz"))
    assert report.passed, [str(row) for row in report.rows if not row.passed]
    assert {row.kind for row in report.rows} >= {"output", "gradient"}
    saved = convert_keras(TF_GOLDEN / "bilstm_classifier_saved_model")
    subject, _ = subject_for(saved.model, saved.kfile)
    assert check(subject, load_golden(TF_GOLDEN / "bilstm_classifier.npz")).passed


WITHOUT_TENSORFLOW = """
import sys
for name in ("keras", "tensorflow", "tf_keras"):
    sys.modules[name] = None
from parity.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_converts_a_checkpoint_where_tensorflow_cannot_be_imported(tmp_path: Path) -> None:
    dst = tmp_path / "m.safetensors"
    config = TF_GOLDEN / "bilstm_classifier.json"
    prefix = TF_GOLDEN / "bilstm_classifier" / "weights"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_TENSORFLOW,
            "convert",
            str(prefix),
            str(dst),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    assert dst.exists()
    bad = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, "convert", str(tmp_path / "none"), str(dst)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr


def _tf1_deepmoji(tmp: Path) -> Path:
    """The golden DeepMoji model's weights as a TF1 name-keyed checkpoint (Keras 2 variable
    names, alphabetical in the table, two shards, optimizer slots beside them)."""
    kfile = read_keras_file(GOLDEN / f"{DEEPMOJI_GOLDEN}.keras")
    tensors: dict[str, Tensor] = {}
    for layer in kfile.weighted_layers:
        names = [w.name for w in layer.weights]
        if layer.name.startswith("bi_lstm"):
            names = [
                f"{side}_lstm/lstm_cell/{n}"
                for side in ("forward", "backward")
                for n in ("kernel", "recurrent_kernel", "bias")
            ]
        elif layer.name == "attlayer":
            names = ["W"]
        else:
            names = [n.rsplit("/", 1)[-1] for n in names]
        for i, (name, weight) in enumerate(zip(names, layer.weights, strict=True)):
            tensors[f"{layer.name}/{name}"] = numeric(weight.array, shard=i % 2)
            tensors[f"{layer.name}/{name}/Adam"] = numeric(np.zeros_like(weight.array))
    tensors["global_step"] = numeric(np.array(7, dtype=np.int64))
    prefix = tmp / "deepmoji_tf1"
    write_bundle(prefix, tensors, num_shards=2)
    return prefix


def test_deepmoji_tf1_checkpoint_matches_golden_without_tensorflow(tmp_path: Path) -> None:
    prefix = _tf1_deepmoji(tmp_path)
    kfile = read_keras_file(prefix)
    assert kfile.format == FORMAT_TF1_CHECKPOINT
    assert "global_step" in kfile.left_out
    bi = next(layer for layer in kfile.layers if layer.name == "bi_lstm_0")
    assert [w.name.split("/", 1)[1] for w in bi.weights] == [
        f"{side}_lstm/lstm_cell/{n}:0"
        for side in ("forward", "backward")
        for n in ("kernel", "recurrent_kernel", "bias")
    ]
    with pytest.warns(parity.ParityWarning, match="assuming gate activation hard_sigmoid"):
        converted = convert_keras(prefix, hard_sigmoid="keras2")  # matched by layer names
    assert converted.plan.arch.name == "deepmoji"
    subject, _ = subject_for(converted.model, converted.kfile)
    report = check(subject, load_golden(GOLDEN / f"{DEEPMOJI_GOLDEN}.npz"))
    assert report.passed, [str(row) for row in report.rows if not row.passed]


def test_formats_are_detected_from_layout_and_bytes(tmp_path: Path) -> None:
    layers = [("input", []), ("dense", [("kernel", np.ones((2, 3))), ("bias", np.zeros(3))])]
    prefix = tmp_path / "one" / "w"
    prefix.parent.mkdir()
    write_bundle(prefix, keras_checkpoint(layers))
    for path in (
        prefix,
        Path(f"{prefix}.index"),
        prefix.parent,
        Path(f"{prefix}.data-00000-of-00001"),
    ):
        kfile = read_keras_file(path)
        assert kfile.format == FORMAT_TF_CHECKPOINT, path
        assert [w.name for w in kfile.layers[1].weights] == ["dense/kernel:0", "dense/bias:0"]
    # several checkpoints in one directory: the `checkpoint` file names the one to read
    write_bundle(prefix.parent / "older", keras_checkpoint(layers))
    with pytest.raises(parity.ConversionError, match="holds 2 checkpoints"):
        read_keras_file(prefix.parent)
    (prefix.parent / "checkpoint").write_text('model_checkpoint_path: "w"\n')
    assert read_keras_file(prefix.parent).path == prefix.parent
    # an index under another name cannot locate its shards
    shutil.copy(f"{prefix}.index", tmp_path / "renamed.bin")
    with pytest.raises(parity.ConversionError, match=r"must be named PREFIX\.index"):
        read_keras_file(tmp_path / "renamed.bin")
    with pytest.raises(FileNotFoundError):
        read_keras_file(tmp_path / "nothing")


def test_big_endian_bundle_and_snappy_blocks_read(tmp_path: Path, monkeypatch) -> None:
    array = np.arange(6, dtype=">f4").reshape(2, 3)
    tensors = {
        "layer/kernel": Tensor(array.tobytes(), 1, (2, 3), mask_crc(crc32c(array.tobytes())))
    }
    header = tf_bundles.field_varint(1, 1) + tf_bundles.field_varint(2, 1)
    write_bundle(tmp_path / "be", tensors, header=header)
    (weight,) = read_keras_file(tmp_path / "be").layers[0].weights
    assert weight.array.dtype == np.dtype("=f4")
    np.testing.assert_array_equal(weight.array, array.astype("<f4"))
    # snappy: whole tables of snappy blocks, literals and (overlapping) copies
    prefix = _hostile_base(tmp_path, snappy=True)
    assert [layer.name for layer in read_keras_file(prefix).weighted_layers] == [
        "embedding",
        "dense",
    ]
    assert snappy_decompress(bytes([8, 0, ord("a"), 0b000_011_01, 1]), 100) == b"a" * 8
    abc = bytes([10, 8, *b"abc", 0b000_011_01, 3])  # literal "abc", then copy 7 from 3 back
    assert snappy_decompress(abc, 100) == b"abcabcabca"
    with pytest.raises(tensor_bundle.WireError, match="before the block"):
        snappy_decompress(bytes([8, 0, ord("a"), 0b01, 5]), 100)
    with pytest.raises(tensor_bundle.WireError, match="declares"):
        snappy_decompress(tf_bundles.varint(1 << 40), 100)


# --- hostile input: each field corrupted in turn ----------------------------------------------


def _hostile_base(tmp: Path, **options: Any) -> Path:
    prefix = tmp / "ckpt" / "w"
    prefix.parent.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    layers = [
        ("embedding", [("embeddings", rng.standard_normal((9, 4)).astype(np.float32))]),
        (
            "dense",
            [
                ("kernel", rng.standard_normal((4, 2)).astype(np.float32)),
                ("bias", np.zeros(2, np.float32)),
            ],
        ),
    ]
    tensors = keras_checkpoint(layers, shards=options.pop("shards", 1))
    edit = options.pop("edit_tensors", None)
    if edit is not None:
        edit(tensors)
    write_bundle(prefix, tensors, **options)
    return prefix


KERNEL = "layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE"


def _override(**fields: int) -> Callable[[dict[str, Tensor]], None]:
    def edit(tensors: dict[str, Tensor]) -> None:
        tensors[KERNEL].overrides.update(fields)

    return edit


def _reshape(shape: tuple[int, ...]) -> Callable[[dict[str, Tensor]], None]:
    def edit(tensors: dict[str, Tensor]) -> None:
        tensors[KERNEL].shape = shape

    return edit


def _graph(nodes: list) -> Callable[[dict[str, Tensor]], None]:
    def edit(tensors: dict[str, Tensor]) -> None:
        tensors["_CHECKPOINTABLE_OBJECT_GRAPH"] = strings([tf_bundles.object_graph(nodes)])

    return edit


def _corrupt_index(prefix: Path, offset: int, value: bytes) -> None:
    path = Path(f"{prefix}.index")
    data = bytearray(path.read_bytes())
    offset %= len(data)
    data[offset : offset + len(value)] = value
    path.write_bytes(bytes(data))


def _bad_restarts(number: int, contents: bytes) -> bytes:
    if number != 0:
        return contents
    return contents[:-8] + struct.pack("<I", 60000) + contents[-4:]


def _bad_shared(number: int, contents: bytes) -> bytes:
    return b"\x05" + contents[1:] if number == 0 else contents


_OUTSIDE_GRAPH = [
    ([(1, "layer-0"), (1, "layer_with_weights-0")], None),
    ([(2, "kernel")], None),
    ([], ("../../etc/kernel", "../../etc")),
]

#: case -> (how to build the checkpoint, what to do to its files, the message expected).
HOSTILE: dict[str, tuple[dict[str, Any], Callable[[Path], None] | None, str]] = {
    "entry past its shard": (
        {"edit_tensors": _override(offset=10_000)},
        None,
        "lies at bytes .* but the shard has",
    ),
    "entry size disagrees with shape": (
        {"edit_tensors": _override(size=4)},
        None,
        "declares shape .* but stores 4 bytes",
    ),
    "absurd shape": ({"edit_tensors": _reshape((2**40, 2**20))}, None, "more than any Keras"),
    "negative dimension": ({"edit_tensors": _reshape((4, -1))}, None, "negative dimensions"),
    "rank 40": ({"edit_tensors": _reshape((1,) * 40)}, None, "rank 40"),
    "entry checksum": ({"edit_tensors": _override(crc32c=1234)}, None, "fails its checksum"),
    "shard id out of range": ({"edit_tensors": _override(shard_id=5)}, None, "names shard 5"),
    "complex dtype": ({"edit_tensors": _override(dtype=8)}, None, "complex64, not a Keras weight"),
    "unknown dtype": ({"edit_tensors": _override(dtype=99)}, None, "unknown dtype 99"),
    "sliced variable": (
        {
            "edit_tensors": lambda t: setattr(
                t[KERNEL], "extra_entry", tf_bundles.field_bytes(7, b"")
            )
        },
        None,
        "sliced .*partitioned",
    ),
    "data byte flipped": ({}, lambda p: _flip_shard(p, 40), "fails its checksum"),
    "truncated shard": ({}, lambda p: _truncate_shard(p, 60), "the shard has 60 bytes"),
    "missing shard": (
        {"shards": 2, "num_shards": 2},
        lambda p: os.remove(f"{p}.data-00001-of-00002"),
        "data shard 1 .* missing",
    ),
    "table magic": ({}, lambda p: _corrupt_index(p, -8, b"\0" * 8), "not a Keras file|magic"),
    "table block checksum": ({}, lambda p: _flip_index(p, 3), "checksum mismatch"),
    "truncated index": ({}, lambda p: _truncate_index(p, 30), "not a Keras file|shorter than"),
    "footer handle past the table": (
        {},
        lambda p: _corrupt_index(p, -48, b"\xff\xff\x03"),
        "runs past the table",
    ),
    "restart point outside the block": ({"edit_block": _bad_restarts}, None, "restart points"),
    "first key shares a prefix": ({"edit_block": _bad_shared}, None, "shares 5 bytes"),
    "header: zero shards": ({"header": tf_bundles.field_varint(1, 0)}, None, "declares 0 data"),
    "header: 10**9 shards": (
        {"header": tf_bundles.field_varint(1, 10**9)},
        None,
        "declares 1000000000 data shards",
    ),
    "header: endianness 7": (
        {"header": tf_bundles.field_varint(1, 1) + tf_bundles.field_varint(2, 7)},
        None,
        "unknown endianness 7",
    ),
    "header: not protobuf": ({"header": b"\x07"}, None, "malformed bundle header"),
    "object graph: child past the nodes": (
        {"edit_tensors": _graph([([(7, "layer-0")], None)])},
        None,
        "past the 1 objects",
    ),
    "object graph: missing tensor": (
        {
            "edit_tensors": _graph(
                [
                    ([(1, "layer-0")], None),
                    ([(2, "kernel")], None),
                    ([], ("dense/kernel", "no/such/key")),
                ]
            )
        },
        None,
        "'no/such/key' .* no such entry",
    ),
    "object graph: path components in names": (
        {"edit_tensors": _graph(_OUTSIDE_GRAPH)},
        None,
        "not a plain name|no such entry",
    ),
    "object graph: not protobuf": (
        {
            "edit_tensors": lambda t: t.__setitem__(
                "_CHECKPOINTABLE_OBJECT_GRAPH", strings([b"\x0a\xff\xff"])
            )
        },
        None,
        "object graph is malformed",
    ),
    "object graph: cycle": (
        {
            "edit_tensors": _graph(
                [([(1, "layer-0")], None), ([(2, "a")], None), ([(1, "b"), (2, "c")], None)]
            )
        },
        None,
        None,
    ),
}


def _flip_shard(prefix: Path, offset: int) -> None:
    path = Path(f"{prefix}.data-00000-of-00001")
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate_shard(prefix: Path, size: int) -> None:
    path = Path(f"{prefix}.data-00000-of-00001")
    path.write_bytes(path.read_bytes()[:size])


def _flip_index(prefix: Path, offset: int) -> None:
    path = Path(f"{prefix}.index")
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate_index(prefix: Path, size: int) -> None:
    path = Path(f"{prefix}.index")
    path.write_bytes(path.read_bytes()[:size])


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_checkpoint_is_one_clear_error(case: str, tmp_path: Path) -> None:
    options, damage, message = HOSTILE[case]
    prefix = _hostile_base(tmp_path, **dict(options))
    if damage is not None:
        damage(prefix)
    before = sorted(p.name for p in prefix.parent.iterdir())
    if message is None:  # a cycle is walked once and reads no weights
        kfile = read_keras_file(prefix)
        assert not kfile.weighted_layers
        return
    with pytest.raises(parity.ConversionError, match=message) as caught:
        parity.load_keras(prefix, config=None, arch="generic")
    assert str(prefix.parent) in str(caught.value)
    assert sorted(p.name for p in prefix.parent.iterdir()) == before  # nothing written


def test_intact_hostile_base_reads(tmp_path: Path) -> None:
    """The base every hostile case corrupts is itself a valid checkpoint."""
    kfile = read_keras_file(_hostile_base(tmp_path))
    assert [layer.name for layer in kfile.weighted_layers] == ["embedding", "dense"]


def test_symlinks_out_of_the_directory_are_not_followed(tmp_path: Path) -> None:
    prefix = _hostile_base(tmp_path)
    outside = tmp_path / "outside.data"
    shard = Path(f"{prefix}.data-00000-of-00001")
    shutil.move(shard, outside)
    shard.symlink_to(outside)
    with pytest.raises(parity.ConversionError, match="resolves outside"):
        read_keras_file(prefix)
    # a SavedModel whose variables/ leads out of it
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    (saved / "variables").symlink_to(prefix.parent, target_is_directory=True)
    shutil.move(outside, shard.with_name("variables.data-00000-of-00001"))
    shard.unlink()
    os.rename(f"{prefix}.index", prefix.with_name("variables.index"))
    with pytest.raises(parity.ConversionError, match="resolves outside"):
        read_keras_file(saved)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_a_shard_is_refused_without_blocking(tmp_path: Path) -> None:
    prefix = _hostile_base(tmp_path)
    shard = Path(f"{prefix}.data-00000-of-00001")
    shard.unlink()
    os.mkfifo(shard)
    with pytest.raises(parity.ConversionError, match="not a regular file"):
        read_keras_file(prefix)


def test_saved_model_metadata_is_checked(tmp_path: Path) -> None:
    prefix = _hostile_base(tmp_path)
    saved = tmp_path / "saved"
    (saved / "variables").mkdir(parents=True)
    for path in prefix.parent.iterdir():
        shutil.copy(path, saved / "variables" / path.name.replace("w.", "variables.", 1))
    node = (
        tf_bundles.field_bytes(3, b"root")
        + tf_bundles.field_bytes(4, b"_tf_keras_layer")
        + tf_bundles.field_bytes(5, b"{}")
    )
    (saved / "keras_metadata.pb").write_bytes(tf_bundles.field_bytes(1, node))
    with pytest.raises(parity.ConversionError, match="not a Keras model"):
        read_keras_file(saved)
    node = (
        tf_bundles.field_bytes(3, b"root")
        + tf_bundles.field_bytes(4, b"_tf_keras_network")
        + tf_bundles.field_bytes(5, b"[" * 100 + b"]" * 100)
    )
    (saved / "keras_metadata.pb").write_bytes(tf_bundles.field_bytes(1, node))
    with pytest.raises(parity.ConversionError, match="nested"):
        read_keras_file(saved)
    (saved / "keras_metadata.pb").write_bytes(b"\xff")
    with pytest.raises(parity.ConversionError, match="malformed Keras metadata"):
        read_keras_file(saved)
    (saved / "keras_metadata.pb").unlink()
    (saved / "saved_model.pb").write_bytes(b"")
    kfile = read_keras_file(saved)  # no Keras metadata: weights only
    assert kfile.format == FORMAT_SAVED_MODEL and kfile.model_config is None
    shutil.rmtree(saved / "variables")
    with pytest.raises(parity.ConversionError, match="SavedModel without variables"):
        read_keras_file(saved)


def test_fuzzed_index_bytes_fail_cleanly(tmp_path: Path) -> None:
    """Every single-byte flip of a small index: a correct read or one ConversionError."""
    prefix = _hostile_base(tmp_path)
    index = Path(f"{prefix}.index")
    original = index.read_bytes()
    assert len(original) > FOOTER_SIZE
    for offset in range(0, len(original), 3):
        data = bytearray(original)
        data[offset] ^= 0x5A
        index.write_bytes(bytes(data))
        try:
            read_keras_file(prefix)
        except parity.ConversionError as exc:
            assert str(prefix) in str(exc) or str(prefix.parent) in str(exc)
    index.write_bytes(original)
