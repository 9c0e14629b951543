"""The public entry points: load_keras, save, load."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from parity.arch import arch_of, get_arch
from parity.arch.base import Plan
from parity.arch.gates import check_variant
from parity.arch.generic.model import module_name
from parity.arch.match import plan_conversion
from parity.convert.dtypes import file_dtype
from parity.convert.mapping import build_empty
from parity.errors import ConversionError, ParityWarning, error_line
from parity.files import open_regular, write_atomic_by_name
from parity.keras.limits import SAFETENSORS_DTYPES, load_json, read_safetensors_header
from parity.keras.read import (
    HDF5_SIGNATURE,
    ZIP_SIGNATURE,
    KerasFile,
    read_keras_file,
    read_model_assets,
    read_model_config,
)
from parity.ports.text_preprocessing import PREPROCESSOR_TYPES
from parity.version import __version__

#: safetensors metadata keys written by save() and required by load().
META_FORMAT = "format"
META_FORMAT_VALUE = "keras-parity"
META_ARCH = "arch"
META_CONFIG = "config"
META_VERSION = "keras_parity_version"


#: What reading, parsing, planning or building a malformed file can still raise where no check
#: names the problem: each becomes one ConversionError naming the file (malformed_file). Anything
#: else is a bug in parity and is left to surface as itself.
MALFORMED_FILE_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
    RecursionError,
    OverflowError,
    struct.error,
    zipfile.BadZipFile,
    UnicodeDecodeError,
    OSError,
)
#: Config field types (as dataclass annotations spell them) load() checks metadata values against.
CONFIG_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
}


def first_line(exc: BaseException) -> str:
    """An exception's message as one printable line (file text can put newlines and terminal
    controls in it)."""
    return error_line(exc)


@contextmanager
def malformed_file(path: str | os.PathLike) -> Iterator[None]:
    """Turn what a malformed file can make any step raise into one ConversionError naming it."""
    try:
        yield
    except (ConversionError, FileNotFoundError):
        raise
    except MALFORMED_FILE_ERRORS as exc:
        raise ConversionError(
            f"{path}: malformed file ({type(exc).__name__}: {first_line(exc)})"
        ) from exc


@dataclasses.dataclass
class Conversion:
    """One conversion's steps, each done once: the file read, its plan, the model built."""

    kfile: KerasFile
    plan: Plan
    model: nn.Module


def convert_keras(
    path: str | os.PathLike,
    arch: str | None = None,
    hard_sigmoid: str | None = None,
    *,
    dtype: torch.dtype | None = None,
    config: str | os.PathLike | None = None,
) -> Conversion:
    """load_keras, keeping what it read and decided (for `parity check`, which compares layer by
    layer against the file it read). Notes are issued as ParityWarning."""
    check_variant(hard_sigmoid)
    with malformed_file(config if config is not None else path):
        companion = read_model_config(config) if config is not None else None
        # a .keras companion also lends its assets (the vocabularies a weights file lacks)
        companion_assets = read_model_assets(config) if config is not None else {}
    with malformed_file(path):
        kfile = read_keras_file(path, model_config=companion)
        if companion_assets and not kfile.assets:
            kfile.assets = companion_assets
        if config is not None and kfile.saved_model is None and Path(config).is_dir():
            kfile.saved_model = Path(config)  # a SavedModel companion: its lookup tables
        plan = plan_conversion(kfile, arch, hard_sigmoid)
        model = plan.build(dtype if dtype is not None else file_dtype(kfile, plan.graph))
    for note in plan.notes:
        warnings.warn(note, ParityWarning, stacklevel=3)
    return Conversion(kfile, plan, model)


def load_keras(
    path: str | os.PathLike,
    arch: str | None = None,
    hard_sigmoid: str | None = None,
    *,
    dtype: torch.dtype | None = None,
    config: str | os.PathLike | None = None,
) -> nn.Module:
    """Convert a Keras file (.keras, .weights.h5, legacy .h5), a tf-keras SavedModel directory
    or a TF checkpoint (prefix, .index or its directory) to a PyTorch module in eval mode.

    Reads the weights with h5py or parity's own TF checkpoint reader (no TensorFlow). ``arch``
    names a registered pair, "generic" (rebuild from the file's model config) or a seed-zoo
    model; None decides from the file (parity.arch.match): a config of supported layers
    converts generically unless a registered pair is exactly that model; a weights-only file is
    matched to a pair. Sizes come from the file. ``config`` names a companion file (.keras,
    full-model .h5, model JSON or a tf-keras SavedModel) whose model config describes a
    weights-only ``path`` (.weights.h5, save_weights .h5, TF checkpoint). Assumptions the file
    cannot settle are issued as ParityWarning. ``dtype``: None keeps the file's (float32 or
    float64; half and mixed precision are refused unless a dtype is given).
    """
    return convert_keras(path, arch, hard_sigmoid, dtype=dtype, config=config).model


#: Signatures of the Keras files load_keras reads; anything else load_model takes for a
#: parity.save file.
KERAS_SIGNATURES = (ZIP_SIGNATURE, HDF5_SIGNATURE)


