"""How many CPU threads a process of parity's should give torch: the CPUs it may really use.

torch starts with one intra-op thread per core it sees, which counts the cores of the machine
(or of the CPU affinity mask) but not a container's CPU quota, and not the other workers of the
same job. A process that asks for more threads than it has CPUs gets them time-sliced: every
parallel region then waits for its slowest, descheduled thread. So:

- ``available_cpus()``: the CPUs this process may run on, the smallest of its affinity mask and
  its cgroup CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``),
  rounded up, at least 1.
- ``worker_threads(workers)``: that share divided among the workers of one job on this machine
  (default: torchrun's ``LOCAL_WORLD_SIZE``, else 1), at least 1.
- ``configure(workers)``: lowers torch's intra-op threads to ``worker_threads`` (never raises
  them: torch's own default leaves out hyperthreads, which do not help its GEMMs) unless the
  user chose already (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` in the environment, which torch
  honours), and returns the count in force. The CLI calls it on start; a program that serves or
  trains a converted model in several processes calls it once per process (Ray and torch's
  DataLoader workers already set 1 thread per task, torchrun sets OMP_NUM_THREADS=1 unless
  told otherwise).

Nothing here depends on load: a thread count that followed the load average would change from
run to run, and the LSTM loops are built to keep their share on a busy machine instead
(parity.ports.recurrent.backends.cpp: the directions are independent tasks).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

#: Environment variables that choose the thread count explicitly (torch reads them at start).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: torchrun's count of processes of the job on this machine.
LOCAL_WORKERS_ENV = "LOCAL_WORLD_SIZE"
#: Where the cgroup CPU controller is mounted (v2 unified hierarchy, or v1's cpu controller).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process' cgroup in CPUs (2.5 = two and a half), or None when
    there is none or it cannot be read."""
    for read in (_quota_v2, _quota_v1):
        try:
            quota = read(root)
        except (OSError, ValueError):
            continue
        if quota is not None:
            return quota
    return None


def _quota_v2(root: Path) -> float | None:
    text = (root / "cpu.max").read_text().split()
    if not text or text[0] == "max":
        return None
    period = float(text[1]) if len(text) > 1 else 100_000.0
    return float(text[0]) / period if float(text[0]) > 0 and period > 0 else None


def _quota_v1(root: Path) -> float | None:
    quota = float((root / "cpu" / "cpu.cfs_quota_us").read_text())
    period = float((root / "cpu" / "cpu.cfs_period_us").read_text())
    return quota / period if quota > 0 and period > 0 else None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may run on: affinity mask and cgroup quota, at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def local_workers() -> int:
    """Processes of this job on this machine: torchrun's LOCAL_WORLD_SIZE, else 1."""
    try:
        return max(1, int(os.environ.get(LOCAL_WORKERS_ENV, "1")))
    except ValueError:
        return 1


def worker_threads(workers: int | None = None, root: Path = CGROUP_ROOT) -> int:
    """This process' share of the available CPUs among ``workers`` processes (default
    ``local_workers()``), at least 1."""
    workers = local_workers() if workers is None else max(1, workers)
    return max(1, available_cpus(root) // workers)


def configure(workers: int | None = None, root: Path = CGROUP_ROOT) -> int:
    """Lower torch's intra-op threads to ``worker_threads(workers)`` unless the environment
    chose a count; returns the count in force."""
    if not any(os.environ.get(name) for name in THREAD_ENV):
        threads = worker_threads(workers, root)
        if torch.get_num_threads() > threads:
            torch.set_num_threads(threads)
    return torch.get_num_threads()
