"""Conversion speed and memory: a full-size DeepMoji (50000 x 256, 2 x 512 BiLSTM, 64 classes).

Writes the model once with Keras 3 (.keras and legacy .h5), then converts each file with
``parity.load_keras`` in fresh processes, measuring wall time of the call and the growth of the
process's peak RSS during it (resource.getrusage), and writes the figures as JSON:

    python benchmarks/conversion_speed.py out.json [--workdir DIR] [--runs 5]

Targets: under 0.5 s, peak memory growth under 2x the file size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 0.5
TARGET_MEMORY_RATIO = 2.0

#: Runs in a fresh interpreter: import first (not timed), then one conversion.
#: Peak RSS: Linux's VmHWM, reset after the imports by writing 5 to /proc/self/clear_refs, so the
#: peak is the conversion's own (the imports' transient peak would otherwise hide it).
CHILD = r"""
import json, sys, time
import torch, parity
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
path, arch = sys.argv[1], sys.argv[2]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
rss_before = status("VmRSS:")
start = time.perf_counter()
model = parity.load_keras(path, arch=arch)
seconds = time.perf_counter() - start
peak = status("VmHWM:")
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"seconds": seconds, "peak_rss_growth_bytes": peak - rss_before,
                  "parameters": params}))
"""


def write_files(workdir: Path) -> dict[str, Path]:
    """The full-size DeepMoji as .keras and legacy .h5 (written once, reused)."""
    files = {"keras": workdir / "deepmoji_full.keras", "legacy-h5": workdir / "deepmoji_full.h5"}
    if all(path.exists() for path in files.values()):
        return files
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    import keras

    from reference_keras import deepmoji

    keras.utils.set_random_seed(0)
    model = deepmoji.build()
    for path in files.values():
        model.save(path)
    return files


def measure(path: Path, arch: str, runs: int) -> dict[str, object]:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), arch],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    size = path.stat().st_size
    seconds = [r["seconds"] for r in results]
    growth = [r["peak_rss_growth_bytes"] for r in results]
    return {
        "file": path.name,
        "file_bytes": size,
        "parameters": results[0]["parameters"],
        "seconds_min": min(seconds),
        "seconds_median": statistics.median(seconds),
        "peak_rss_growth_bytes_median": statistics.median(growth),
        "memory_ratio_to_file": statistics.median(growth) / size,
        "meets_time_target": statistics.median(seconds) < TARGET_SECONDS,
        "meets_memory_target": statistics.median(growth) / size < TARGET_MEMORY_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="JSON file to write")
    parser.add_argument("--workdir", help="where the DeepMoji files are written (reused)")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per file")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="parity-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files = write_files(workdir)
    report = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "targets": {"seconds": TARGET_SECONDS, "memory_ratio_to_file": TARGET_MEMORY_RATIO},
        "results": [measure(path, "deepmoji", args.runs) for path in files.values()],
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
