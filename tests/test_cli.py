"""The command line as a user meets it: conversion, inspect, and one-line failures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import parity
from tests.conftest import GOLDEN
from tests.edits import edited_keras

GOOD = GOLDEN / "embedding_dense-init-float32.keras"


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "parity", *map(str, args)], capture_output=True, text=True, env=env
    )


def test_convert_writes_a_loadable_model(tmp_path: Path) -> None:
    dst = tmp_path / "m.safetensors"
    result = run_cli("convert", GOOD, dst, "--arch", "embedding_dense")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    ids = torch.randint(0, 200, (3, 20))
    expected = parity.load_keras(GOOD)(ids)
    torch.testing.assert_close(parity.load(dst)(ids), expected, rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp files left


def test_inspect_names_format_layers_and_architecture() -> None:
    result = run_cli("inspect", GOOD)
    assert result.returncode == 0, result.stderr
    for expected in (
        "format:        keras",
        "embedding (Embedding)",
        "(200, 8)",
        "embedding_dense",
    ):
        assert expected in result.stdout


def _truncated(tmp: Path) -> Path:
    path = tmp / "truncated.keras"
    path.write_bytes(GOOD.read_bytes()[:1000])
    return path


def _random_bytes(tmp: Path) -> Path:
    path = tmp / "random.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.h5"
    path.write_bytes(b"")
    return path


def _plain_hdf5(tmp: Path) -> Path:
    path = tmp / "plain.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = np.zeros(3)
    return path


def _archive_without_weights(tmp: Path) -> Path:
    path = tmp / "noweights.keras"
    with zipfile.ZipFile(GOOD) as src, zipfile.ZipFile(path, "w") as dst:
        for name in ("config.json", "metadata.json"):
            dst.writestr(name, src.read(name))
    return path


def _wrong_shape(tmp: Path) -> Path:
    path = tmp / "wrongshape.keras"
    with zipfile.ZipFile(GOOD) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "model.weights.h5":
                inner = tmp / "inner.h5"
                inner.write_bytes(data)
                with h5py.File(inner, "r+") as h5:
                    del h5["layers/dense/vars/1"]
                    h5["layers/dense/vars/1"] = np.zeros(7, dtype=np.float32)
                data = inner.read_bytes()
            dst.writestr(name, data)
    return path


def _nan_weight(tmp: Path) -> Path:
    path = tmp / "nan.weights.h5"
    with zipfile.ZipFile(GOOD) as src:
        path.write_bytes(src.read("model.weights.h5"))
    with h5py.File(path, "r+") as h5:
        h5["layers/dense/vars/0"][0, 0] = np.nan
    return path


BAD_FILES = {
    "missing": (lambda tmp: tmp / "nope.keras", "no such file"),
    "empty": (_empty, "empty file"),
    "random-bytes": (_random_bytes, "not a Keras file"),
    "truncated": (_truncated, "truncated"),
    "hdf5-without-keras": (_plain_hdf5, "without Keras structure"),
    "archive-without-weights": (_archive_without_weights, "without model.weights.h5"),
    "wrong-shape": (_wrong_shape, "shape (7,)"),
    "nan-weight": (_nan_weight, "NaN/Inf"),
    "other-architecture": (lambda tmp: GOOD, "expects"),
}


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_bad_input_fails_in_one_line_and_writes_nothing(bad: str, tmp_path: Path) -> None:
    make, message = BAD_FILES[bad]
    src = make(tmp_path)
    dst = tmp_path / "out.safetensors"
    arch = "deepmoji" if bad == "other-architecture" else "embedding_dense"
    result = run_cli("convert", src, dst, "--arch", arch)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parity: error:"), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not dst.exists()


@pytest.mark.parametrize("bad", sorted(set(BAD_FILES) - {"missing"}))
def test_bad_input_raises_conversion_error(bad: str, tmp_path: Path) -> None:
    make, message = BAD_FILES[bad]
    arch = "deepmoji" if bad == "other-architecture" else "embedding_dense"
    with pytest.raises(parity.ConversionError, match=re.escape(message)):
        parity.load_keras(make(tmp_path), arch=arch)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        parity.load_keras(tmp_path / "nope.keras")


def test_conversion_error_is_a_value_error() -> None:
    assert issubclass(parity.ConversionError, ValueError)


def test_unknown_arch_is_refused_by_the_cli(tmp_path: Path) -> None:
    result = run_cli("convert", GOOD, tmp_path / "x.safetensors", "--arch", "resnet")
    assert result.returncode != 0 and "invalid choice" in result.stderr


# --- generic conversion (arch=None): bad files of a seed-zoo model -----------------------------

ZOO_GOOD = GOLDEN / "cnn_lstm-init-float32.keras"


def _rewrite(
    tmp: Path, name: str, *, config=None, weights=None, drop: tuple[str, ...] = ()
) -> Path:
    """ZOO_GOOD with its config.json and/or model.weights.h5 edited (in memory, then rezipped)."""
    import json

    path = tmp / name
    with zipfile.ZipFile(ZOO_GOOD) as src, zipfile.ZipFile(path, "w") as dst:
        for member in src.namelist():
            if member in drop:
                continue
            data = src.read(member)
            if member == "config.json" and config is not None:
                cfg = json.loads(data)
                config(cfg)
                data = json.dumps(cfg).encode()
            if member == "model.weights.h5" and weights is not None:
                inner = tmp / f"{name}.inner.h5"
                inner.write_bytes(data)
                with h5py.File(inner, "r+") as h5:
                    weights(h5)
                data = inner.read_bytes()
            dst.writestr(member, data)
    return path


def _layer_config(cfg: dict, name: str) -> dict:
    return _layer_entry(cfg, name)["config"]


def _layer_entry(cfg: dict, name: str) -> dict:
    return next(e for e in cfg["config"]["layers"] if e["config"].get("name") == name)


def _replace(h5: h5py.File, key: str, value: np.ndarray) -> None:
    del h5[key]
    h5[key] = value


def _set_units(cfg: dict) -> None:
    _layer_config(cfg, "output")["units"] = 10**12


def _unsupported_class(cfg: dict) -> None:
    _layer_entry(cfg, "pool")["class_name"] = "Lambda"


def _nan(h5: h5py.File) -> None:
    h5["layers/lstm/cell/vars/1"][0, 0] = np.nan


def _inf(h5: h5py.File) -> None:
    h5["layers/conv1d/vars/1"][2] = np.inf


def _absurd_dataset(h5: h5py.File) -> None:
    del h5["layers/dense/vars/1"]
    h5.create_dataset("layers/dense/vars/1", shape=(10**12,), dtype="float32")


def _legacy(tmp: Path, edit) -> Path:
    """A legacy full-model .h5 of a small Dense model, edited."""
    path = tmp / "legacy.h5"
    with h5py.File(path, "w") as h5:
        import json

        config = {
            "class_name": "Sequential",
            "config": {
                "layers": [
                    {
                        "class_name": "Dense",
                        "config": {"name": "d", "units": 2, "activation": "relu"},
                    }
                ]
            },
        }
        h5.attrs["keras_version"] = "2.21.0"
        h5.attrs["model_config"] = json.dumps(config)
        root = h5.create_group("model_weights")
        root.attrs["layer_names"] = [b"d"]
        group = root.create_group("d")
        group.attrs["weight_names"] = [b"d/kernel:0", b"d/bias:0"]
        group["d/kernel:0"] = np.ones((3, 2), dtype="float32")
        group["d/bias:0"] = np.zeros(2, dtype="float32")
        edit(h5)
    return path


def _legacy_extra_layer(h5: h5py.File) -> None:
    root = h5["model_weights"]
    root.attrs["layer_names"] = [b"d", b"extra"]
    group = root.create_group("extra")
    group.attrs["weight_names"] = [b"extra/kernel:0"]
    group["extra/kernel:0"] = np.ones((2, 2), dtype="float32")


GENERIC_BAD_FILES = {
    "keras-without-config": (
        lambda tmp: _rewrite(tmp, "noconfig.keras", drop=("config.json",)),
        "without config.json",
    ),
    "keras-without-weights": (
        lambda tmp: _rewrite(tmp, "noweights.keras", drop=("model.weights.h5",)),
        "without model.weights.h5",
    ),
    "missing-layer": (
        lambda tmp: _rewrite(
            tmp, "missing.keras", weights=lambda h5: h5.__delitem__("layers/lstm")
        ),
        "layer 'lstm' (LSTM): expected 3 weights",
    ),
    "extra-layer": (
        lambda tmp: _rewrite(
            tmp,
            "extra.keras",
            weights=lambda h5: h5.create_dataset("layers/dense_9/vars/0", data=[1.0]),
        ),
        "weight groups ['dense_9'] match no layer",
    ),
    "legacy-extra-layer": (
        lambda tmp: _legacy(tmp, _legacy_extra_layer),
        "weight extra/extra/kernel:0 is not used",
    ),
    "wrong-shape": (
        lambda tmp: _rewrite(
            tmp,
            "shape.keras",
            weights=lambda h5: _replace(h5, "layers/lstm/cell/vars/0", np.zeros((4, 3), "f4")),
        ),
        "shape (4, 3)",
    ),
    "nan-weight": (
        lambda tmp: _rewrite(tmp, "nan.keras", weights=_nan),
        "layer 'lstm': weight 'recurrent_kernel' has 1 NaN/Inf values",
    ),
    "inf-weight": (
        lambda tmp: _rewrite(tmp, "inf.keras", weights=_inf),
        "layer 'conv': weight 'bias' has 1 NaN/Inf values",
    ),
    "absurd-declared-units": (
        lambda tmp: _rewrite(tmp, "units.keras", config=_set_units),
        "config declares units=1000000000000",
    ),
    "absurd-declared-dataset": (
        lambda tmp: _rewrite(tmp, "huge.keras", weights=_absurd_dataset),
        "declares shape (1000000000000,)",
    ),
    "unsupported-layer": (
        lambda tmp: _rewrite(tmp, "unsupported.keras", config=_unsupported_class),
        # a Lambda without a saved function: refused with the reason
        "unsupported layer(s) pool (Lambda; saves no function code)",
    ),
    "weights-only-without-config": (
        lambda tmp: _weights_only(tmp),
        "no model config",
    ),
}


def _weights_only(tmp: Path) -> Path:
    path = tmp / "w.weights.h5"
    with zipfile.ZipFile(ZOO_GOOD) as src:
        path.write_bytes(src.read("model.weights.h5"))
    return path


@pytest.mark.parametrize("bad", sorted(GENERIC_BAD_FILES))
def test_generic_bad_input_fails_cleanly(bad: str, tmp_path: Path) -> None:
    make, message = GENERIC_BAD_FILES[bad]
    src = make(tmp_path)
    with pytest.raises(parity.ConversionError, match=re.escape(message)):
        parity.load_keras(src)


@pytest.mark.parametrize("bad", ["absurd-declared-units", "nan-weight", "unsupported-layer"])
def test_generic_bad_input_cli_one_line_nothing_written(bad: str, tmp_path: Path) -> None:
    make, message = GENERIC_BAD_FILES[bad]
    dst = tmp_path / "out.safetensors"
    result = run_cli("convert", make(tmp_path), dst)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parity: error:"), result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr
    assert not dst.exists()


def test_generic_convert_and_inspect(tmp_path: Path) -> None:
    dst = tmp_path / "m.safetensors"
    result = run_cli("convert", ZOO_GOOD, dst)
    assert result.returncode == 0, result.stderr
    assert "GenericModel" in result.stdout
    ids = torch.randint(0, 60, (3, 16))
    torch.testing.assert_close(parity.load(dst)(ids), parity.load_keras(ZOO_GOOD)(ids))
    shown = run_cli("inspect", ZOO_GOOD).stdout
    assert "lstm (LSTM)  [supported]" in shown and "converts as:   generic" in shown


def test_wrong_zoo_arch_is_refused(tmp_path: Path) -> None:
    dst = tmp_path / "m.safetensors"
    result = run_cli("convert", ZOO_GOOD, dst, "--arch", "bigru_classifier")
    assert result.returncode != 0 and "not a bigru_classifier model" in result.stderr
    assert not dst.exists()


def test_inspect_names_unsupported_layers(tmp_path: Path) -> None:
    shown = run_cli("inspect", GOLDEN / "deepmoji-sigmoid-saturated-float32.keras").stdout
    assert "attlayer (AttentionWeightedAverage)  [supported]" in shown
    assert "converts as:   deepmoji" in shown

    def rename(config: dict) -> None:  # a class of the user's own, which parity does not ship
        layer = next(x for x in config["config"]["layers"] if x["name"] == "attlayer")
        layer["class_name"] = "MyAttention"

    path = edited_keras(
        GOLDEN / "deepmoji-sigmoid-saturated-float32.keras", tmp_path / "mine.keras", rename
    )
    shown = run_cli("inspect", path).stdout
    assert "attlayer (MyAttention)  [not supported by the generic path]" in shown


def test_generic_safetensors_with_tampered_config_fails_cleanly(tmp_path: Path) -> None:
    """parity.load rebuilds a generic model from the metadata's config: sizes that do not fit
    the stored tensors (here 10^12 embedding rows) fail as ConversionError, never allocate."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    parity.save(parity.load_keras(ZOO_GOOD), good)
    with safe_open(str(good), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    config = json.loads(metadata["config"])
    embedding = next(layer for layer in config["layers"] if layer["name"] == "embedding")
    embedding["shapes"]["embeddings"][0] = 10**12
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={**metadata, "config": json.dumps(config)})
    with pytest.raises(parity.ConversionError, match="weights do not fit generic"):
        parity.load(bad)


