"""Bounds on everything read from an untrusted Keras file, and a JSON parser that keeps them.

A model file is hostile until proved otherwise: every size it declares is checked against one of
these limits before anything is allocated, and every JSON document it carries is parsed with a
size and a nesting-depth bound, so a crafted file fails with one ConversionError instead of
exhausting memory or the interpreter's stack.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from parity.conventions import (
    MAX_FILE_WEIGHT_BYTES,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_NAME_LIST_LENGTH,
    MAX_SAFETENSORS_BYTES,
    MAX_SAFETENSORS_HEADER_BYTES,
    MAX_SAFETENSORS_RANK,
    MAX_SAFETENSORS_TENSORS,
    MAX_WEIGHT_BYTES,
    MAX_ZIP_MEMBER_BYTES,
)
from parity.errors import ConversionError
from parity.files import open_regular

__all__ = [
    "MAX_FILE_WEIGHT_BYTES",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_NAME_LIST_LENGTH",
    "MAX_WEIGHT_BYTES",
    "MAX_ZIP_MEMBER_BYTES",
    "SAFETENSORS_DTYPES",
    "SafetensorsHeader",
    "json_depth",
    "load_json",
    "read_safetensors_header",
]

#: safetensors' header: an 8-byte little-endian length, then that many bytes of JSON.
SAFETENSORS_LENGTH_BYTES = 8
SAFETENSORS_METADATA_KEY = "__metadata__"
#: How much of a value from a file an error message shows.
SHOWN_VALUE_CHARS = 80
#: safetensors dtype names -> (bytes per element, torch dtype attribute).
SAFETENSORS_DTYPES: dict[str, tuple[int, str]] = {
    "BOOL": (1, "bool"),
    "U8": (1, "uint8"),
    "I8": (1, "int8"),
    "I16": (2, "int16"),
    "U16": (2, "uint16"),
    "F16": (2, "float16"),
    "BF16": (2, "bfloat16"),
    "I32": (4, "int32"),
    "U32": (4, "uint32"),
    "F32": (4, "float32"),
    "F64": (8, "float64"),
    "I64": (8, "int64"),
    "U64": (8, "uint64"),
}


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            return depth  # already too deep: no need to walk the rest
        stack.extend((child, depth) for child in children)
    return deepest


class _TooManyObjects(Exception):
    """Raised from inside json.loads to stop a document holding too many objects."""


def load_json(
    text: str | bytes, what: str, *, max_bytes: int = MAX_JSON_BYTES, max_objects: int = 0
) -> Any:
    """Parse one JSON document, refusing it (ConversionError naming ``what``) when it is larger
    than ``max_bytes``, nested deeper than MAX_JSON_DEPTH, or not JSON at all; with
    ``max_objects``, also when it holds more JSON objects than that (counted while parsing, so
    the parse stops there instead of building them all)."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise ConversionError(f"{what}: not JSON text ({type(text).__name__})")
    if len(text) > max_bytes:
        raise ConversionError(
            f"{what}: JSON of {len(text):,} bytes, more than the limit of {max_bytes:,}"
        )
    hook = None
    if max_objects:
        count = 0

        def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            nonlocal count
            count += 1
            if count > max_objects:
                raise _TooManyObjects
            return dict(pairs)

    try:
        value = json.loads(text, object_pairs_hook=hook)
    except _TooManyObjects as exc:
        raise ConversionError(
            f"{what}: JSON holds more than {max_objects:,} objects; refusing to read it"
        ) from exc
    except RecursionError as exc:
        # json's C scanner recurses per nesting level; the interpreter's guard stops it first.
        raise ConversionError(f"{what}: JSON nested too deeply") from exc
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise ConversionError(f"{what}: not valid JSON ({exc})") from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ConversionError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


@dataclass(frozen=True)
class SafetensorsTensor:
    """One tensor as a safetensors header declares it (offsets into the data after the header)."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A safetensors file's header, checked: string metadata and every tensor's declaration."""

    metadata: dict[str, str]
    tensors: dict[str, SafetensorsTensor]


