"""Seeded mutations of the bundled model files: every one loads or fails with one ConversionError.

Each case is a file from weights/ mutated by ``mutate(name, seed)`` (byte flips, truncation,
chunks duplicated or zeroed; for .keras archives also edits of config.json / metadata.json and
byte flips of the weights member, re-zipped with valid CRCs). It runs in a forked child under a
memory limit and a timeout, so a crash, a hang or an exhausted address space is a failure of
that case, not of the test run. A failure prints its file and seed; replay one with
``mutate(name, seed)`` and parity.load_keras / parity.load on the bytes it returns.
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import select
import signal
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import parity
from parity.errors import ConversionError

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
FILES = (
    "embedding_dense.keras",
    "embedding_dense.h5",
    "deepmoji_small.keras",
    "embedding_dense.safetensors",
    "deepmoji_small.safetensors",
)
#: Cases per file; PARITY_FUZZ_CASES scales the run up for a longer local search.
CASES_PER_FILE = int(os.environ.get("PARITY_FUZZ_CASES", "60"))
#: Address-space limit of each child: a file must never make a conversion allocate past it.
CHILD_MEMORY_BYTES = 4 * 2**30
CHILD_TIMEOUT_S = 20.0
#: Children run at once (the test machines have two cores or more).
PARALLEL = max(2, min(4, os.cpu_count() or 2))
#: The errors a bad file may raise (anything else, a signal or a timeout is a failure).
EXPECTED = (ConversionError.__name__, FileNotFoundError.__name__)
JSON_MEMBERS = ("config.json", "metadata.json")
WEIGHTS_MEMBER = "model.weights.h5"
#: Placeholder for a deeply nested value, replaced in the JSON text.
DEEP = "__deeply_nested__"
#: Values a stranger might write where the config expects something else.
JUNK: tuple[Any, ...] = (
    None,
    True,
    -1,
    0,
    2**63,
    1e308,
    "",
    "x",
    [],
    {},
    [[]],
    ["x", 0, 0],
    [["x", 5, 0, {}]],
    {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 9, 0]}},
    {"class_name": "Dense", "config": None},
)


# --- mutations ----------------------------------------------------------------------------------


def _flip(data: bytearray, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return "byte flips"


def _truncate(data: bytearray, rng: random.Random) -> str:
    cut = rng.randrange(len(data))
    del data[cut:]
    return f"truncated at {cut}"


def _duplicate(data: bytearray, rng: random.Random) -> str:
    start = rng.randrange(len(data))
    chunk = data[start : start + rng.randint(1, 4096)]
    at = rng.randrange(len(data))
    data[at:at] = chunk
    return f"{len(chunk)} bytes from {start} duplicated at {at}"


def _zero(data: bytearray, rng: random.Random) -> str:
    start = rng.randrange(len(data))
    size = rng.randint(1, 4096)
    data[start : start + size] = bytes(len(data[start : start + size]))
    return f"{size} bytes zeroed at {start}"


BYTE_MUTATIONS: dict[str, Callable[[bytearray, random.Random], str]] = {
    "flip": _flip,
    "truncate": _truncate,
    "duplicate": _duplicate,
    "zero": _zero,
}


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON value, walked without recursion."""
    slots, stack = [], [value]
    while stack:
        item = stack.pop()
        keys = item.keys() if isinstance(item, dict) else range(len(item))
        for key in keys:
            slots.append((item, key))
            if isinstance(item[key], dict | list):
                stack.append(item[key])
    return slots


def _mutate_json(doc: Any, rng: random.Random) -> tuple[str, int]:
    """Mutate a parsed JSON document in place: (what was done, levels of nesting to splice in
    place of DEEP)."""
    slots = _slots(doc)
    if not slots:
        return "empty document", 0
    container, key = rng.choice(slots)
    kind = rng.choice(("junk", "junk", "delete", "duplicate", "deep", "rename", "big"))
    if kind == "delete":
        del container[key]
    elif kind == "duplicate" and isinstance(container, list):
        container.insert(key, json.loads(json.dumps(container[key])))
    elif kind == "deep":  # spliced into the text by _rezip: json.dumps itself would recurse
        levels = rng.choice((50, 200, 5000))
        container[key] = DEEP
        return f"{kind} ({levels} levels) at {key!r}", levels
    elif kind == "rename":  # a name or ref pointing at another layer: cycles, dangling refs
        names = [c[k] for c, k in slots if k == "name" and isinstance(c[k], str)]
        container[key] = rng.choice(names or ["x"])
    elif kind == "big":
        container[key] = [rng.choice(JUNK)] * rng.choice((3, 1000, 100_000))
    else:
        container[key] = rng.choice(JUNK)
    return f"{kind} at {key!r}", 0


