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
