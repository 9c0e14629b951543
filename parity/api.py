"""The public entry points: load_keras, save, load."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from parity import __version__
from parity.arch import arch_of, get_arch
from parity.convert.gates import check_variant
from parity.convert.mapping import build_empty
from parity.convert.match import plan_conversion
from parity.errors import ConversionError
from parity.keras.read import read_keras_file, read_model_config

#: safetensors metadata keys written by save() and required by load().
META_FORMAT = "format"
META_FORMAT_VALUE = "keras-parity"
META_ARCH = "arch"
META_CONFIG = "config"
META_VERSION = "keras_parity_version"


NEW_FILE_MODE = 0o666


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ParityWarning(UserWarning):
    """Conversion had to assume something the file does not say (e.g. the hard sigmoid)."""


def load_keras(
    path: str | os.PathLike,
    arch: str | None = None,
    hard_sigmoid: str | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    config: str | os.PathLike | None = None,
) -> nn.Module:
    """Convert a Keras file (.keras, .weights.h5, legacy .h5) to a PyTorch module in eval mode.

    Reads the weights with h5py alone (no TensorFlow). ``arch`` names a registered pair,
    "generic" (rebuild from the file's model config) or a seed-zoo model; None decides from the
    file (parity.convert.match): a config of supported layers converts generically unless a
    registered pair is exactly that model; a weights-only file is matched to a pair. Sizes come
    from the file. ``config`` names a companion file (.keras, full-model .h5, or model JSON) whose
    model config describes a weights-only ``path`` (.weights.h5, save_weights .h5). Assumptions
    the file cannot settle are issued as ParityWarning.
    """
    check_variant(hard_sigmoid)
    companion = read_model_config(config) if config is not None else None
    kfile = read_keras_file(path, model_config=companion)
    plan = plan_conversion(kfile, arch, hard_sigmoid)
    model = plan.build(dtype)
    for note in plan.notes:
        warnings.warn(note, ParityWarning, stacklevel=2)
    return model


def save(model: nn.Module, path: str | os.PathLike) -> None:
    """Write weights and config to one safetensors file (no pickle), atomically."""
    metadata = {
        META_FORMAT: META_FORMAT_VALUE,
        META_VERSION: __version__,
        META_ARCH: arch_of(model).name,
        META_CONFIG: json.dumps(dataclasses.asdict(model.config)),
    }
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, NEW_FILE_MODE & ~_umask())  # mkstemp's 0600 -> what open() would give
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> nn.Module:
    """Rebuild a model written by save(): config from the metadata, weights loaded strictly."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ConversionError(f"{path}: not a safetensors file ({exc})") from exc
    if metadata.get(META_FORMAT) != META_FORMAT_VALUE:
        raise ConversionError(f"{path}: safetensors file not written by keras-parity (no config)")
    arch = get_arch(metadata.get(META_ARCH, ""))
    try:
        config = arch.config_cls(**json.loads(metadata[META_CONFIG]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConversionError(
            f"{path}: unusable {arch.name} config in the metadata ({exc})"
        ) from exc
    first = next(iter(tensors.values()), None)
    target = dtype or (first.dtype if first is not None else torch.float32)
    tensors = {k: t.to(target) if t.is_floating_point() else t for k, t in tensors.items()}
    try:
        # No random init and no copy: the file's tensors become the parameters. A config that
        # declares sizes the tensors do not have fails here, before anything is filled.
        model = build_empty(lambda: arch.build(config), target)
        model.load_state_dict(tensors, strict=True, assign=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ConversionError(f"{path}: weights do not fit {arch.name}: {exc}") from exc
    return model.eval()
