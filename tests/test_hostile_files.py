"""Hostile model files: every one is refused with one ConversionError, and nothing outside the
file is ever read (links, external storage, virtual datasets), nothing huge is allocated."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import parity
from parity.conventions import MAX_JSON_DEPTH
from parity.errors import ConversionError
from parity.keras.limits import load_json
from parity.keras.read import read_keras_file, read_model_config

REPO = Path(__file__).resolve().parents[1]
#: Numbers that appear nowhere but in the canary file outside the model.
CANARY = np.array([[1234.5678, -8765.4321], [4242.4242, 1.0e-3]], dtype="float32")


# --- builders --------------------------------------------------------------------------------


def _canary_h5(tmp_path: Path) -> Path:
    path = tmp_path / "secret.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = CANARY
    return path


def _canary_raw(tmp_path: Path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(CANARY.tobytes())
    return path


def _legacy(path: Path, fill: Callable[[h5py.Group], None], names: object = None) -> Path:
    """A legacy save_weights file: one layer 'dense', its weight 'dense/kernel:0' made by fill."""
    # libver "latest" stores attributes densely, so a name list may pass 64 KB.
    with h5py.File(path, "w", libver="latest") as h5:
        h5.attrs["layer_names"] = [b"dense"] if names is None else names
        h5.attrs["keras_version"] = b"2.2.4"
        group = h5.create_group("dense")
        group.attrs["weight_names"] = [b"dense/kernel:0"]
        fill(group.create_group("dense"))
    return path


def _v3_weights(path: Path, fill: Callable[[h5py.Group], None]) -> Path:
    """A Keras 3 .weights.h5 with one layer group layers/dense/vars whose '0' fill makes."""
    with h5py.File(path, "w") as h5:
        fill(h5.create_group("layers/dense/vars"))
    return path


def _keras_archive(path: Path, fill: Callable[[h5py.Group], None], **members: bytes) -> Path:
    """A .keras zip around a _v3_weights member."""
    weights = _v3_weights(path.with_suffix(".inner.h5"), fill).read_bytes()
    config = {
        "class_name": "Sequential",
        "config": {"layers": [{"class_name": "Dense", "config": {"name": "dense", "units": 2}}]},
    }
    contents = {
        "metadata.json": json.dumps({"keras_version": "3.5.0"}).encode(),
        "config.json": json.dumps(config).encode(),
        "model.weights.h5": weights,
    } | members
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return path


LAYOUTS = {
    "legacy": lambda tmp, fill: _legacy(tmp / "m.h5", lambda g: fill(g, "kernel:0")),
    "weights.h5": lambda tmp, fill: _v3_weights(tmp / "m.weights.h5", lambda g: fill(g, "0")),
    "keras": lambda tmp, fill: _keras_archive(tmp / "m.keras", lambda g: fill(g, "0")),
}


def _external_link(tmp_path: Path) -> Callable[[h5py.Group, str], None]:
    target = str(_canary_h5(tmp_path))
    return lambda group, name: group.__setitem__(name, h5py.ExternalLink(target, "/x"))


def _external_storage(tmp_path: Path) -> Callable[[h5py.Group, str], None]:
    raw = str(_canary_raw(tmp_path))

    def fill(group: h5py.Group, name: str) -> None:
        group.create_dataset(
            name, shape=CANARY.shape, dtype="float32", external=[(raw, 0, h5py.h5f.UNLIMITED)]
        )

    return fill


def _virtual(tmp_path: Path) -> Callable[[h5py.Group, str], None]:
    source = str(_canary_h5(tmp_path))

    def fill(group: h5py.Group, name: str) -> None:
        layout = h5py.VirtualLayout(shape=CANARY.shape, dtype="float32")
        layout[:] = h5py.VirtualSource(source, "x", shape=CANARY.shape)
        group.create_virtual_dataset(name, layout)

    return fill


def _soft_link(tmp_path: Path) -> Callable[[h5py.Group, str], None]:
    def fill(group: h5py.Group, name: str) -> None:
        group["hidden"] = CANARY
        group[name] = h5py.SoftLink(f"{group.name}/hidden")

    return fill


ESCAPES = {
    "external-link": (_external_link, "external link"),
    "external-storage": (_external_storage, "external storage"),
    "virtual": (_virtual, "virtual dataset"),
    "soft-link": (_soft_link, "soft link"),
}


def _assert_no_canary(text: str) -> None:
    for value in ("1234.5", "8765.4", "4242.4"):
        assert value not in text


# --- confidentiality -------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("escape", ESCAPES)
def test_links_and_foreign_storage_are_refused(tmp_path: Path, layout: str, escape: str) -> None:
    make, words = ESCAPES[escape]
    path = LAYOUTS[layout](tmp_path, make(tmp_path))
    with pytest.raises(ConversionError, match=words) as info:
        read_keras_file(path)
    assert str(path) in str(info.value)
    _assert_no_canary(str(info.value))
    with pytest.raises(ConversionError, match=words):
        parity.load_keras(path)


def test_external_link_to_a_layer_group_is_refused(tmp_path: Path) -> None:
    canary = _canary_h5(tmp_path)
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as h5:
        weights = h5.create_group("model_weights")
        weights.attrs["layer_names"] = [b"dense"]
        weights["dense"] = h5py.ExternalLink(str(canary), "/")
    with pytest.raises(ConversionError, match="external link"):
        read_keras_file(path)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "parity", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("escape", ["external-link", "external-storage"])
def test_cli_refuses_without_traceback(tmp_path: Path, escape: str) -> None:
    make, words = ESCAPES[escape]
    path = LAYOUTS["legacy"](tmp_path, make(tmp_path))
    dst = tmp_path / "out.safetensors"
    for args in (("inspect", str(path)), ("convert", str(path), str(dst))):
        result = _run_cli(*args)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("parity: error: "), result.stderr
        assert words in lines[0] and "Traceback" not in result.stderr
        _assert_no_canary(result.stdout + result.stderr)
    assert not dst.exists()


# --- malformed structure ---------------------------------------------------------------------


def _plain(group: h5py.Group, name: str) -> None:
    group[name] = np.ones((2, 2), dtype="float32")


def test_plain_files_still_read(tmp_path: Path) -> None:
    for layout, make in LAYOUTS.items():
        kfile = read_keras_file(make(tmp_path, _plain))
        assert [w.array.sum() for layer in kfile.layers for w in layer.weights] == [4.0], layout


@pytest.mark.parametrize(
    "names, words",
    [
        (b"dense", "not a list of names"),
        (np.array([1, 2]), "not a list of names"),
        (np.array([[b"dense"]]), "not a list of names"),
        ([b"missing"], "listed but has no group"),
        ([b"../dense"], "invalid HDF5 member name|listed but has no group"),
    ],
)
def test_odd_layer_names_are_refused(tmp_path: Path, names: object, words: str) -> None:
    path = _legacy(tmp_path / "m.h5", lambda g: _plain(g, "kernel:0"), names=names)
    with pytest.raises(ConversionError, match=words):
        read_keras_file(path)


@pytest.mark.parametrize(
    "dtype", ["complex64", "longdouble", "S4", [("a", "f4"), ("b", "f4")], h5py.string_dtype()]
)
def test_odd_dtypes_are_refused(tmp_path: Path, dtype: object) -> None:
    def fill(group: h5py.Group, name: str) -> None:
        group.create_dataset(name, shape=(2,), dtype=dtype)

    with pytest.raises(ConversionError, match="dtype"):
        read_keras_file(LAYOUTS["legacy"](tmp_path, fill))


def test_big_endian_weights_become_native(tmp_path: Path) -> None:
    def fill(group: h5py.Group, name: str) -> None:
        group.create_dataset(name, data=CANARY.astype(">f4"))

    kfile = read_keras_file(LAYOUTS["weights.h5"](tmp_path, fill))
    array = kfile.layers[0].weights[0].array
    assert array.dtype.isnative and np.array_equal(array, CANARY)


def test_corrupt_hdf5_is_one_conversion_error(tmp_path: Path) -> None:
    good = LAYOUTS["legacy"](tmp_path, _plain).read_bytes()
    for cut in (len(good) // 3, len(good) // 2, len(good) - 10):
        path = tmp_path / f"cut{cut}.h5"
        path.write_bytes(good[:cut])
        with pytest.raises(ConversionError, match=re.escape(str(path))):
            read_keras_file(path)
    scrambled = bytearray(good)
    for offset in range(200, len(scrambled) - 64, 97):
        scrambled[offset] ^= 0x5A
    path = tmp_path / "scrambled.h5"
    path.write_bytes(bytes(scrambled))
    try:
        read_keras_file(path)
    except ConversionError:
        pass


def test_hard_link_cycle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as h5:
        vars_group = h5.create_group("layers/dense/vars")
        vars_group["0"] = np.ones(2, dtype="float32")
        vars_group["loop"] = h5["layers/dense"]
    with pytest.raises(ConversionError, match=r"already read|nested too deeply"):
        read_keras_file(path)


# --- zip archives ----------------------------------------------------------------------------


def _archive_bytes(tmp_path: Path) -> bytes:
    return LAYOUTS["keras"](tmp_path, _plain).read_bytes()


def test_zip_oddities_are_refused(tmp_path: Path) -> None:
    data = _archive_bytes(tmp_path)
    cases = {
        "truncated": data[: len(data) // 2],
        "no-central-directory": data[:-22],
        "garbage": b"PK\x03\x04" + b"\x00" * 64,
    }
    # A central directory pointing past a truncated local header (struct.error in a naive reader).
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        offset = archive.getinfo("model.weights.h5").header_offset
    broken = bytearray(data)
    broken[offset : offset + 4] = b"XXXX"
    cases["bad-local-header"] = bytes(broken)
    for name, content in cases.items():
        path = tmp_path / f"{name}.keras"
        path.write_bytes(content)
        with pytest.raises(ConversionError, match=re.escape(str(path))):
            read_keras_file(path)


def test_encrypted_and_unusual_members_are_refused(tmp_path: Path) -> None:
    data = _archive_bytes(tmp_path)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    encrypted = bytearray(data)  # set the encryption flag in every central directory entry
    central = data.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack("<I", data[central + 16 : central + 20])[0]
    position = cd_offset
    while data[position : position + 4] == b"PK\x01\x02":
        flags = struct.unpack("<H", data[position + 8 : position + 10])[0]
        encrypted[position + 8 : position + 10] = struct.pack("<H", flags | 1)
        name_len, extra_len, comment_len = struct.unpack(
            "<HHH", data[position + 28 : position + 34]
        )
        position += 46 + name_len + extra_len + comment_len
    path = tmp_path / "encrypted.keras"
    path.write_bytes(bytes(encrypted))
    with pytest.raises(ConversionError, match="encrypted"):
        read_keras_file(path)
    path = tmp_path / "bzip2.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as archive:
        for name in infos:
            archive.writestr(name, zipfile.ZipFile(io.BytesIO(data)).read(name))
    with pytest.raises(ConversionError, match="compression method"):
        read_keras_file(path)


# --- memory ----------------------------------------------------------------------------------


def test_compressed_huge_dataset_is_refused_before_allocation(tmp_path: Path) -> None:
    def fill(group: h5py.Group, name: str) -> None:
        group.create_dataset(
            name, shape=(65536, 65536), dtype="float32", chunks=(1024, 1024), compression="gzip"
        )

    for layout in LAYOUTS:
        path = LAYOUTS[layout](tmp_path, fill)
        assert path.stat().st_size < 2**20
        with pytest.raises(ConversionError, match=r"budget|more than"):
            read_keras_file(path)


def test_decompression_bomb_under_the_budget_is_refused(tmp_path: Path) -> None:
    """64 MiB declared, nothing stored: within the budget, but no trained weights expand so."""

    def fill(group: h5py.Group, name: str) -> None:
        group.create_dataset(
            name, shape=(4096, 4096), dtype="float32", chunks=(512, 512), compression="gzip"
        )

    for layout in LAYOUTS:
        path = LAYOUTS[layout](tmp_path, fill)
        with pytest.raises(ConversionError, match="decompression bomb"):
            read_keras_file(path)


def test_compressed_archive_member_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b" " * (64 * 2**20))  # 64 MiB of spaces deflates ~1000x
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(ConversionError, match="decompression bomb"):
        read_keras_file(path)


def test_huge_name_list_is_refused(tmp_path: Path) -> None:
    names = np.array([b"x"] * 200_000)
    path = _legacy(tmp_path / "m.h5", lambda g: _plain(g, "kernel:0"), names=names)
    with pytest.raises(ConversionError, match="too large"):
        read_keras_file(path)


def test_oversized_json_member_is_refused(tmp_path: Path) -> None:
    config = b'{"class_name": "Sequential", "pad": "' + b" " * (17 * 2**20) + b'"}'
    path = _keras_archive(tmp_path / "m.keras", lambda g: _plain(g, "0"), **{"config.json": config})
    with pytest.raises(ConversionError, match=r"config\.json"):
        read_keras_file(path)


# --- JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deep_json_is_refused(tmp_path: Path, depth: int) -> None:
    deep = "[" * depth + "]" * depth
    with pytest.raises(ConversionError, match=r"where|nested"):
        load_json(deep, "where")
    config = ('{"class_name": "Sequential", "config": ' + deep + "}").encode()
    path = _keras_archive(tmp_path / "m.keras", lambda g: _plain(g, "0"), **{"config.json": config})
    with pytest.raises(ConversionError, match="nested"):
        read_keras_file(path)
    json_path = tmp_path / "config.json"
    json_path.write_bytes(config)
    with pytest.raises(ConversionError, match="nested"):
        read_model_config(json_path)


def test_model_config_attribute_is_checked(tmp_path: Path) -> None:
    path = _legacy(tmp_path / "m.h5", lambda g: _plain(g, "kernel:0"))
    with h5py.File(path, "a") as h5:
        h5.attrs["model_config"] = "[" * 5000 + "]" * 5000
    with pytest.raises(ConversionError, match=r"model_config.*nested"):
        read_keras_file(path)
    with h5py.File(path, "a") as h5:
        h5.attrs["model_config"] = np.arange(3)
    with pytest.raises(ConversionError, match="not text"):
        read_keras_file(path)


# --- the C library's crashes and hangs stay in the isolated child ------------------------------


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _hang() -> None:
    while True:
        time.sleep(0.01)


def _grab_memory() -> None:
    blocks = []
    while True:
        blocks.append(bytearray(2**28))


@pytest.mark.parametrize(
    ("walk", "why"),
    [(_crash, "crashed (SIGSEGV)"), (_hang, "took longer than 1 s"), (_grab_memory, "memory")],
)
def test_a_crashing_or_hanging_walk_is_one_conversion_error(
    walk: Any, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parity.keras import isolate

    monkeypatch.setattr(isolate, "ISOLATED_READ_SECONDS", 1)
    monkeypatch.setattr(isolate, "ISOLATED_READ_EXTRA_BYTES", 2**27)  # below one 2**28 block
    path = tmp_path / "m.h5"
    with pytest.raises(ConversionError, match=re.escape(why)) as info:
        isolate.walk_isolated(path, walk)
    assert str(info.value).startswith(str(path))


def test_the_walk_reads_no_weight_data_and_passes_its_errors_on(tmp_path: Path) -> None:
    from parity.keras import isolate

    def refuse() -> None:
        assert isolate.STRUCTURE_ONLY  # set in the child only
        raise ConversionError(f"{tmp_path}: refused in the child")

    with pytest.raises(ConversionError, match="refused in the child"):
        isolate.walk_isolated(tmp_path, refuse)
    assert not isolate.STRUCTURE_ONLY
    isolate.walk_isolated(tmp_path, lambda: None)  # a clean walk lets the parent read


def test_a_mutant_that_hangs_hdf5_is_one_conversion_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saved fuzz mutant (zeroed bytes in embedding_dense.h5) on which h5py's attribute read
    never returns: the isolated walk's deadline turns it into a refusal."""
    from parity.keras import isolate
    from tests.test_fuzz_files import mutate

    monkeypatch.setattr(isolate, "ISOLATED_READ_SECONDS", 2)
    path = tmp_path / "hang.h5"
    path.write_bytes(mutate("embedding_dense.h5", 100)[0])
    with pytest.raises(ConversionError, match="took longer than 2 s"):
        parity.load_keras(path)
