"""Read a Keras file into named arrays, in Keras' saved order, with its config and version.

Formats (detected from the bytes, never from the file name):

- Keras 3 ``.keras``: a zip of metadata.json, config.json and model.weights.h5. Read in memory,
  never extracted to disk.
- Keras 3 ``.weights.h5``: groups ``layers/<auto name>/.../vars/<i>`` where the auto name is
  derived from the class (bidirectional, bidirectional_1, ...); recent Keras 3 writes the user's
  layer name as the ``name`` attribute of each ``vars`` group.
- legacy HDF5 (Keras 1/2, tf.keras, Keras 3's legacy writer), full model or ``save_weights``:
  ``layer_names`` / ``weight_names`` attributes give the order (h5py lists datasets
  alphabetically, so that order is never used).

Nothing here knows about torch or about any model: mapping is parity.convert.mapping's job.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np

from parity.conventions import (
    KERAS_V3_CONFIG,
    KERAS_V3_METADATA,
    KERAS_V3_WEIGHTS,
    MAX_WEIGHT_BYTES,
)
from parity.errors import ConversionError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"

#: File formats, as reported by `parity inspect` and KerasFile.format.
FORMAT_KERAS_V3 = "keras"  # .keras zip
FORMAT_KERAS_V3_WEIGHTS = "weights.h5"  # Keras 3 save_weights
FORMAT_LEGACY_MODEL = "legacy-h5-model"  # model.save("x.h5"), any Keras
FORMAT_LEGACY_WEIGHTS = "legacy-h5-weights"  # save_weights("x.h5"), Keras 1/2/tf.keras

#: The groups holding an optimizer's variables: Keras 3 weight files, legacy full-model files.
KERAS_V3_OPTIMIZER = "optimizer"
LEGACY_OPTIMIZER = "optimizer_weights"
#: Top-level groups of Keras 3 weight files that hold training state, not model weights.
#: They are recognised and left out on purpose.
KERAS_V3_TRAINING_STATE = (KERAS_V3_OPTIMIZER, "metrics")
#: Legacy HDF5 groups left out on purpose (tf.keras / Keras 3 legacy full-model files).
LEGACY_TRAINING_STATE = (LEGACY_OPTIMIZER,)

#: Order of sub-objects inside a Keras 3 layer group. Keras saves a layer's own variables under
#: vars/, then tracked sub-layers by attribute name; h5py lists them alphabetically, which would
#: put backward_layer before forward_layer. Unlisted names sort after these, alphabetically.
KERAS_V3_SUBGROUP_ORDER = ("vars", "cell", "layer", "forward_layer", "backward_layer")

#: Keras 3 model classes whose config lists the model's layers.
MODEL_CLASSES = ("Functional", "Sequential", "Model")


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


def read_keras_file(
    path: str | Path, *, model_config: dict[str, Any] | None = None, training_state: bool = False
) -> KerasFile:
    """Read any supported Keras file; ConversionError for anything that is not one.

    ``model_config`` describes a weights-only file (Keras 3 .weights.h5, legacy save_weights)
    whose architecture is known from elsewhere (see read_model_config); a file with its own config
    keeps it. ``training_state`` also reads the optimizer's variables and config (conversion
    leaves them out, so they are not read unless asked for).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ConversionError(f"{path}: is a directory, not a Keras file")
    with path.open("rb") as handle:
        head = handle.read(8)
    if not head:
        raise ConversionError(f"{path}: empty file")
    readers = {HDF5_SIGNATURE: _read_hdf5, ZIP_SIGNATURE: _read_keras_v3}
    for signature, reader in readers.items():
        if head.startswith(signature):
            try:
                return reader(path, model_config, training_state)
            except ConversionError:
                raise
            except (OSError, KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
                raise ConversionError(f"{path}: unreadable or truncated file ({exc})") from exc
    raise ConversionError(f"{path}: not a Keras file (neither HDF5 nor a .keras zip archive)")


# --- legacy and Keras 3 HDF5 ------------------------------------------------------------------


def _read_hdf5(
    path: Path, model_config: dict | None = None, training_state: bool = False
) -> KerasFile:
    with h5py.File(path, "r") as h5:
        return _read_h5_object(h5, path, model_config, training_state)


def _read_h5_object(
    h5: h5py.File, path: Path, model_config: dict | None = None, training_state: bool = False
) -> KerasFile:
    if "layer_names" in h5.attrs or "model_weights" in h5:
        return _read_legacy(h5, path, model_config, training_state)
    if "layers" in h5:
        kfile = _read_v3_weights(h5, path, model_config, None, training_state)
        kfile.format = FORMAT_KERAS_V3_WEIGHTS
        return kfile
    raise ConversionError(
        f"{path}: HDF5 file without Keras structure (no layer_names attribute, "
        "no model_weights or layers group)"
    )


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _legacy_config_layers(model_config: dict | None) -> dict[str, tuple[str, dict]]:
    """Layer name -> (class name, config) from a legacy model_config (Keras 1/2/3 shapes)."""
    if not model_config:
        return {}
    config = model_config.get("config", model_config)
    layers = config if isinstance(config, list) else config.get("layers", [])
    table: dict[str, tuple[str, dict]] = {}
    for entry in layers:
        layer_config = entry.get("config", {})
        name = entry.get("name") or layer_config.get("name")
        if name is not None:
            table[name] = (entry.get("class_name"), layer_config)
    return table


def _read_legacy(
    h5: h5py.File, path: Path, companion: dict | None = None, training_state: bool = False
) -> KerasFile:
    root = h5["model_weights"] if "model_weights" in h5 else h5
    if "layer_names" not in root.attrs:
        raise ConversionError(f"{path}: legacy HDF5 file without a layer_names attribute")
    model_config = companion
    if "model_config" in h5.attrs:
        model_config = json.loads(_text(h5.attrs["model_config"]))
    version = root.attrs.get("keras_version", h5.attrs.get("keras_version"))
    backend = root.attrs.get("backend", h5.attrs.get("backend"))
    classes = _legacy_config_layers(model_config)
    layers = []
    for raw_name in root.attrs["layer_names"]:
        name = _text(raw_name)
        if name not in root:
            raise ConversionError(f"{path}: layer {name!r} is listed but has no group")
        group = root[name]
        weights = []
        for raw_weight in group.attrs.get("weight_names", []):
            weight_name = _text(raw_weight)
            if weight_name not in group:
                raise ConversionError(
                    f"{path}: layer {name!r}: weight {weight_name!r} is listed but missing"
                )
            weights.append(
                KerasWeight(weight_name, read_dataset(group[weight_name], path, f"{name}/"))
            )
        class_name, layer_config = classes.get(name, (None, None))
        layers.append(KerasLayer(name, class_name, layer_config, weights))
    left_out = [group for group in LEGACY_TRAINING_STATE if group in h5]
    kfile = KerasFile(
        path=path,
        format=FORMAT_LEGACY_MODEL if "model_config" in h5.attrs else FORMAT_LEGACY_WEIGHTS,
        keras_version=_text(version) if version is not None else None,
        backend=_text(backend) if backend is not None else None,
        model_config=model_config,
        layers=layers,
        left_out=left_out,
    )
    if training_state:
        _read_legacy_optimizer(h5, path, kfile)
    return kfile


def _dict_or_none(config: Any, key: str) -> dict[str, Any] | None:
    """config[key] when both are JSON objects (configs are untrusted), else None."""
    value = config.get(key) if isinstance(config, dict) else None
    return value if isinstance(value, dict) else None


def _read_legacy_optimizer(h5: h5py.File, path: Path, kfile: KerasFile) -> None:
    """tf.keras / Keras 3 legacy full-model files: the training_config attribute's
    optimizer_config, and optimizer_weights in its weight_names order."""
    if "training_config" in h5.attrs:
        training = json.loads(_text(h5.attrs["training_config"]))
        kfile.optimizer_config = _dict_or_none(training, "optimizer_config")
    group = h5.get(LEGACY_OPTIMIZER)
    if group is None:
        return
    for raw in group.attrs.get("weight_names", []):
        name = _text(raw)
        if name not in group:
            raise ConversionError(f"{path}: optimizer weight {name!r} is listed but missing")
        kfile.optimizer_weights.append(
            KerasWeight(name, read_dataset(group[name], path, "optimizer/"))
        )


def read_dataset(dataset: h5py.Dataset, path: Path, where: str) -> np.ndarray:
    """One stored array, after checking that its declared size is sane and actually stored.

    An HDF5 dataset can declare any shape while storing nothing (unallocated space reads as the
    fill value), so a hostile or corrupt file could make a naive reader allocate terabytes. Keras
    never compresses weights: an unfiltered dataset must have all its bytes in the file.
    """
    nbytes = int(np.prod(dataset.shape, dtype=np.float64)) * dataset.dtype.itemsize
    name = f"{where}{dataset.name.rsplit('/', 1)[-1]}"
    if dataset.dtype.kind not in "fiub":
        raise ConversionError(f"{path}: weight {name!r} has dtype {dataset.dtype}, not numeric")
    if nbytes > MAX_WEIGHT_BYTES:
        raise ConversionError(
            f"{path}: weight {name!r} declares shape {dataset.shape} ({nbytes:,} bytes), more than "
            f"any Keras model weight ({MAX_WEIGHT_BYTES:,}); refusing to read it"
        )
    stored = dataset.id.get_storage_size()
    if not dataset.compression and stored < nbytes:
        raise ConversionError(
            f"{path}: weight {name!r} declares shape {dataset.shape} ({nbytes:,} bytes) but the "
            f"file stores {stored:,} bytes of it"
        )
    array = np.empty(dataset.shape, dtype=dataset.dtype)
    if array.size:
        dataset.read_direct(array)
    return array


def _subgroup_key(name: str) -> tuple[int, int, str]:
    order = KERAS_V3_SUBGROUP_ORDER
    rank = order.index(name) if name in order else len(order)
    return (rank, int(name) if name.isdigit() else -1, name)


def _v3_layer_weights(group: h5py.Group, path: Path, prefix: str = "") -> list[KerasWeight]:
    """Datasets of one Keras 3 layer group in Keras' order: own vars, then sub-objects."""
    weights = []
    for name in sorted(group.keys(), key=_subgroup_key):
        item = group[name]
        full = f"{prefix}{name}"
        if isinstance(item, h5py.Dataset):
            weights.append(KerasWeight(full, read_dataset(item, path, "")))
        else:
            weights.extend(_v3_layer_weights(item, path, full + "/"))
    return weights


def _v3_model_layers(model_config: dict | None) -> list[dict]:
    """The layer entries of a Keras 3 (or tf.keras v3-format) model config, ops excluded."""
    if not model_config:
        return []
    layers = model_config.get("config", {}).get("layers", [])
    # Keras 3 functional configs also list backend ops (NotEqual, ExpandDims...) created by
    # masking; they are operations, not layers, and have no weight group.
    return [
        entry for entry in layers if not str(entry.get("module", "")).startswith("keras.src.ops")
    ]


def _read_v3_weights(
    h5: h5py.File,
    path: Path,
    model_config: dict | None,
    version: str | None,
    training_state: bool = False,
) -> KerasFile:
    groups = h5["layers"]
    by_user_name: dict[str, str] = {}
    for auto_name in groups:
        vars_group = groups[auto_name].get("vars")
        if vars_group is not None and "name" in vars_group.attrs:
            by_user_name[_text(vars_group.attrs["name"])] = auto_name
    layers: list[KerasLayer] = []
    entries = _v3_model_layers(model_config)
    if entries:
        # Join the config (user names, in model order) with the weight groups: by the recorded
        # name when Keras wrote one, else by Keras' class-derived auto naming, in order.
        counts: dict[str, int] = {}
        for entry in entries:
            class_name = entry.get("class_name")
            layer_config = entry.get("config", {})
            name = entry.get("name") or layer_config.get("name")
            key = snake_case(class_name)
            auto = key if counts.get(key, 0) == 0 else f"{key}_{counts[key]}"
            counts[key] = counts.get(key, 0) + 1
            auto = by_user_name.get(name, auto)
            weights = _v3_layer_weights(groups[auto], path) if auto in groups else []
            layers.append(KerasLayer(name, class_name, layer_config, weights, auto_name=auto))
        known = {layer.auto_name for layer in layers}
        stray = [
            name for name in groups if name not in known and _v3_layer_weights(groups[name], path)
        ]
        if stray:
            raise ConversionError(
                f"{path}: weight groups {stray} match no layer of the model config"
            )
    else:
        for auto_name in groups:
            vars_group = groups[auto_name].get("vars")
            name = auto_name
            if vars_group is not None and "name" in vars_group.attrs:
                name = _text(vars_group.attrs["name"])
            weights = _v3_layer_weights(groups[auto_name], path)
            layers.append(KerasLayer(name, None, None, weights, auto_name=auto_name))
    left_out = [group for group in KERAS_V3_TRAINING_STATE if group in h5]
    kfile = KerasFile(
        path=path,
        format=FORMAT_KERAS_V3 if model_config is not None else FORMAT_KERAS_V3_WEIGHTS,
        keras_version=version,
        backend=None,
        model_config=model_config,
        layers=layers,
        left_out=left_out,
    )
    if training_state:
        compiled = _dict_or_none(model_config, "compile_config")
        kfile.optimizer_config = _dict_or_none(compiled, "optimizer")
        optimizer = h5.get(KERAS_V3_OPTIMIZER)
        if optimizer is not None:  # vars/0..n in index order (_v3_layer_weights sorts them)
            kfile.optimizer_weights = _v3_layer_weights(optimizer, path)
    return kfile


# --- Keras 3 .keras archive -------------------------------------------------------------------


class _StoredMember(io.RawIOBase):
    """A read-only, seekable view of an uncompressed zip member inside the archive file, so h5py
    reads the weights straight from disk: no copy of the member in memory, nothing extracted."""

    def __init__(self, handle: BinaryIO, start: int, size: int) -> None:
        super().__init__()
        self._handle, self._start, self._size, self._pos = handle, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._size - self._pos))
        self._handle.seek(self._start + self._pos)
        read = self._handle.readinto(view[:count]) or 0
        self._pos += read
        return read


