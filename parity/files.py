"""Every file parity reads from, or writes to, a path a user gave.

Writes are atomic and cannot be redirected: the content goes to a new temporary file created
exclusively (O_EXCL, an unpredictable name) in the target's directory, through the descriptor
that created it, is flushed to disk and renamed over the target; a failure, SIGINT or SIGTERM
removes that temporary file (never anyone else's) and leaves the target as it was. A symlink
planted at a predictable name is never followed: there is no predictable name.

Reads of user-named inputs refuse anything but a regular file before reading: a FIFO would block
open() forever, a device could stream without end.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

from parity.errors import ConversionError, error_line

#: Permission bits of a new file before the umask, as open() creates it.
NEW_FILE_MODE = 0o666
#: Signals that end a write early: they raise, so the temporary file is removed (SIGINT as
#: Python's KeyboardInterrupt, SIGTERM as the exit status a shell expects).
WRITE_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SIGNAL_EXIT_BASE = 128
#: Longest file name most file systems take (ext4, xfs, btrfs, tmpfs: 255 bytes).
MAX_NAME_BYTES = 255
#: A write that fails for want of room: named as such, not an internal error.
FULL_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name)
)
#: Temporary files: a dot file beside the target, suffixed, with mkstemp's random part.
TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """While writing: SIGINT/SIGTERM raise, so the caller's cleanup runs (main thread only:
    elsewhere Python cannot install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(SIGNAL_EXIT_BASE + signum)

    previous = {sig: signal.signal(sig, handler) for sig in WRITE_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mode_for(path: Path) -> int:
    """A replaced file's permission bits; for a new file, what open() would give."""
    try:
        existing = os.stat(path)
    except OSError:
        existing = None
    if existing is not None and stat.S_ISREG(existing.st_mode):
        return stat.S_IMODE(existing.st_mode)
    return NEW_FILE_MODE & ~_umask()


def check_target(path: str | os.PathLike[str], what: str = "output") -> Path:
    """``path`` as a place a file can be written, or ConversionError naming why not (its
    directory missing or not a directory, the name too long, a directory in the way)."""
    path = Path(path)
    parent = path.parent
    if len(os.fsencode(path.name)) > MAX_NAME_BYTES:
        raise ConversionError(f"{path}: the {what} file name is over {MAX_NAME_BYTES} bytes")
    if not path.name:
        raise ConversionError(f"{path}: the {what} path names no file")
    try:
        parent_mode = os.stat(parent).st_mode
    except FileNotFoundError:
        raise ConversionError(f"{path}: the {what} directory {parent} does not exist") from None
    except NotADirectoryError:
        raise ConversionError(
            f"{path}: the {what} path runs through a file, not a directory"
        ) from None
    except OSError as exc:
        raise ConversionError(f"{path}: cannot write the {what} ({exc.strerror})") from None
    if not stat.S_ISDIR(parent_mode):
        raise ConversionError(f"{path}: the {what} directory {parent} is not a directory")
    if path.is_dir():
        raise ConversionError(f"{path}: the {what} path is a directory")
    return path


@contextlib.contextmanager
def _replacing(path: str | os.PathLike[str], what: str) -> Iterator[tuple[int, Path]]:
    """(descriptor, name) of a new temporary file beside ``path`` that replaces it when the
    block ends without an error; removed otherwise (SIGINT/SIGTERM included)."""
    path = check_target(path, what)
    with signals_raise():
        try:
            fd, name = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX
            )
        except OSError as exc:
            raise ConversionError(f"{path}: cannot write the {what} ({exc.strerror})") from None
        tmp = Path(name)
        try:
            yield fd, tmp
            os.chmod(tmp, mode_for(path))  # mkstemp's 0600 -> the replaced file's, or open()'s
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in FULL_ERRNOS:
                raise ConversionError(f"{path}: cannot write the {what}: {exc.strerror}") from None
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str],
    what: str = "output",
    *,
    text: bool = False,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """A file object (binary, or UTF-8 text with ``text``) whose content replaces ``path``
    atomically when the block ends without an error; streamed, nothing kept in memory. A
    replaced file keeps its permission bits."""
    with _replacing(path, what) as (fd, _):
        mode = {"mode": "w", "encoding": "utf-8", "newline": newline} if text else {"mode": "wb"}
        with os.fdopen(fd, **mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_atomic_by_name(
    path: str | os.PathLike[str], write: Callable[[Path], Any], what: str = "output"
) -> None:
    """For writers that only take a file name (safetensors' save_file streams from Rust):
    ``write(tmp)`` on the new temporary file's unpredictable name, created exclusively, then
    synced and renamed over ``path`` as atomic_writer does."""
    with _replacing(path, what) as (fd, tmp):
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as handle:  # our own file: flush what the writer wrote to disk
            os.fsync(handle.fileno())


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any], what: str = "output"
) -> None:
    """``write(f)`` into ``atomic_writer(path)``: a reader, or a crash, sees the old file or
    the new one, never half of one."""
    with atomic_writer(path, what) as handle:
        write(handle)


def write_atomic_bytes(path: str | os.PathLike[str], data: bytes, what: str = "output") -> None:
    write_atomic(path, lambda f: f.write(data), what)


def write_atomic_text(path: str | os.PathLike[str], text: str, what: str = "output") -> None:
    write_atomic_bytes(path, text.encode("utf-8"), what)


def open_regular(
    path: str | os.PathLike[str],
    what: str = "input",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    errors: str | None = None,
) -> IO[Any]:
    """Open a user-named input for reading (binary without ``encoding``), refusing anything but
    a regular file by name: the open itself does not block on a FIFO."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise ConversionError(f"{path}: the {what} is {kind}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        if encoding is None:
            return os.fdopen(fd, "rb")
        return os.fdopen(fd, "r", encoding=encoding, newline=newline, errors=errors)
    except BaseException:
        os.close(fd)
        raise


#: What parsing a malformed user file can raise (bad UTF-8, JSON, CSV, values out of range).
READ_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    OverflowError,
    KeyError,
    RecursionError,
    csv.Error,
)


@contextlib.contextmanager
def reading(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Whatever a malformed ``path`` makes the block raise becomes one ConversionError naming
    the file and what it was meant to be (a bad --vocab is never blamed on another file)."""
    try:
        yield
    except ConversionError:
        raise
    except UnicodeDecodeError as exc:
        raise ConversionError(
            f"{path}: the {what} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    except READ_ERRORS as exc:
        message = error_line(exc)
        prefix = os.fspath(path)
        if not message.startswith(prefix):
            message = f"{prefix}: unreadable {what}: {message}"
        raise ConversionError(message) from None
