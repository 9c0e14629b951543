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
- TensorFlow SavedModel directories and checkpoints (from the directory layout and the index's
  magic number): parity.keras.tf_checkpoint, which returns the same KerasFile.

Nothing here knows about torch or about any model: mapping is parity.convert.mapping's job.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np

from parity.conventions import (
    COMPRESSION_CHECK_FROM_BYTES,
    KERAS_V3_ASSETS,
    KERAS_V3_CONFIG,
    KERAS_V3_METADATA,
    KERAS_V3_WEIGHTS,
    MAX_ASSET_BYTES,
    MAX_ASSET_FILES,
    MAX_COMPRESSION_RATIO,
    MAX_FILE_WEIGHT_BYTES,
    MAX_GROUP_DEPTH,
    MAX_HDF5_OBJECTS,
    MAX_JSON_BYTES,
    MAX_LAYER_GROUP_MEMBERS,
    MAX_NAME_LIST_LENGTH,
    MAX_WEIGHT_BYTES,
    MAX_ZIP_MEMBER_BYTES,
)
from parity.errors import ConversionError
from parity.files import open_regular
from parity.keras import isolate, tf_checkpoint
from parity.keras.limits import load_json
from parity.keras.model_file import (  # the file types, here for the old import paths too
    FORMAT_KERAS_V3,
    FORMAT_KERAS_V3_WEIGHTS,
    FORMAT_LEGACY_MODEL,
    FORMAT_LEGACY_WEIGHTS,
    KerasFile,
    KerasLayer,
    KerasWeight,
    snake_case,
)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"


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
#: MultiHeadAttention's projections come in Keras' order (query, key, value, output), as Keras 3
#: and tf.keras (with a leading "_") name them.
KERAS_V3_SUBGROUP_ORDER = (
    *("vars", "cell", "layer", "forward_layer", "backward_layer"),
    *("query_dense", "key_dense", "value_dense", "output_dense"),
    *("_query_dense", "_key_dense", "_value_dense", "_output_dense"),
)

#: Keras 3 model classes whose config lists the model's layers.
MODEL_CLASSES = ("Functional", "Sequential", "Model")


def subclassed_model(model_config: Any) -> str | None:
    """Why a model config that lists no layers belongs to a subclassed model (None when it does
    not look like one): such a model's architecture is the Python code of its class' call(),
    which Keras never saves, so no config can rebuild it."""
    if not isinstance(model_config, dict):
        return None
    cls = model_config.get("class_name")
    config = model_config.get("config")
    if not isinstance(cls, str) or cls in MODEL_CLASSES or isinstance(config, list):
        return None
    if isinstance(config, dict) and isinstance(config.get("layers"), list):
        return None
    module = model_config.get("module") or model_config.get("registered_name")
    where = f" ({_safe_name(str(module))})" if module else ""
    return (
        f"the model is a subclassed Keras model, class {_safe_name(cls)!r}{where}: its "
        "architecture is code (the class' call()), not config, so the file lists no layers to "
        "rebuild. Rebuild it in Keras as a functional or Sequential model, copy the weights "
        "over (rebuilt.set_weights(model.get_weights())) and save that; or give the rebuilt "
        "model's config with --config (config= in Python) where this file stores its weights "
        "under the rebuilt model's layer names; or convert the class with a plug-in "
        "(parity.plugins.register_layer, see the README's 'Custom layers')"
    )


#: Longest class or module name quoted back in a message (names come from the file).
MAX_QUOTED_NAME = 80


