"""Train the small real Keras models shipped in weights/, deterministically, on SS-Youtube.

    python -m reference_keras.train --out weights/ [--data ../shared/data/deepmoji_benchmarks]

Why real models: random weights hide layout bugs (a transposed kernel of a near-symmetric random
matrix, a swapped gate with near-equal biases); trained weights are saturated, skewed and make
such bugs visible in the outputs. Texts go through ``parity.text.simple.encode`` (pre-padding,
pre-truncation), the same encoding the product side uses.

Writes: embedding_dense.keras, embedding_dense.h5 (Keras 3's legacy HDF5 writer),
deepmoji_small.keras, vocabulary.json (DeepMoji ids < the largest vocab_size used) and
train_report.json (accuracies, sizes, seeds, epochs, versions, sha256 of every file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from parity.text.simple import UNKNOWN_ID, encode, load_vocabulary, tokenize, tokens_to_ids
from reference_keras import deepmoji, embedding_dense

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "deepmoji_benchmarks"
DATASET = "SS-Youtube.jsonl"
SEED = 20170708  # any fixed number; this one is DeepMoji's arXiv date

# Model sizes. seq_len: SS-Youtube texts are short (median ~12 tokens, long tail to ~120), so 100
# truncates < 1% of texts for the Flatten model and 50 truncates 6-8% for the slower recurrent
# one (train_report.json "coverage"); pre-truncation keeps the end of longer ones.
EMBEDDING_DENSE = {"vocab_size": 10000, "seq_len": 100, "embedding_dim": 8, "num_classes": 2}
DEEPMOJI_SMALL = {
    "vocab_size": 5000,
    "embedding_dim": 32,
    "hidden_size": 32,
    "num_classes": 2,
    "gate": "hard_sigmoid_keras2",
}
DEEPMOJI_SEQ_LEN = 50
MAX_EPOCHS = 40
PATIENCE = 6
BATCH_SIZE = 32


def load_split(path: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """JSONL records -> {split: (texts, int labels)}."""
    splits: dict[str, tuple[list[str], list[int]]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            texts, labels = splits.setdefault(rec["split"], ([], []))
            texts.append(rec["text"])
            labels.append(int(rec["label"]))
    return {k: (t, np.asarray(y, dtype=np.int32)) for k, (t, y) in splits.items()}


def coverage(
    texts: Sequence[str], vocab: dict[str, int], vocab_size: int, seq_len: int
) -> dict[str, float]:
    """How much of the text the model sees: truncated texts and unknown tokens, as fractions."""
    ids = [tokens_to_ids(tokenize(t), vocab, vocab_size=vocab_size) for t in texts]
    tokens = sum(len(i) for i in ids)
    return {
        "texts_truncated": round(sum(len(i) > seq_len for i in ids) / len(ids), 4),
        "tokens_unknown": round(sum(i.count(UNKNOWN_ID) for i in ids) / max(tokens, 1), 4),
    }


def sha256(path: Path) -> str:
    """Hex digest of a file, recorded so a reader can tell the shipped file is this one."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    probs = np.asarray(model.predict(x, batch_size=256, verbose=0))
    pred = (probs[:, 0] > 0.5).astype(np.int32) if probs.shape[1] == 1 else probs.argmax(-1)
    return float((pred == y).mean())


def fit(
    make: Callable[[], keras.Model], data: dict[str, tuple[np.ndarray, np.ndarray]], seed: int
) -> tuple[keras.Model, dict[str, Any]]:
    """Seed, build, train with early stopping on val loss (best weights kept), score."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    model = make()
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=PATIENCE, restore_best_weights=True
    )
    start = time.perf_counter()
    hist = model.fit(
        *data["train"],
        validation_data=data["val"],
        epochs=MAX_EPOCHS,
        batch_size=BATCH_SIZE,
        shuffle=True,
        callbacks=[stop],
        verbose=0,
    )
    val_loss = hist.history["val_loss"]
    result = {
        "epochs_run": len(val_loss),
        "best_epoch": int(np.argmin(val_loss)) + 1,
        "train_seconds": round(time.perf_counter() - start, 1),
        "accuracy": {split: round(_accuracy(model, *data[split]), 4) for split in data},
        "majority_baseline": {
            split: round(float(max(y.mean(), 1 - y.mean())), 4) for split, (_, y) in data.items()
        },
        "params": int(model.count_params()),
    }
    return model, result


def _check_reload(path: Path, model: keras.Model, x: np.ndarray, **kwargs: Any) -> float:
    """The saved file must give the trained model's outputs; returns the max difference."""
    loaded = keras.models.load_model(path, **kwargs)
    got, want = (np.asarray(m.predict(x, verbose=0)) for m in (loaded, model))
    diff = np.abs(got - want)
    if diff.max() > 1e-6:
        raise RuntimeError(f"{path}: reloaded model differs from the trained one by {diff.max()}")
    return float(diff.max())


