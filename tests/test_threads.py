"""parity.threads: the CPUs a process may use (affinity, cgroup quota) and its workers' share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from parity import threads


def _cgroup(tmp_path: Path, v2: str | None = None, v1: tuple[str, str] | None = None) -> Path:
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(v1[0])
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(v1[1])
    return tmp_path


@pytest.mark.parametrize(
    ("v2", "v1", "quota"),
    [
        ("150000 100000\n", None, 1.5),
        ("max 100000\n", None, None),
        (None, ("200000", "100000"), 2.0),
        (None, ("-1", "100000"), None),
        ("garbage", ("50000", "100000"), 0.5),  # an unreadable v2 file falls back to v1
        (None, None, None),
        ("0 100000", None, None),
    ],
)
def test_cgroup_quota(tmp_path: Path, v2: str | None, v1: tuple | None, quota: float | None):
    assert threads.cgroup_cpu_quota(_cgroup(tmp_path, v2, v1)) == quota


def test_available_cpus_is_the_smaller_of_affinity_and_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert threads.available_cpus(_cgroup(tmp_path)) == affinity
    assert threads.available_cpus(_cgroup(tmp_path, "50000 100000")) == 1  # half a CPU: 1
    (tmp_path / "big").mkdir()
    big = _cgroup(tmp_path / "big", f"{100000 * (affinity + 8)} 100000")
    assert threads.available_cpus(big) == affinity


def test_workers_share_the_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _cgroup(tmp_path, "800000 100000")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert threads.worker_threads(1, root) == 8
    assert threads.worker_threads(3, root) == 2
    assert threads.worker_threads(64, root) == 1
    monkeypatch.setenv(threads.LOCAL_WORKERS_ENV, "4")
    assert threads.worker_threads(None, root) == 2
    monkeypatch.setenv(threads.LOCAL_WORKERS_ENV, "not a number")
    assert threads.worker_threads(None, root) == 8


def test_configure_lowers_never_raises_and_respects_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    for name in threads.THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    try:
        torch.set_num_threads(2)
        assert threads.configure(root=_cgroup(tmp_path, "100000 100000")) == 1
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
        assert threads.configure(root=tmp_path / "none") == 1  # never raised again
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert threads.configure(root=tmp_path / "none") == 2  # the user's choice
    finally:
        torch.set_num_threads(before)
