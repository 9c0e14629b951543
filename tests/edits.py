"""Helpers the hostile-input and conversion tests share: an edited copy of a .keras archive's
config, and a deadline for code that must not wait forever."""

from __future__ import annotations

import json
import signal
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The model config inside a Keras 3 .keras archive.
KERAS_CONFIG = "config.json"


def edited_keras(source: Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the .keras archive ``source`` at ``out`` whose config.json ``edit`` changed
    in place (a structure-aware hostile file, or a layer flag a test needs)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == KERAS_CONFIG:
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    return out


def layer_config(config: dict[str, Any], index: int) -> dict[str, Any]:
    """The config of layer ``index`` of a Functional / Sequential model config."""
    return config["config"]["layers"][index]["config"]


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """TimeoutError in the main thread after ``seconds``: a test of something that could wait
    forever (a FIFO, a stale lock, a crafted file) fails instead of hanging the suite."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