def _safe_name(name: str) -> str:
    """A name from the file, printable and bounded, for an error message."""
    text = "".join(ch if ch.isprintable() else "?" for ch in name)
    return text if len(text) <= MAX_QUOTED_NAME else text[: MAX_QUOTED_NAME - 3] + "..."


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
    source = tf_checkpoint.locate(path)  # SavedModel dir, checkpoint prefix/.index/directory
    if source is not None:
        with _as_conversion_error(path, "unreadable or malformed TensorFlow checkpoint"):
            return tf_checkpoint.read_tf(source, path, model_config, training_state)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ConversionError(
            f"{path}: is a directory, not a Keras file (nor a SavedModel or TF checkpoint)"
        )
    with open_regular(path, "Keras file") as handle:
        head = handle.read(8)
    if not head:
        raise ConversionError(f"{path}: empty file")
    readers = {HDF5_SIGNATURE: _read_hdf5, ZIP_SIGNATURE: _read_keras_v3}
    for signature, reader in readers.items():
        if head.startswith(signature):

            def read(reader: Callable[..., KerasFile] = reader) -> KerasFile:
                with _as_conversion_error(path, "unreadable or malformed file"):
                    return reader(path, model_config, training_state)

            isolate.walk_isolated(path, read)  # the C library's crashes and hangs stay there
            return read()
    raise ConversionError(f"{path}: not a Keras file (neither HDF5 nor a .keras zip archive)")


#: What h5py, zipfile, zlib, struct and json raise on a malformed file; each becomes one
#: ConversionError. AttributeError and IndexError are here too: configs are untrusted JSON, and a
#: shape the checks below did not foresee must still fail as a bad file, not as a crash.
_FILE_ERRORS = (
    OSError,
    KeyError,
    ValueError,
    TypeError,
    RuntimeError,  # h5py: "bad symbol table node signature", encrypted zip members
    EOFError,
    NotImplementedError,  # zipfile: unsupported compression
    AttributeError,
    IndexError,
    MemoryError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
)


@contextlib.contextmanager
def _as_conversion_error(path: Path, what: str) -> Iterator[None]:
    try:
        yield
    except ConversionError:
        raise
    except _FILE_ERRORS as exc:
        cause = str(exc) or type(exc).__name__
        raise ConversionError(f"{path}: {what} ({type(exc).__name__}: {cause})") from exc


# --- safe HDF5 access ---------------------------------------------------------------------------


@dataclass
class _Budget:
    """Bytes the weights of one file may still take (MAX_FILE_WEIGHT_BYTES in all)."""

    path: Path
    left: int = MAX_FILE_WEIGHT_BYTES

    def take(self, nbytes: int, name: str) -> None:
        if nbytes > self.left:
            raise ConversionError(
                f"{self.path}: weight {name!r} ({nbytes:,} bytes) exceeds the file's weight budget "
                f"({MAX_FILE_WEIGHT_BYTES:,} bytes in all); refusing to read it"
            )
        self.left -= nbytes


def _member(group: h5py.Group, name: str, path: Path, where: str = "") -> Any:
    """group's member ``name`` (one path component), or None; only hard links are followed.

    Soft and external links are refused by name without resolving them: an external link would
    open another file, whose numbers would then pass for this model's weights.
    """
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ConversionError(f"{path}: invalid HDF5 member name {where}{name!r}")
    key = name.encode("utf8")
    if not group.id.links.exists(key):
        return None
    kind = group.id.links.get_info(key).type
    if kind != h5py.h5l.TYPE_HARD:
        target = group.id.links.get_val(key)
        if kind == h5py.h5l.TYPE_EXTERNAL:
            target = ":".join(_text(part) for part in target)
        raise ConversionError(
            f"{path}: {where}{name} is {_LINK_KINDS.get(kind, 'a user-defined link')} to "
            f"{_text(target)!r}; only hard links are read (a link is never followed)"
        )
    return group[name]


_LINK_KINDS = {h5py.h5l.TYPE_SOFT: "a soft link", h5py.h5l.TYPE_EXTERNAL: "an external link"}


def _resolve(group: h5py.Group, relpath: str, path: Path, where: str = "") -> Any:
    """A slash-separated path below ``group``, one hard link at a time; None if absent."""
    parts = relpath.split("/")
    if len(parts) > MAX_GROUP_DEPTH:
        raise ConversionError(f"{path}: HDF5 path {where}{relpath!r} is nested too deeply")
    item: Any = group
    for depth, part in enumerate(parts):
        if not isinstance(item, h5py.Group):
            return None
        item = _member(item, part, path, where + "/".join(parts[:depth]) + ("/" if depth else ""))
        if item is None:
            return None
    return item


def _group_names(group: h5py.Group, path: Path) -> list[str]:
    """Member names of a group (links are listed, not resolved), after bounding their count."""
    count = group.id.get_num_objs()
    if count > MAX_HDF5_OBJECTS:
        raise ConversionError(f"{path}: group {group.name!r} has {count:,} members")
    return list(group.keys())


