"""Evidence on real data: Keras and PyTorch fine-tuning of the same converted DeepMoji.

    python -m reference_keras.finetune_evidence --out out/finetune

1. Dropout off: Keras' transfer model (weights/deepmoji_small.keras with a fresh head) is saved,
   converted with parity.load_keras, and both are fine-tuned with the same method, stages, batch
   order and early stopping. Every batch loss and validation loss is compared.
2. Dropout on (DeepMoji's 0.25 / 0.5): each side fine-tunes from the same start with several
   seeds; the test metric's mean and spread per side are compared (dropout masks differ between
   frameworks, so only the distribution can agree).

Prints a table and writes evidence.json (all curves) into --out. CPU, small model: minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import torch

from parity import train as ft
from parity.conventions import DEEPMOJI_FINETUNE_EMBED_DROPOUT, DEEPMOJI_FINETUNE_FINAL_DROPOUT
from parity.text import load_vocabulary
from reference_keras import finetune as kft

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "deepmoji_benchmarks"
MODEL = REPO / "weights" / "deepmoji_small.keras"
VOCAB = REPO / "weights" / "vocabulary.json"
MAXLEN = 50


def _data(name: str, data_dir: Path, vocab_size: int) -> ft.TaskData:
    """Encoded splits; a multi-label set is reduced to its first class (one binary model of
    DeepMoji's class-average fine-tuning)."""
    splits = ft.read_jsonl(data_dir / f"{name}.jsonl")
    data = ft.encode_dataset(splits, load_vocabulary(VOCAB), MAXLEN, vocab_size=vocab_size)
    return ft.binary_view(data, 0) if data.task == "multilabel" else data


def _probs_keras(model: Any, data: ft.TaskData) -> dict[str, np.ndarray]:
    return {s: kft.predict(model, data.ids[s]) for s in ("val", "test")}


def _probs_torch(model: torch.nn.Module, data: ft.TaskData) -> dict[str, np.ndarray]:
    return {s: ft.predict(model, data.ids[s]) for s in ("val", "test")}


def no_dropout_run(name: str, method: str, opts: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """Same start, same batches, dropout off: per-step loss differences and final metrics."""
    source = kft.load(MODEL)
    data = _data(name, data_dir, source.get_layer("embedding").input_dim)
    metric = ft.metric_for(name, data.task)
    with tempfile.TemporaryDirectory() as tmp:
        kmodel, tmodel = kft.start_pair(source, data.num_classes, tmp, seed=opts["seed"])
    t0 = time.perf_counter()
    krec = kft.finetune(kmodel, data, method, **opts)
    t1 = time.perf_counter()
    tuned, hist = ft.finetune(tmodel, data, method, new_head=False, progress=False, **opts)
    t2 = time.perf_counter()
    pairs = list(zip(krec, hist.stages, strict=True))
    batch = np.concatenate(
        [np.abs(np.subtract(k["batch_loss"], t["batch_loss"])) for k, t in pairs]
    )
    val = np.concatenate([np.abs(np.subtract(k["val_loss"], t["val_loss"])) for k, t in pairs])
    steps = [len(k["batch_loss"]) for k, _ in pairs] == [len(t["batch_loss"]) for _, t in pairs]
    keras_score = ft.score(metric, _probs_keras(kmodel, data), data.targets)
    torch_score = ft.score(metric, _probs_torch(tuned, data), data.targets)
    return {
        "dataset": name,
        "method": method,
        "task": data.task,
        "metric": metric,
        "steps": len(batch),
        "same_stage_lengths": steps,
        "max_batch_loss_diff": float(batch.max()),
        "max_val_loss_diff": float(val.max()),
        "final_val_loss": [krec[-1]["best_val_loss"], hist.stages[-1]["best_val_loss"]],
        "keras_test": keras_score["test"],
        "torch_test": torch_score["test"],
        "seconds": {"keras": round(t1 - t0, 1), "torch": round(t2 - t1, 1)},
        "keras_stages": krec,
        "torch_stages": hist.stages,
    }


def dropout_runs(
    name: str, method: str, opts: dict[str, Any], seeds: Sequence[int], data_dir: Path
) -> dict[str, Any]:
    """Dropout on: the test metric per seed on each side, from the same converted start."""
    import keras

    source = kft.load(MODEL)
    data = _data(name, data_dir, source.get_layer("embedding").input_dim)
    metric = ft.metric_for(name, data.task)
    rates = {
        "embed_dropout": DEEPMOJI_FINETUNE_EMBED_DROPOUT,
        "final_dropout": DEEPMOJI_FINETUNE_FINAL_DROPOUT,
    }
    scores: dict[str, list[float]] = {"keras": [], "torch": []}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            kmodel, tmodel = kft.start_pair(source, data.num_classes, tmp, seed=0, **rates)
        keras.utils.set_random_seed(seed)
        kft.finetune(kmodel, data, method, **{**opts, "seed": seed})
        scores["keras"].append(ft.score(metric, _probs_keras(kmodel, data), data.targets)["test"])
        torch.manual_seed(seed)
        tuned, _ = ft.finetune(
            tmodel, data, method, new_head=False, progress=False, **{**opts, "seed": seed}
        )
        scores["torch"].append(ft.score(metric, _probs_torch(tuned, data), data.targets)["test"])
    return {
        "dataset": name,
        "method": method,
        "metric": metric,
        "seeds": list(seeds),
        "dropout": rates,
        "scores": scores,
        "mean": {k: float(np.mean(v)) for k, v in scores.items()},
        "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in scores.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "finetune")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--exact",
        nargs="*",
        default=["SS-Youtube:chain-thaw", "PsychExp:last", "SE0714:full"],
        help="dataset:method pairs run with dropout off",
    )
    parser.add_argument(
        "--spread",
        nargs="*",
        default=["SS-Youtube:last"],
        help="dataset:method pairs run with dropout on, several seeds",
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2, help="per stage (max)")
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    opts = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "patience": args.patience,
        "seed": 0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"options": opts, "exact": [], "spread": []}
    print("dropout off: same start, same batches (float32)")
    print(
        f"{'dataset':12} {'method':11} {'steps':>5} {'max|dloss| batch':>17} "
        f"{'max|dloss| val':>15} {'metric':8} {'keras':>7} {'torch':>7}"
    )
    for pair in args.exact:
        name, method = pair.split(":")
        r = no_dropout_run(name, method, opts, args.data)
        results["exact"].append(r)
        print(
            f"{name:12} {method:11} {r['steps']:5d} {r['max_batch_loss_diff']:17.2e} "
            f"{r['max_val_loss_diff']:15.2e} {r['metric']:8} {r['keras_test']:7.4f} "
            f"{r['torch_test']:7.4f}",
            flush=True,
        )
    if args.spread:
        rates = f"{DEEPMOJI_FINETUNE_EMBED_DROPOUT}/{DEEPMOJI_FINETUNE_FINAL_DROPOUT}"
        print(f"\ndropout on ({rates}), seeds {args.seeds}: test metric mean +- std")
    for pair in args.spread:
        name, method = pair.split(":")
        r = dropout_runs(name, method, opts, args.seeds, args.data)
        results["spread"].append(r)
        mean, std, scores = r["mean"], r["std"], r["scores"]
        print(
            f"{name:12} {method:11} {r['metric']:8} "
            f"keras {mean['keras']:.4f} +- {std['keras']:.4f}  "
            f"torch {mean['torch']:.4f} +- {std['torch']:.4f}  "
            f"(keras {np.round(scores['keras'], 4).tolist()}, "
            f"torch {np.round(scores['torch'], 4).tolist()})",
            flush=True,
        )
    (args.out / "evidence.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