def _stripped(model: keras.Model) -> keras.Model:
    """An uncompiled copy with the trained weights: no optimizer state in the file (size)."""
    copy = type(model).from_config(model.get_config())  # clone_model would compile it again
    copy.set_weights(model.get_weights())
    return copy


def train(out: Path, data_dir: Path, seed: int = SEED) -> dict[str, Any]:
    """Train both models, write every file into ``out``; returns the report."""
    out.mkdir(parents=True, exist_ok=True)
    vocab = load_vocabulary(data_dir / "vocabulary.json")
    splits = load_split(data_dir / DATASET)
    report: dict[str, Any] = {
        "dataset": DATASET,
        "data_sha256": {name: sha256(data_dir / name) for name in (DATASET, "vocabulary.json")},
        "records": {k: len(v[0]) for k, v in splits.items()},
        "seed": seed,
        "max_epochs": MAX_EPOCHS,
        "early_stopping": f"val_loss, patience {PATIENCE}, restore_best_weights",
        "batch_size": BATCH_SIZE,
        "encoding": "parity.text.simple.encode, padding='pre', truncating='pre', unknown id 1",
        "versions": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "tensorflow": _tf_version(),
            "numpy": np.__version__,
        },
        "command": "python -m reference_keras.train --out weights/",
        "models": {},
    }

    # embedding_dense
    cfg = EMBEDDING_DENSE
    data = {
        k: (encode(t, vocab, cfg["seq_len"], vocab_size=cfg["vocab_size"]), y)
        for k, (t, y) in splits.items()
    }
    model, result = fit(lambda: embedding_dense.build(**cfg), data, seed)
    x_test = data["test"][0]
    # The .keras file keeps the Adam state (users' files usually carry one); the .h5 does not.
    model.save(out / "embedding_dense.keras")
    _stripped(model).save(out / "embedding_dense.h5")
    result["reload_max_diff"] = {
        name: _check_reload(out / name, model, x_test)
        for name in ("embedding_dense.keras", "embedding_dense.h5")
    }
    result["coverage"] = {
        k: coverage(t, vocab, cfg["vocab_size"], cfg["seq_len"]) for k, (t, _) in splits.items()
    }
    report["models"]["embedding_dense"] = {
        "config": cfg,
        **result,
        "files": list(result["reload_max_diff"]),
        "optimizer_state": {"embedding_dense.keras": "Adam, saved", "embedding_dense.h5": "none"},
    }

    # deepmoji_small
    cfg = DEEPMOJI_SMALL
    data = {
        k: (encode(t, vocab, DEEPMOJI_SEQ_LEN, vocab_size=cfg["vocab_size"]), y)
        for k, (t, y) in splits.items()
    }
    model, result = fit(lambda: deepmoji.build(**cfg), data, seed)
    path = out / "deepmoji_small.keras"
    _stripped(model).save(path)
    diff = _check_reload(path, model, data["test"][0], custom_objects=deepmoji.CUSTOM_OBJECTS)
    result["reload_max_diff"] = {path.name: diff}
    result["coverage"] = {
        k: coverage(t, vocab, cfg["vocab_size"], DEEPMOJI_SEQ_LEN) for k, (t, _) in splits.items()
    }
    report["models"]["deepmoji_small"] = {
        "config": {**cfg, "seq_len_trained": DEEPMOJI_SEQ_LEN},
        **result,
        "files": [path.name],
        "optimizer_state": {path.name: "none (file size)"},
    }

    # vocabulary: every id any shipped model can look up
    limit = max(EMBEDDING_DENSE["vocab_size"], DEEPMOJI_SMALL["vocab_size"])
    kept = dict(sorted(((w, i) for w, i in vocab.items() if i < limit), key=lambda wi: wi[1]))
    (out / "vocabulary.json").write_text(
        json.dumps(kept, indent=0, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    report["vocabulary"] = {
        "entries": len(kept),
        "source": f"DeepMoji vocabulary.json, id < {limit}",
    }
    files = sorted(
        p
        for p in out.iterdir()
        if p.suffix in {".keras", ".h5", ".json"} and p.name != "train_report.json"
    )
    report["files"] = {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files}
    (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _tf_version() -> str | None:
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf.__version__


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "weights")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if not (args.data / DATASET).is_file():
        parser.error(f"{args.data / DATASET} not found (pass --data)")
    report = train(args.out, args.data, args.seed)
    for name, res in report["models"].items():
        print(
            f"{name}: test accuracy {res['accuracy']['test']:.4f} "
            f"(majority {res['majority_baseline']['test']:.4f}), "
            f"{res['epochs_run']} epochs, best {res['best_epoch']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
