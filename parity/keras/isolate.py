"""Run the risky part of reading a file in a forked child, so the C library cannot take us down.

HDF5's C library trusts the file: some malformed files make it loop forever or crash the process
with SIGSEGV while reading attributes. Before the real read, the reader's structural walk (every
link, attribute and dataset header it will touch; no weight data) runs in a forked child with a
memory limit and a deadline. A child that dies, hangs or runs out of memory becomes one
ConversionError; a child that finds a problem reports the same ConversionError the parent would
raise; only a child that walks the whole file cleanly lets the parent read it.

Fork is used (not spawn) because the child must not re-import torch: forking costs a few ms.
Where fork is missing (Windows) or PARITY_NO_ISOLATION=1 is set, the walk is not isolated.
"""

from __future__ import annotations

import faulthandler
import os
import resource
import select
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from parity.conventions import ISOLATED_READ_EXTRA_BYTES, ISOLATED_READ_SECONDS
from parity.errors import ConversionError

#: Set in the child only: readers skip weight data (the parent reads it once the walk passed).
STRUCTURE_ONLY = False
#: Longest error message a child passes back.
MESSAGE_LIMIT = 4096
_OK, _ERROR = b"O", b"E"


def enabled() -> bool:
    return hasattr(os, "fork") and os.environ.get("PARITY_NO_ISOLATION") != "1"


def _address_space() -> int:
    """This process' current virtual size in bytes (Linux), or 0 when unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _child(write_fd: int, walk: Callable[[], object]) -> None:
    """Runs in the forked child; never returns."""
    global STRUCTURE_ONLY
    code = 0
    try:
        faulthandler.disable()  # a crash here is reported by the parent, in one line
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the deadline kills, whatever the parent had
        signal.alarm(ISOLATED_READ_SECONDS)
        size = _address_space()
        if size:
            limit = size + ISOLATED_READ_EXTRA_BYTES
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        STRUCTURE_ONLY = True
        walk()
        os.write(write_fd, _OK)
    except ConversionError as exc:
        os.write(write_fd, _ERROR + str(exc).encode("utf-8", "replace")[:MESSAGE_LIMIT])
    except MemoryError:
        code = 3
    except BaseException as exc:  # reported as the parent would see it: a malformed file
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        os.write(write_fd, _ERROR + text.encode("utf-8", "replace")[:MESSAGE_LIMIT])
    finally:
        os._exit(code)  # no atexit handlers, no buffered output of the parent's


def walk_isolated(path: Path, walk: Callable[[], object]) -> None:
    """Run ``walk`` (the reader in structure-only mode) in a forked child; ConversionError when
    the child fails, crashes, hangs or runs out of memory."""
    if not enabled():
        return
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(write_fd, walk)
    os.close(write_fd)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], ISOLATED_READ_SECONDS + 5)
            if not ready:  # the child's own alarm failed to fire: stop it here
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    report = b"".join(chunks)
    if report.startswith(_ERROR):
        message = report[1:].decode("utf-8", "replace")
        raise ConversionError(message if message.startswith(str(path)) else f"{path}: {message}")
    if report == _OK and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why = (
            f"took longer than {ISOLATED_READ_SECONDS} s"
            if sig in (signal.SIGALRM, signal.SIGKILL)
            else f"crashed ({signal.Signals(sig).name})"
        )
    else:
        why = "ran out of memory" if os.WEXITSTATUS(status) == 3 else "failed"
    raise ConversionError(f"{path}: the HDF5 library {why} reading the file's structure")