def test_weights_only_file_converts_with_a_config_companion(tmp_path: Path) -> None:
    weights = _weights_only(tmp_path)
    dst = tmp_path / "m.safetensors"
    refused = run_cli("convert", weights, dst)
    assert refused.returncode != 0 and not dst.exists()
    assert "stores weights only" in refused.stderr and "--config" in refused.stderr
    result = run_cli("convert", weights, dst, "--config", ZOO_GOOD)
    assert result.returncode == 0, result.stderr
    ids = torch.randint(0, 60, (3, 16))
    torch.testing.assert_close(parity.load(dst)(ids), parity.load_keras(ZOO_GOOD)(ids))


def test_compressed_keras_archive_reads_like_a_stored_one(tmp_path: Path) -> None:
    """Keras stores model.weights.h5 uncompressed and parity reads it in place from the archive;
    a re-zipped (deflated) archive takes the in-memory path and gives the same model."""
    path = tmp_path / "deflated.keras"
    with zipfile.ZipFile(ZOO_GOOD) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for member in src.namelist():
            dst.writestr(member, src.read(member))
    ids = torch.randint(0, 60, (3, 16))
    torch.testing.assert_close(
        parity.load_keras(path)(ids), parity.load_keras(ZOO_GOOD)(ids), rtol=0, atol=0
    )