def _attr(attrs: h5py.AttributeManager, key: str, path: Path, where: str) -> Any:
    """An attribute's value, or None; its size is checked from its dataspace before reading."""
    if key not in attrs:
        return None
    attr_id = attrs.get_id(key)
    shape = attr_id.shape
    count = math.prod(shape) if shape else (0 if shape is None else 1)
    if count > MAX_NAME_LIST_LENGTH or count * attr_id.dtype.itemsize > MAX_JSON_BYTES:
        raise ConversionError(
            f"{path}: attribute {where}{key} declares {count:,} items of {attr_id.dtype}; "
            "too large for a Keras file"
        )
    value = attrs[key]
    return None if isinstance(value, h5py.Empty) else value


def _attr_text(attrs: h5py.AttributeManager, key: str, path: Path, where: str) -> str | None:
    """A text attribute (keras_version, model_config, ...), or None; anything else is refused."""
    value = _attr(attrs, key, path, where)
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if not isinstance(value, (str, bytes)):
        raise ConversionError(
            f"{path}: attribute {where}{key} is not text ({type(value).__name__})"
        )
    return _text(value)


def _attr_json(attrs: h5py.AttributeManager, key: str, path: Path, where: str) -> Any:
    text = _attr_text(attrs, key, path, where)
    return None if text is None else load_json(text, f"{path}: attribute {where}{key}")


def _name_list(attrs: h5py.AttributeManager, key: str, path: Path, where: str) -> list[str]:
    """layer_names / weight_names: a 1-D list of strings, at most MAX_NAME_LIST_LENGTH long."""
    value = _attr(attrs, key, path, where)
    if value is None or (isinstance(value, np.ndarray) and value.shape == (0,)):
        return []  # Keras writes a layer without weights as an empty (float) array
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "SUO":
        raise ConversionError(
            f"{path}: attribute {where}{key} is not a list of names "
            f"({getattr(value, 'shape', type(value).__name__)})"
        )
    names = []
    for item in value:
        if not isinstance(item, (str, bytes)):
            raise ConversionError(f"{path}: attribute {where}{key} holds a non-string name")
        names.append(_text(item))
    return names


#: Dataset dtypes a Keras weight can have: float16/32/64, (unsigned) integers, bool. Anything
#: else (long double, complex, compound, strings, references) is not a Keras weight.
_WEIGHT_KINDS = {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "b": (1,)}


def read_dataset(
    dataset: h5py.Dataset, path: Path, where: str, budget: _Budget | None = None
) -> np.ndarray:
    """One stored array, after checking where it is stored, its dtype and its declared size.

    An HDF5 dataset can keep its bytes in another file (external storage, virtual layout): both
    are refused before any read. It can also declare any shape while storing nothing
    (unallocated space reads as the fill value) or compress a huge shape into a few bytes, so
    the declared size is checked against MAX_WEIGHT_BYTES and the file's budget before anything
    is allocated. Big-endian arrays are converted to native order.
    """
    name = f"{where}{dataset.name.rsplit('/', 1)[-1]}"
    dcpl = dataset.id.get_create_plist()
    if dcpl.get_external_count() > 0:
        raise ConversionError(
            f"{path}: weight {name!r} keeps its data in external storage "
            f"({_text(dcpl.get_external(0)[0])!r}); refusing to read another file"
        )
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        raise ConversionError(
            f"{path}: weight {name!r} is a virtual dataset (data mapped from other datasets "
            "or files); refusing to read it"
        )
    dtype = dataset.dtype
    if dtype.itemsize not in _WEIGHT_KINDS.get(dtype.kind, ()):
        raise ConversionError(f"{path}: weight {name!r} has dtype {dtype}, not a Keras weight type")
    shape = dataset.shape
    if shape is None:
        raise ConversionError(f"{path}: weight {name!r} has no dataspace")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_WEIGHT_BYTES:
        raise ConversionError(
            f"{path}: weight {name!r} declares shape {shape} ({nbytes:,} bytes), more than "
            f"any Keras model weight ({MAX_WEIGHT_BYTES:,}); refusing to read it"
        )
    (budget or _Budget(path)).take(nbytes, name)
    stored = dataset.id.get_storage_size()
    _check_expansion(path, f"weight {name!r}", nbytes, stored, compressed=dcpl.get_nfilters() > 0)
    if dcpl.get_nfilters() == 0 and stored < nbytes:
        raise ConversionError(
            f"{path}: weight {name!r} declares shape {shape} ({nbytes:,} bytes) but the "
            f"file stores {stored:,} bytes of it"
        )
    if isolate.STRUCTURE_ONLY:  # the isolated walk: checked, not read (no memory taken)
        return np.broadcast_to(np.zeros((), dtype=dtype.newbyteorder("=")), shape)
    # HDF5 converts to the memory type, so a big-endian file reads into a native array.
    array = np.empty(shape, dtype=dtype.newbyteorder("="))
    if array.size:
        dataset.read_direct(array)
    return array