def _shown(value: Any) -> str:
    """A value from a file for an error message: its repr, cut short (a name or a list in a
    header can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[:SHOWN_VALUE_CHARS] + "..."


def _safetensors_tensor(name: str, spec: Any, data_size: int, where: str) -> SafetensorsTensor:
    """One header entry, checked: a known dtype, a shape of non-negative ints, and offsets that
    lie in the file and hold exactly the shape's bytes."""
    what = f"{where}: tensor {_shown(name)}"
    if not isinstance(spec, dict):
        raise ConversionError(f"{what} is declared by a {type(spec).__name__}")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise ConversionError(f"{what} has unknown dtype {_shown(dtype)}")
    if not isinstance(shape, list) or len(shape) > MAX_SAFETENSORS_RANK:
        raise ConversionError(f"{what} has no shape of rank <= {MAX_SAFETENSORS_RANK}")
    if not all(type(size) is int and size >= 0 for size in shape):
        raise ConversionError(f"{what} has shape {_shown(shape)}")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(type(offset) is int for offset in offsets)
        and 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise ConversionError(
            f"{what} has data offsets {_shown(offsets)} outside the file's {data_size:,} data bytes"
        )
    nbytes = math.prod(shape) * SAFETENSORS_DTYPES[dtype][0]
    if nbytes != offsets[1] - offsets[0]:
        raise ConversionError(
            f"{what} of shape {_shown(tuple(shape))} {dtype} needs {nbytes:,} bytes, its "
            f"offsets hold {offsets[1] - offsets[0]:,}"
        )
    return SafetensorsTensor(dtype, tuple(shape), offsets[0], offsets[1])


def read_safetensors_header(path: str | os.PathLike) -> SafetensorsHeader:
    """A safetensors file's header, read and checked before any tensor is: its length, its JSON
    (size and object count bounded while parsing), the tensor count, every tensor's dtype, shape
    and offsets, and the data size in all. ConversionError naming the file otherwise."""
    where = str(path)
    with open_regular(path, "safetensors file") as handle:  # a FIFO is refused, not waited on
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(SAFETENSORS_LENGTH_BYTES)
        if len(head) < SAFETENSORS_LENGTH_BYTES:
            raise ConversionError(f"{where}: not a safetensors file ({size} bytes)")
        length = int.from_bytes(head, "little")
        if length > MAX_SAFETENSORS_HEADER_BYTES:
            raise ConversionError(
                f"{where}: safetensors header of {length:,} bytes (limit "
                f"{MAX_SAFETENSORS_HEADER_BYTES:,}); refusing to read it"
            )
        if SAFETENSORS_LENGTH_BYTES + length > size:
            raise ConversionError(
                f"{where}: not a safetensors file (a {length:,}-byte header in {size:,} bytes)"
            )
        text = handle.read(length)
    # one object per tensor, its metadata, the document itself
    header = load_json(
        text,
        f"{where}: safetensors header",
        max_bytes=MAX_SAFETENSORS_HEADER_BYTES,
        max_objects=MAX_SAFETENSORS_TENSORS + 2,
    )
    if not isinstance(header, dict):
        raise ConversionError(f"{where}: the safetensors header is not a JSON object")
    metadata = header.pop(SAFETENSORS_METADATA_KEY, None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(value, str) for value in metadata.values()
    ):
        raise ConversionError(f"{where}: safetensors metadata is not a map of strings")
    if len(header) > MAX_SAFETENSORS_TENSORS:
        raise ConversionError(
            f"{where}: {len(header):,} tensors (limit {MAX_SAFETENSORS_TENSORS:,}); "
            "refusing to read them"
        )
    data_size = size - SAFETENSORS_LENGTH_BYTES - length
    tensors = {
        name: _safetensors_tensor(name, spec, data_size, where) for name, spec in header.items()
    }
    total = sum(tensor.end - tensor.begin for tensor in tensors.values())
    if total > MAX_SAFETENSORS_BYTES:
        raise ConversionError(
            f"{where}: tensors of {total:,} bytes in all (limit {MAX_SAFETENSORS_BYTES:,}); "
            "refusing to read them"
        )
    return SafetensorsHeader(metadata, tensors)
