"""Bounds on everything read from an untrusted Keras file, and a JSON parser that keeps them.

A model file is hostile until proved otherwise: every size it declares is checked against one of
these limits before anything is allocated, and every JSON document it carries is parsed with a
size and a nesting-depth bound, so a crafted file fails with one ConversionError instead of
exhausting memory or the interpreter's stack.
"""

from __future__ import annotations

import json
from typing import Any

from parity.conventions import (
    MAX_FILE_WEIGHT_BYTES,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_NAME_LIST_LENGTH,
    MAX_WEIGHT_BYTES,
    MAX_ZIP_MEMBER_BYTES,
)
from parity.errors import ConversionError

__all__ = [
    "MAX_FILE_WEIGHT_BYTES",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_NAME_LIST_LENGTH",
    "MAX_WEIGHT_BYTES",
    "MAX_ZIP_MEMBER_BYTES",
    "json_depth",
    "load_json",
]


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


def load_json(text: str | bytes, what: str) -> Any:
    """Parse one JSON document, refusing it (ConversionError naming ``what``) when it is larger
    than MAX_JSON_BYTES, nested deeper than MAX_JSON_DEPTH, or not JSON at all."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise ConversionError(f"{what}: not JSON text ({type(text).__name__})")
    if len(text) > MAX_JSON_BYTES:
        raise ConversionError(
            f"{what}: JSON of {len(text):,} bytes, more than the limit of {MAX_JSON_BYTES:,}"
        )
    try:
        value = json.loads(text)
    except RecursionError as exc:
        # json's C scanner recurses per nesting level; the interpreter's guard stops it first.
        raise ConversionError(f"{what}: JSON nested too deeply") from exc
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise ConversionError(f"{what}: not valid JSON ({exc})") from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ConversionError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value