def _rezip(original: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A .keras archive with one member's content mutated, then zipped again (valid CRCs)."""
    with zipfile.ZipFile(io.BytesIO(original)) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    index = rng.randrange(len(members))
    info, content = members[index]
    if info.filename in JSON_MEMBERS:
        doc = json.loads(content)
        how, levels = _mutate_json(doc, rng)
        text = json.dumps(doc).replace(json.dumps(DEEP), "[" * levels + "0" + "]" * levels)
        content = text.encode()
    else:
        data = bytearray(content)
        how = BYTE_MUTATIONS[rng.choice(("flip", "zero", "flip"))](data, rng)
        content = bytes(data)
    members[index] = (info, content)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for member, body in members:
            dst.writestr(member, body)
    return out.getvalue(), f"{info.filename}: {how}"


def mutate(name: str, seed: int) -> tuple[bytes, str]:
    """(the bytes of weights/``name`` mutated as ``seed`` says, what was done)."""
    rng = random.Random(f"{name}:{seed}")
    original = (WEIGHTS / name).read_bytes()
    if name.endswith(".keras") and rng.random() < 0.5:
        return _rezip(original, rng)
    data = bytearray(original)
    kind = rng.choice(tuple(BYTE_MUTATIONS))
    how = BYTE_MUTATIONS[kind](data, rng)
    return bytes(data), how


# --- running a case in a child --------------------------------------------------------------------


def _child(path: Path, write: int) -> None:
    """In the forked child: load the file, report "ok" or the exception, never return."""
    code = 0
    try:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
        import torch

        torch.set_num_threads(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.suffix == ".safetensors":
                parity.load(path)
            else:
                parity.load_keras(path)
        report = {"type": "ok", "message": ""}
    except BaseException as exc:  # the parent judges what was raised
        report = {"type": type(exc).__name__, "message": str(exc)}
    try:
        os.write(write, json.dumps(report).encode()[:65536])
    except BaseException:
        code = 1
    os._exit(code)


def _start(path: Path) -> tuple[int, int]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        _child(path, write)
    os.close(write)
    return pid, read


def _finish(pid: int, read: int, deadline: float) -> dict[str, Any]:
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([read], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            return {"type": "timeout", "message": f"no answer in {CHILD_TIMEOUT_S} s"}
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"type": "signal", "message": signal.Signals(os.WTERMSIG(status)).name}
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"type": "no report", "message": f"exit status {os.WEXITSTATUS(status)}"}


def _judge(path: Path, result: dict[str, Any]) -> str | None:
    """Why a case's outcome breaks the contract, or None."""
    if result["type"] == "ok":
        return None
    if result["type"] not in EXPECTED:
        return f"{result['type']}: {result['message'][:300]}"
    if "\n" in result["message"]:
        return f"{result['type']} over several lines: {result['message'][:300]!r}"
    if path.name not in result["message"]:
        return f"{result['type']} not naming the file: {result['message'][:300]}"
    return None


def run_cases(cases: list[tuple[str, int]], workdir: Path) -> tuple[list[str], dict[str, int]]:
    """(failures as 'file seed N (mutation): why', outcome counts) of every case."""
    failures: list[str] = []
    counts: dict[str, int] = {}
    pending = list(cases)
    running: list[tuple[int, int, float, Path, str, int, str]] = []
    while pending or running:
        while pending and len(running) < PARALLEL:
            name, seed = pending.pop(0)
            data, how = mutate(name, seed)
            path = workdir / f"{Path(name).stem}-{seed}{Path(name).suffix}"
            path.write_bytes(data)
            pid, read = _start(path)
            running.append((pid, read, time.monotonic() + CHILD_TIMEOUT_S, path, name, seed, how))
        pid, read, deadline, path, name, seed, how = running.pop(0)
        result = _finish(pid, read, deadline)
        counts[result["type"]] = counts.get(result["type"], 0) + 1
        why = _judge(path, result)
        if why:
            failures.append(f"{name} seed {seed} ({how}): {why}")
        path.unlink(missing_ok=True)
    return failures, counts


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_mutated_files_load_or_fail_with_one_conversion_error(tmp_path: Path) -> None:
    cases = [(name, seed) for name in FILES for seed in range(CASES_PER_FILE)]
    start = time.monotonic()
    failures, counts = run_cases(cases, tmp_path)
    elapsed = time.monotonic() - start
    print(f"{len(cases)} cases in {elapsed:.1f} s: {counts}")
    for failure in failures:
        print(failure)
    assert not failures, f"{len(failures)} of {len(cases)} cases broke the contract:\n" + "\n".join(
        failures
    )