#: Zip local file header: signature, then fixed fields; name and extra lengths at bytes 26-29.
ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")


def _member_data_offset(handle: BinaryIO, info: zipfile.ZipInfo) -> int:
    handle.seek(info.header_offset)
    signature, name_length, extra_length = ZIP_LOCAL_HEADER.unpack(
        handle.read(ZIP_LOCAL_HEADER.size)
    )
    if signature != ZIP_SIGNATURE:
        raise ConversionError(f"bad zip local header for {info.filename}")
    return info.header_offset + ZIP_LOCAL_HEADER.size + name_length + extra_length


def _read_keras_v3(
    path: Path, companion: dict | None = None, training_state: bool = False
) -> KerasFile:
    with path.open("rb") as handle, zipfile.ZipFile(handle) as archive:
        names = set(archive.namelist())
        missing = [n for n in (KERAS_V3_CONFIG, KERAS_V3_WEIGHTS) if n not in names]
        if missing:
            raise ConversionError(f"{path}: .keras archive without {', '.join(missing)}")
        model_config = json.loads(archive.read(KERAS_V3_CONFIG))
        metadata = {}
        if KERAS_V3_METADATA in names:
            metadata = json.loads(archive.read(KERAS_V3_METADATA))
        if not isinstance(model_config, dict):
            raise ConversionError(f"{path}: {KERAS_V3_CONFIG} is not a model config")
        info = archive.getinfo(KERAS_V3_WEIGHTS)
        if info.compress_type == zipfile.ZIP_STORED:  # what Keras writes
            start = _member_data_offset(handle, info)
            if start + info.file_size > path.stat().st_size:
                raise ConversionError(f"{path}: {KERAS_V3_WEIGHTS} is truncated")
            source: Any = _StoredMember(handle, start, info.file_size)
        else:  # a re-zipped (compressed) archive: decompress the member in memory
            source = io.BytesIO(archive.read(KERAS_V3_WEIGHTS))
        with h5py.File(source, "r") as h5:
            if "layers" not in h5:
                raise ConversionError(f"{path}: {KERAS_V3_WEIGHTS} has no layers group")
            kfile = _read_v3_weights(
                h5, path, model_config, metadata.get("keras_version"), training_state
            )
    kfile.backend = metadata.get("backend")
    return kfile


def read_model_config(path: str | Path) -> dict[str, Any]:
    """Only the model config of a Keras file: a .keras archive's config.json, a legacy full-model
    HDF5's model_config attribute, or a JSON file holding one (model.to_json()). Weights are not
    read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(8)
    try:
        if head.startswith(ZIP_SIGNATURE):
            with zipfile.ZipFile(path) as archive:
                if KERAS_V3_CONFIG not in archive.namelist():
                    raise ConversionError(f"{path}: .keras archive without {KERAS_V3_CONFIG}")
                config = json.loads(archive.read(KERAS_V3_CONFIG))
        elif head.startswith(HDF5_SIGNATURE):
            with h5py.File(path, "r") as h5:
                if "model_config" not in h5.attrs:
                    raise ConversionError(f"{path}: HDF5 file without a model config")
                config = json.loads(_text(h5.attrs["model_config"]))
        else:
            config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ConversionError):
            raise
        raise ConversionError(f"{path}: no readable model config ({exc})") from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConversionError(f"{path}: not a Keras model config")
    return config
