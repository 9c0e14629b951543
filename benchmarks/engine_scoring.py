"""Throughput of corpus scoring inside Ray Data (parity.engines) with 1 and 2 workers.

    python benchmarks/engine_scoring.py --data ../shared/data/deepmoji_benchmarks/SS-Youtube.jsonl \
        [--model weights/deepmoji_small.keras] [--repeat 4] [--workers 1 2] [--out out/engine.json]

Scores every text of the file (``--repeat`` times over) with the model: once directly in this
process (BatchScorer, one torch thread), then through ``ray.data.Dataset.map_batches`` with N
actor workers (one CPU and one model copy each). Each Ray figure is a whole job: actors start,
load the model, score, and results come back (``materialize``), the way a batch job runs; the
first, untimed pass warms Ray itself. "scoring" is the same job from the first batch's start to
the last batch's end (actor start-up and model loading left out). Needs the ``ray`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from parity.engines import BatchScorer, score_with_ray


class TimedScorer(BatchScorer):
    """BatchScorer that stamps each batch's start and end (wall clock, seconds)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.time()
        out = super().__call__(batch)
        n = len(batch["text"])
        return {**out, "t0": np.full(n, start), "t1": np.full(n, time.time())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="JSONL with a text field (all splits are used)")
    p.add_argument("--model", default="weights/deepmoji_small.keras")
    p.add_argument("--vocab", default=None, help="default: vocabulary.json beside the model")
    p.add_argument("--repeat", type=int, default=4, help="passes over the texts per job")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", default=None, help="JSON file for the figures")
    args = p.parse_args()
    with open(args.data, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()] * args.repeat
    results: dict[str, object] = {"texts": len(texts), "model": args.model, "cpus": os.cpu_count()}

    scorer = BatchScorer(args.model, args.vocab, batch_size=args.batch_size, threads=1)
    start = time.perf_counter()
    direct = scorer({"text": np.array(texts, dtype=object)})["probs"]
    results["direct, 1 thread"] = len(texts) / (time.perf_counter() - start)

    import ray
    import ray.data

    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    ds = ds.materialize()
    score_with_ray(ds, args.model, args.vocab, workers=1, batch_size=args.batch_size).materialize()
    for n in args.workers:
        start = time.perf_counter()
        scored = score_with_ray(
            ds,
            args.model,
            args.vocab,
            workers=n,
            batch_size=args.batch_size,
            scorer_class=TimedScorer,
        ).materialize()
        seconds = time.perf_counter() - start
        rows = sorted(scored.take_all(), key=lambda r: r["id"])
        worst = float(np.max(np.abs(np.stack([r["probs"] for r in rows]) - direct)))
        scoring = max(r["t1"] for r in rows) - min(r["t0"] for r in rows)
        results[f"ray, {n} worker(s), whole job"] = len(texts) / seconds
        results[f"ray, {n} worker(s), scoring"] = len(texts) / scoring
        results[f"ray, {n} worker(s) max abs diff vs direct"] = worst
    ray.shutdown()
    for key, value in results.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
