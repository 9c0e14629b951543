"""Speed of a `parity port` package against the converted module it was written from.

The generated model.py runs its recurrent layers as plain per-step loops (keras_layers.py); the
converted module runs parity's fused loops (C++ where built). Both are timed side by side in one
process, interleaved, on the seed zoo's BiLSTM classifier at a realistic size and on the bundled
DeepMoji (weights/deepmoji_small.keras), with texts padded as real ones are (lengths spread over
the batch, pre- and post-padded):

    python benchmarks/port_speed.py out.json [--rounds 7] [--batch 32] [--length 50]

Figures are ratios (generated time / converted time) with the CPU named; absolute times on
shared machines drift.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: bilstm_classifier at the size of a small production text classifier.
SIZES = {"vocab_size": 20000, "embedding_dim": 128, "units": 128, "num_classes": 4}


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ids(batch: int, length: int, vocab: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    ids = np.zeros((batch, length), np.int64)
    for row in range(batch):
        real = int(rng.integers(max(1, length // 5), length + 1))
        tokens = rng.integers(1, vocab, real)
        if row % 2:
            ids[row, :real] = tokens
        else:
            ids[row, length - real :] = tokens
    return torch.from_numpy(ids)


def _time(model: torch.nn.Module, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model(ids)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=50)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    import parity
    from parity.codegen.port import _load_generated
    from reference_keras import bilstm_classifier

    report: dict[str, object] = {
        "cpu": _cpu(),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "length": args.length,
        "rounds": args.rounds,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        keras.utils.set_random_seed(0)
        bilstm = Path(tmp) / "bilstm.keras"
        bilstm_classifier.build(**SIZES).save(bilstm)
        sources = {
            "bilstm_classifier": bilstm,
            "deepmoji_small": REPO / "weights/deepmoji_small.keras",
        }
        for name, path in sources.items():
            converted = parity.load_keras(path)  # what a user gets: DeepMoji's pair
            result = parity.port(path, Path(tmp) / name)
            generated = _load_generated(result.out_dir, result.class_name)
            vocab = converted.embedding.num_embeddings
            ids = _ids(args.batch, args.length, vocab)
            for model in (converted, generated):  # warm-up
                _time(model, ids)
            times: dict[str, list[float]] = {"converted": [], "generated": []}
            for _ in range(args.rounds):
                times["converted"].append(_time(converted, ids))
                times["generated"].append(_time(generated, ids))
            median = {k: statistics.median(v) for k, v in times.items()}
            report["models"][name] = {
                "seconds_median": median,
                "generated_over_converted": median["generated"] / median["converted"],
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