def test_convert_to_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    result = run_cli("convert", GOOD, tmp_path / "missing" / "m.safetensors")
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_save_keeps_the_permission_bits_of_the_file_it_replaces(tmp_path: Path) -> None:
    dst = tmp_path / "m.safetensors"
    dst.write_bytes(b"old")
    dst.chmod(0o640)
    parity.save(parity.load_keras(GOOD), dst)
    assert dst.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_internal_error_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    from parity import cli

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug\nsecond line")

    monkeypatch.setattr(cli, "load_keras", broken)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["convert", str(GOOD), str(tmp_path / "m.safetensors")]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err == f"parity: internal error on {GOOD}: RuntimeError: a bug; second line\n"


def test_generic_safetensors_with_a_cyclic_graph_is_refused(tmp_path: Path) -> None:
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    parity.save(parity.load_keras(ZOO_GOOD), good)
    with safe_open(str(good), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    config = json.loads(metadata["config"])
    first = next(layer for layer in config["layers"] if layer["inbound"])
    first["inbound"][0]["args"] = [[config["outputs"][0][0], 0, 0]]
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={**metadata, "config": json.dumps(config)})
    with pytest.raises(parity.ConversionError, match="cycle"):
        parity.load(bad)
    config["inputs"] = "junk"
    save_file(tensors, str(bad), metadata={**metadata, "config": json.dumps(config)})
    with pytest.raises(parity.ConversionError, match="generic config"):
        parity.load(bad)