# --- legacy and Keras 3 HDF5 ------------------------------------------------------------------


def _read_hdf5(
    path: Path, model_config: dict | None = None, training_state: bool = False
) -> KerasFile:
    with h5py.File(path, "r") as h5:
        return _read_h5_object(h5, path, model_config, training_state)


def _read_h5_object(
    h5: h5py.File, path: Path, model_config: dict | None = None, training_state: bool = False
) -> KerasFile:
    if "layer_names" in h5.attrs or h5.id.links.exists(b"model_weights"):
        return _read_legacy(h5, path, model_config, training_state)
    if h5.id.links.exists(b"layers"):
        kfile = _read_v3_weights(h5, path, model_config, None, training_state)
        kfile.format = FORMAT_KERAS_V3_WEIGHTS
        return kfile
    raise ConversionError(
        f"{path}: HDF5 file without Keras structure (no layer_names attribute, "
        "no model_weights or layers group)"
    )


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _legacy_config_layers(model_config: Any) -> dict[str, tuple[str | None, dict | None]]:
    """Layer name -> (class name, config) from a legacy model_config (Keras 1/2/3 shapes)."""
    if not isinstance(model_config, dict):
        return {}
    config = model_config.get("config", model_config)
    layers = config if isinstance(config, list) else _dict_or_empty(config).get("layers", [])
    table: dict[str, tuple[str | None, dict | None]] = {}
    for entry in layers if isinstance(layers, list) else []:
        if not isinstance(entry, dict):
            continue
        layer_config = _dict_or_none(entry, "config")
        name = entry.get("name") or _dict_or_empty(layer_config).get("name")
        if isinstance(name, str):
            table[name] = (_str_or_none(entry.get("class_name")), layer_config)
    return table


