"""Competing processes for benchmarks: K CPU-bound processes at normal priority, as a machine
shared with other work has them (a web server's other workers, a data loader beside training,
CI jobs). Each spins in pure Python: it takes a core's time and little memory bandwidth, so what
a contender loses to it is CPU time and the scheduling of its threads."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

#: What each competing process runs until it is killed, or until this process ends, however it
#: ends (Linux: the kernel kills it with its parent; elsewhere it stops when it is orphaned).
SPIN = """
import ctypes, os, signal
PR_SET_PDEATHSIG = 1
parent = os.getppid()
try:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
except (AttributeError, OSError):
    pass
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""
#: Seconds to let the processes start before timing.
START_S = 0.3


@contextlib.contextmanager
def background_load(processes: int) -> Iterator[None]:
    """Run ``processes`` busy processes for the duration of the block (none for 0)."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(processes)]
    try:
        if procs:
            time.sleep(START_S)
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