def load_model(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    hard_sigmoid: str | None = None,
    config: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """A parity .safetensors file (save) or any Keras file load_keras reads (``config``: the
    companion describing a weights-only file), told apart by the file's first bytes."""
    path = Path(path)
    if path.is_file():
        with open_regular(path, "model") as f:
            magic = f.read(8)
        if not magic.startswith(KERAS_SIGNATURES):
            return load(path)
    return load_keras(path, arch=arch, hard_sigmoid=hard_sigmoid, config=config)


def save(model: nn.Module, path: str | os.PathLike) -> None:
    """Write weights and config to one safetensors file (no pickle), atomically (parity.files:
    ``path`` is either untouched or complete, and keeps the permission bits it had)."""
    metadata = {
        META_FORMAT: META_FORMAT_VALUE,
        META_VERSION: __version__,
        META_ARCH: arch_of(model).name,
        META_CONFIG: json.dumps(dataclasses.asdict(model.config)),
    }
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    write_atomic_by_name(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), "model file")


def _check_fields(config_cls: type, values: Any) -> None:
    """TypeError when metadata values do not have their config field's simple type."""
    if not isinstance(values, dict):
        raise TypeError(f"the config is a {type(values).__name__}, not an object")
    for f in dataclasses.fields(config_cls):
        kinds = CONFIG_FIELD_TYPES.get(str(f.type))
        value = values.get(f.name)
        if kinds and f.name in values and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise TypeError(f"field {f.name!r} is {value!r}, not {f.type}")


def load(path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> nn.Module:
    """Rebuild a model written by save(): config from the metadata, weights loaded strictly.

    Nothing is read before it is checked: the header first (its size, tensor count, dtypes,
    shapes, offsets and total size: parity.keras.limits.read_safetensors_header), then the
    config, then the empty model's names and shapes against the header; the tensors last."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    header = read_safetensors_header(path)
    metadata = header.metadata
    if metadata.get(META_FORMAT) != META_FORMAT_VALUE:
        raise ConversionError(f"{path}: safetensors file not written by keras-parity (no config)")
    with malformed_file(path):
        try:
            arch = get_arch(metadata.get(META_ARCH, ""))
        except ConversionError as exc:
            raise ConversionError(f"{path}: {exc}") from exc
        values = load_json(metadata.get(META_CONFIG, ""), f"{path}: metadata config")
        try:
            _check_fields(arch.config_cls, values)
            config = arch.config_cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConversionError(
                f"{path}: unusable {arch.name} config in the metadata ({first_line(exc)})"
            ) from exc
        names = sorted(header.tensors)  # safe_open's key order: the first decides the dtype
        first = header.tensors[names[0]].dtype if names else "F32"
        target = dtype or getattr(torch, SAFETENSORS_DTYPES[first][1])
        try:
            # No random init and no copy: the file's tensors become the parameters. A config
            # that declares sizes the tensors do not have fails here, before anything is read.
            model = build_empty(lambda: arch.build(config), target)
            needed = {name: tuple(t.shape) for name, t in model.state_dict().items()}
            misfits = [f"missing {name}" for name in needed if name not in header.tensors]
            misfits += [f"unexpected {name}" for name in names if name not in needed]
            misfits += [
                f"{name} has shape {header.tensors[name].shape}, needs {shape}"
                for name, shape in needed.items()
                if name in header.tensors and header.tensors[name].shape != shape
            ]
            if misfits:
                shown = "; ".join(misfits[:5]) + ("; ..." if len(misfits) > 5 else "")
                raise ValueError(f"{len(misfits)} tensors do not match: {shown}")
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ConversionError(
                f"{path}: weights do not fit {arch.name}: {first_line(exc)}"
            ) from exc
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {name: handle.get_tensor(name) for name in names}
        except Exception as exc:  # safetensors raises its own error types for bad files
            raise ConversionError(f"{path}: not a safetensors file ({first_line(exc)})") from exc
        tensors = {k: t.to(target) if t.is_floating_point() else t for k, t in tensors.items()}
        try:
            model.load_state_dict(tensors, strict=True, assign=True)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ConversionError(
                f"{path}: weights do not fit {arch.name}: {first_line(exc)}"
            ) from exc
    return model.eval()


def text_preprocessor(
    path: str | os.PathLike, layer: str | None = None, *, config: str | os.PathLike | None = None
) -> nn.Module:
    """The TextVectorization, StringLookup, IntegerLookup or Hashing layer of a Keras model file,
    converted alone: a module whose forward takes a batch of texts (a list of str/bytes or a
    numpy array shaped (B,) or (B, 1)) or raw values and returns TensorFlow's ids or encodings.
    ``layer`` is its Keras name; needed only when the model has several such layers."""
    model = load_keras(path, config=config)
    found = {name: m for name, m in model.named_children() if isinstance(m, PREPROCESSOR_TYPES)}
    if layer is not None:
        if module_name(layer) not in found:
            raise ConversionError(
                f"{path}: no text preprocessing layer named {layer!r}; it has {sorted(found)}"
            )
        return found[module_name(layer)]
    if len(found) != 1:
        raise ConversionError(
            f"{path}: {len(found)} text preprocessing layers ({sorted(found)}); pass layer="
        )
    return next(iter(found.values()))