def _dict_or_empty(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _group(item: Any, path: Path, where: str) -> h5py.Group:
    if not isinstance(item, h5py.Group):
        raise ConversionError(f"{path}: {where} is not an HDF5 group")
    return item


def _read_legacy(
    h5: h5py.File, path: Path, companion: dict | None = None, training_state: bool = False
) -> KerasFile:
    weights_group = _member(h5, "model_weights", path)
    root = h5 if weights_group is None else _group(weights_group, path, "model_weights")
    where = "" if weights_group is None else "model_weights/"
    if "layer_names" not in root.attrs:
        raise ConversionError(f"{path}: legacy HDF5 file without a layer_names attribute")
    model_config = companion
    has_config = "model_config" in h5.attrs
    if has_config:
        model_config = _attr_json(h5.attrs, "model_config", path, "/")
    version = _attr_text(root.attrs, "keras_version", path, where)
    if version is None:
        version = _attr_text(h5.attrs, "keras_version", path, "/")
    backend = _attr_text(root.attrs, "backend", path, where)
    if backend is None:
        backend = _attr_text(h5.attrs, "backend", path, "/")
    classes = _legacy_config_layers(model_config)
    budget = _Budget(path)
    layers = []
    for name in _name_list(root.attrs, "layer_names", path, where):
        group = _member(root, name, path, where)
        if group is None:
            raise ConversionError(f"{path}: layer {name!r} is listed but has no group")
        group = _group(group, path, f"layer {name!r}")
        weights = []
        for weight_name in _name_list(group.attrs, "weight_names", path, f"{where}{name}/"):
            item = _resolve(group, weight_name, path, f"{where}{name}/")
            if not isinstance(item, h5py.Dataset):
                raise ConversionError(
                    f"{path}: layer {name!r}: weight {weight_name!r} is listed but missing"
                )
            weights.append(KerasWeight(weight_name, read_dataset(item, path, f"{name}/", budget)))
        class_name, layer_config = classes.get(name, (None, None))
        layers.append(KerasLayer(name, class_name, layer_config, weights))
    left_out = [group for group in LEGACY_TRAINING_STATE if h5.id.links.exists(group.encode())]
    kfile = KerasFile(
        path=path,
        format=FORMAT_LEGACY_MODEL if has_config else FORMAT_LEGACY_WEIGHTS,
        keras_version=version,
        backend=backend,
        model_config=model_config if isinstance(model_config, dict) else None,
        layers=layers,
        left_out=left_out,
    )
    if training_state:
        _read_legacy_optimizer(h5, path, kfile, budget)
    return kfile


def _dict_or_none(config: Any, key: str) -> dict[str, Any] | None:
    """config[key] when both are JSON objects (configs are untrusted), else None."""
    value = config.get(key) if isinstance(config, dict) else None
    return value if isinstance(value, dict) else None


def _read_legacy_optimizer(h5: h5py.File, path: Path, kfile: KerasFile, budget: _Budget) -> None:
    """tf.keras / Keras 3 legacy full-model files: the training_config attribute's
    optimizer_config, and optimizer_weights in its weight_names order."""
    training = _attr_json(h5.attrs, "training_config", path, "/")
    kfile.optimizer_config = _dict_or_none(training, "optimizer_config")
    group = _member(h5, LEGACY_OPTIMIZER, path)
    if group is None:
        return
    group = _group(group, path, LEGACY_OPTIMIZER)
    for name in _name_list(group.attrs, "weight_names", path, f"{LEGACY_OPTIMIZER}/"):
        item = _resolve(group, name, path, f"{LEGACY_OPTIMIZER}/")
        if not isinstance(item, h5py.Dataset):
            raise ConversionError(f"{path}: optimizer weight {name!r} is listed but missing")
        kfile.optimizer_weights.append(
            KerasWeight(name, read_dataset(item, path, "optimizer/", budget))
        )


def _subgroup_key(name: str) -> tuple[int, int, str]:
    order = KERAS_V3_SUBGROUP_ORDER
    rank = order.index(name) if name in order else len(order)
    return (rank, int(name) if name.isdigit() else -1, name)


def _object_key(item: Any) -> tuple[int, int]:
    info = h5py.h5o.get_info(item.id)
    return (info.fileno, info.addr)


def _v3_layer_weights(
    group: h5py.Group,
    path: Path,
    budget: _Budget,
    prefix: str = "",
    seen: set[tuple[int, int]] | None = None,
) -> list[KerasWeight]:
    """Datasets of one Keras 3 layer group in Keras' order: own vars, then sub-objects.

    Bounded in depth, and each object is visited once: hard links can make a group its own
    descendant.
    """
    seen = set() if seen is None else seen
    if prefix.count("/") >= MAX_GROUP_DEPTH:
        raise ConversionError(f"{path}: weight group {prefix!r} is nested too deeply")
    weights = []
    count = group.id.get_num_objs()
    if count > MAX_LAYER_GROUP_MEMBERS:  # before listing them: the listing is the slow part
        raise ConversionError(
            f"{path}: weight group {group.name!r} has {count:,} members (a layer has a few)"
        )
    for name in sorted(_group_names(group, path), key=_subgroup_key):
        item = _member(group, name, path, f"{group.name.lstrip('/')}/")
        key = _object_key(item)
        if key in seen:
            raise ConversionError(
                f"{path}: {group.name.lstrip('/')}/{name} links back to an object already read"
            )
        seen.add(key)
        full = f"{prefix}{name}"
        if isinstance(item, h5py.Dataset):
            weights.append(KerasWeight(full, read_dataset(item, path, "", budget)))
        elif isinstance(item, h5py.Group):
            weights.extend(_v3_layer_weights(item, path, budget, full + "/", seen))
    return weights


def _v3_model_layers(model_config: Any) -> list[dict]:
    """The layer entries of a Keras 3 (or tf.keras v3-format) model config, ops excluded."""
    layers = _dict_or_empty(_dict_or_none(model_config, "config")).get("layers", [])
    # Keras 3 functional configs also list backend ops (NotEqual, ExpandDims...) created by
    # masking; they are operations, not layers, and have no weight group.
    return [
        entry
        for entry in (layers if isinstance(layers, list) else [])
        if isinstance(entry, dict) and not str(entry.get("module", "")).startswith("keras.src.ops")
    ]


def _v3_user_name(group: h5py.Group, path: Path, auto_name: str) -> str | None:
    """The user's layer name Keras 3 records on layers/<auto name>/vars, if any."""
    vars_group = _member(group, "vars", path, f"layers/{auto_name}/")
    if not isinstance(vars_group, h5py.Group):
        return None
    return _attr_text(vars_group.attrs, "name", path, f"layers/{auto_name}/vars/")


def _read_v3_weights(
    h5: h5py.File,
    path: Path,
    model_config: dict | None,
    version: str | None,
    training_state: bool = False,
) -> KerasFile:
    groups = _group(_member(h5, "layers", path), path, "layers")
    budget = _Budget(path)
    layer_groups = {
        auto_name: _group(_member(groups, auto_name, path, "layers/"), path, f"layers/{auto_name}")
        for auto_name in _group_names(groups, path)
    }
    user_names = {auto: _v3_user_name(group, path, auto) for auto, group in layer_groups.items()}
    by_user_name = {user: auto for auto, user in user_names.items() if user is not None}
    layers: list[KerasLayer] = []
    entries = _v3_model_layers(model_config)
    if entries:
        # Join the config (user names, in model order) with the weight groups: by the recorded
        # name when Keras wrote one, else by Keras' class-derived auto naming, in order.
        counts: dict[str, int] = {}
        for entry in entries:
            class_name = entry.get("class_name")
            layer_config = _dict_or_none(entry, "config")
            name = entry.get("name") or _dict_or_empty(layer_config).get("name")
            if not isinstance(class_name, str) or not isinstance(name, str):
                raise ConversionError(f"{path}: model config layer without a class or name")
            key = snake_case(class_name)
            auto = key if counts.get(key, 0) == 0 else f"{key}_{counts[key]}"
            counts[key] = counts.get(key, 0) + 1
            auto = by_user_name.get(name, auto)
            group = layer_groups.get(auto)
            weights = [] if group is None else _v3_layer_weights(group, path, budget)
            layers.append(KerasLayer(name, class_name, layer_config, weights, auto_name=auto))
        known = {layer.auto_name for layer in layers}
        stray = [
            name
            for name, group in layer_groups.items()
            if name not in known and _v3_layer_weights(group, path, budget)
        ]
        if stray:
            raise ConversionError(
                f"{path}: weight groups {stray} match no layer of the model config"
            )
    else:
        for auto_name, group in layer_groups.items():
            name = user_names[auto_name] or auto_name
            weights = _v3_layer_weights(group, path, budget)
            layers.append(KerasLayer(name, None, None, weights, auto_name=auto_name))
    left_out = [
        group for group in KERAS_V3_TRAINING_STATE if h5.id.links.exists(group.encode("utf8"))
    ]
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
        optimizer = _member(h5, KERAS_V3_OPTIMIZER, path)
        if optimizer is not None:  # vars/0..n in index order (_v3_layer_weights sorts them)
            optimizer = _group(optimizer, path, KERAS_V3_OPTIMIZER)
            kfile.optimizer_weights = _v3_layer_weights(optimizer, path, budget)
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
#: General-purpose flag bit 0: the member is encrypted.
ZIP_FLAG_ENCRYPTED = 0x1
#: Compression methods Keras' zip writer (and any ordinary re-zip) produces.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


def _member_data_offset(handle: BinaryIO, info: zipfile.ZipInfo, path: Path) -> int:
    handle.seek(info.header_offset)
    header = handle.read(ZIP_LOCAL_HEADER.size)
    if len(header) < ZIP_LOCAL_HEADER.size:
        raise ConversionError(f"{path}: truncated zip local header for {info.filename}")
    signature, name_length, extra_length = ZIP_LOCAL_HEADER.unpack(header)
    if signature != ZIP_SIGNATURE:
        raise ConversionError(f"{path}: bad zip local header for {info.filename}")
    return info.header_offset + ZIP_LOCAL_HEADER.size + name_length + extra_length


def _zip_info(archive: zipfile.ZipFile, name: str, path: Path) -> zipfile.ZipInfo:
    """A member's header, after refusing encrypted members and unusual compression."""
    info = archive.getinfo(name)
    if info.flag_bits & ZIP_FLAG_ENCRYPTED:
        raise ConversionError(f"{path}: archive member {name} is encrypted")
    if info.compress_type not in ZIP_METHODS:
        raise ConversionError(
            f"{path}: archive member {name} uses compression method {info.compress_type}; "
            f"only {', '.join(ZIP_METHODS.values())} members are read"
        )
    return info


def _check_expansion(path: Path, what: str, nbytes: int, stored: int, *, compressed: bool) -> None:
    """Refuse a decompression bomb before inflating it (see MAX_COMPRESSION_RATIO)."""
    if (
        compressed
        and nbytes >= COMPRESSION_CHECK_FROM_BYTES
        and nbytes > MAX_COMPRESSION_RATIO * stored
    ):
        raise ConversionError(
            f"{path}: {what} expands {stored:,} stored bytes to {nbytes:,} (over "
            f"{MAX_COMPRESSION_RATIO}x): a decompression bomb, not model weights; refusing it"
        )


def _read_member(archive: zipfile.ZipFile, name: str, path: Path, cap: int) -> bytes:
    """A member's bytes, reading at most cap + 1 of them whatever its header declares."""
    info = _zip_info(archive, name, path)
    _check_expansion(
        path,
        f"archive member {name}",
        info.file_size,
        info.compress_size,
        compressed=info.compress_type != zipfile.ZIP_STORED,
    )
    with archive.open(info) as member:
        data = member.read(cap + 1)
    if len(data) > cap:
        raise ConversionError(f"{path}: archive member {name} is larger than {cap:,} bytes")
    return data


def _read_keras_v3(
    path: Path, companion: dict | None = None, training_state: bool = False
) -> KerasFile:
    with open_regular(path, "Keras file") as handle, zipfile.ZipFile(handle) as archive:
        names = set(archive.namelist())
        missing = [n for n in (KERAS_V3_CONFIG, KERAS_V3_WEIGHTS) if n not in names]
        if missing:
            raise ConversionError(f"{path}: .keras archive without {', '.join(missing)}")
        model_config = load_json(
            _read_member(archive, KERAS_V3_CONFIG, path, MAX_JSON_BYTES),
            f"{path}: {KERAS_V3_CONFIG}",
        )
        metadata: Any = {}
        if KERAS_V3_METADATA in names:
            metadata = load_json(
                _read_member(archive, KERAS_V3_METADATA, path, MAX_JSON_BYTES),
                f"{path}: {KERAS_V3_METADATA}",
            )
        if not isinstance(model_config, dict):
            raise ConversionError(f"{path}: {KERAS_V3_CONFIG} is not a model config")
        metadata = _dict_or_empty(metadata)
        info = _zip_info(archive, KERAS_V3_WEIGHTS, path)
        if info.compress_type == zipfile.ZIP_STORED:  # what Keras writes
            start = _member_data_offset(handle, info, path)
            if start + info.file_size > path.stat().st_size:
                raise ConversionError(f"{path}: {KERAS_V3_WEIGHTS} is truncated")
            source: Any = _StoredMember(handle, start, info.file_size)
        else:  # a re-zipped (compressed) archive: decompress the member in memory, capped
            source = io.BytesIO(_read_member(archive, KERAS_V3_WEIGHTS, path, MAX_ZIP_MEMBER_BYTES))
        with h5py.File(source, "r") as h5:
            if not h5.id.links.exists(b"layers"):
                why = subclassed_model(model_config)
                raise ConversionError(f"{path}: {why or KERAS_V3_WEIGHTS + ' has no layers group'}")
            kfile = _read_v3_weights(
                h5, path, model_config, _str_or_none(metadata.get("keras_version")), training_state
            )
        kfile.assets = _read_assets(archive, path)
    kfile.backend = _str_or_none(metadata.get("backend"))
    return kfile


def _read_assets(archive: zipfile.ZipFile, path: Path) -> dict[str, bytes]:
    """The archive's assets/ files by their path below assets/, bounded in count and size. A
    name that could leave the folder (.., absolute, backslashes, empty parts) is refused: the
    bytes are never written anywhere, but such an archive was not written by Keras."""
    names = [n for n in archive.namelist() if n.startswith(KERAS_V3_ASSETS)]
    files = [n for n in names if not n.endswith("/")]
    if len(files) > MAX_ASSET_FILES:
        raise ConversionError(
            f"{path}: the archive holds {len(files):,} asset files (at most "
            f"{MAX_ASSET_FILES:,} are read)"
        )
    assets: dict[str, bytes] = {}
    total = 0
    if len(set(files)) != len(files):
        raise ConversionError(f"{path}: the archive lists an asset file twice; refusing it")
    for name in files:
        relative = name[len(KERAS_V3_ASSETS) :]
        parts = relative.split("/")
        if "\\" in name or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
            raise ConversionError(
                f"{path}: asset member {name!r} has a path-traversal or malformed name; refusing "
                "the archive"
            )
        data = _read_member(archive, name, path, MAX_ASSET_BYTES)
        total += len(data)
        if total > MAX_ASSET_BYTES:
            raise ConversionError(
                f"{path}: the asset files hold over {MAX_ASSET_BYTES:,} bytes; refusing them"
            )
        assets[relative] = data
    return assets


def read_model_assets(path: str | Path) -> dict[str, bytes]:
    """A .keras archive's asset files (the lookup layers' vocabularies), read with the same
    limits as when the archive is converted; {} for any other kind of file."""
    path = Path(path)
    if path.is_dir():
        return {}
    with open_regular(path, "Keras file") as handle:
        if not handle.read(8).startswith(ZIP_SIGNATURE):
            return {}
    with _as_conversion_error(path, "no readable assets"), zipfile.ZipFile(path) as archive:
        return _read_assets(archive, path)


def _hdf5_model_config(path: Path) -> Any:
    with _as_conversion_error(path, "no readable model config"), h5py.File(path, "r") as h5:
        if "model_config" not in h5.attrs:
            raise ConversionError(f"{path}: HDF5 file without a model config")
        return _attr_json(h5.attrs, "model_config", path, "/")


def read_model_config(path: str | Path) -> dict[str, Any]:
    """Only the model config of a Keras file: a .keras archive's config.json, a legacy full-model
    HDF5's model_config attribute, or a JSON file holding one (model.to_json()). Weights are not
    read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        with _as_conversion_error(path, "no readable model config"):
            config = tf_checkpoint.saved_model_config(path)
        if config is None:
            raise ConversionError(
                f"{path}: is a directory, not a model config (nor a tf-keras "
                "SavedModel with keras_metadata.pb)"
            )
        return config
    with open_regular(path, "Keras file") as handle:
        head = handle.read(8)
    with _as_conversion_error(path, "no readable model config"):
        if head.startswith(ZIP_SIGNATURE):
            with zipfile.ZipFile(path) as archive:
                if KERAS_V3_CONFIG not in archive.namelist():
                    raise ConversionError(f"{path}: .keras archive without {KERAS_V3_CONFIG}")
                config = load_json(
                    _read_member(archive, KERAS_V3_CONFIG, path, MAX_JSON_BYTES),
                    f"{path}: {KERAS_V3_CONFIG}",
                )
        elif head.startswith(HDF5_SIGNATURE):
            isolate.walk_isolated(path, lambda: _hdf5_model_config(path))
            config = _hdf5_model_config(path)
        else:
            with open_regular(path, "Keras file") as handle:
                config = load_json(handle.read(MAX_JSON_BYTES + 1), str(path))
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConversionError(f"{path}: not a Keras model config")
    return config
