"""The README's main job: convert the bundled Keras models, then show PyTorch agrees with Keras.

`make demo` (or `python -m reference_keras.demo`) converts weights/*.keras with `parity convert`
into out/, runs Keras and the converted PyTorch model on real sentences (the SS-Youtube test
split when ../shared is beside the checkout, else a few sentences of our own) and prints the
largest difference, label agreement, accuracy and example predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import torch

import parity
from parity.cli import main as parity_cli
from parity.text.simple import encode, load_vocabulary
from reference_keras.deepmoji import CUSTOM_OBJECTS

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
SHARED_DATA = REPO.parent / "shared" / "data" / "deepmoji_benchmarks"
DATASET = "SS-Youtube.jsonl"
LABELS = ("negative", "positive")

#: Sentences of our own, used when ../shared is absent (the product never needs it).
EXAMPLES = [
    ("I love this song, it is beautiful and makes me so happy", 1),
    ("This is the worst video I have ever seen, what a waste of time", 0),
    ("Great job guys, awesome performance!", 1),
    ("so boring and stupid, I hate it", 0),
    ("Thank you for sharing, this was really helpful", 1),
    ("terrible sound, awful singing, please stop", 0),
]


@dataclass(frozen=True)
class Bundled:
    arch: str
    keras_file: str
    maxlen: int


BUNDLED = (
    Bundled("embedding_dense", "embedding_dense.keras", 100),
    Bundled("deepmoji", "deepmoji_small.keras", 50),
)


def load_texts() -> tuple[list[str], np.ndarray, str]:
    path = SHARED_DATA / DATASET
    if not path.exists():
        texts, labels = zip(*EXAMPLES, strict=True)
        return list(texts), np.array(labels), "example sentences (../shared not found)"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    test = [r for r in records if r["split"] == "test"]
    labels = np.array([r["label"] for r in test])
    return [r["text"] for r in test], labels, f"{DATASET} test split"


def positive_probability(probs: np.ndarray) -> np.ndarray:
    """P(positive): one sigmoid unit (DeepMoji's binary head) or the softmax's second column."""
    return probs[:, 0] if probs.shape[1] == 1 else probs[:, 1]


def run(bundled: Bundled, texts: list[str], labels: np.ndarray, out: Path) -> None:
    src, dst = WEIGHTS / bundled.keras_file, out / f"{Path(bundled.keras_file).stem}.safetensors"
    shown = f"{os.path.relpath(src)} {os.path.relpath(dst)} --arch {bundled.arch}"
    print(f"\n$ parity convert {shown}")
    if parity_cli(["convert", str(src), str(dst), "--arch", bundled.arch]) != 0:
        raise SystemExit(1)
    vocabulary = load_vocabulary(WEIGHTS / "vocabulary.json")
    model = parity.load(dst)
    ids = encode(texts, vocabulary, bundled.maxlen, vocab_size=model.config.vocab_size)

    keras_model = keras.models.load_model(src, custom_objects=CUSTOM_OBJECTS, compile=False)
    keras_probs = np.asarray(keras_model(ids, training=False), dtype=np.float64)
    attention = None
    with torch.no_grad():
        if bundled.arch == "deepmoji":
            torch_probs, attention = model(torch.from_numpy(ids).long(), return_attention=True)
            attention = attention.numpy()
        else:
            torch_probs = model(torch.from_numpy(ids).long())
        torch_probs = torch_probs.double().numpy()
    words = {index: word for word, index in vocabulary.items()}

    diff = np.abs(keras_probs - torch_probs)
    keras_pos, torch_pos = positive_probability(keras_probs), positive_probability(torch_probs)
    keras_label, torch_label = keras_pos > 0.5, torch_pos > 0.5
    print(f"{bundled.arch}: {len(texts)} sentences")
    print(f"  max |Keras - PyTorch| probability: {diff.max():.3g} (mean {diff.mean():.3g})")
    print(f"  predicted labels agree: {int((keras_label == torch_label).sum())}/{len(texts)}")
    print(
        f"  accuracy: Keras {np.mean(keras_label == labels):.4f}, "
        f"PyTorch {np.mean(torch_label == labels):.4f}"
    )
    attends = "  most attended word" if attention is not None else ""
    print(f"  {'P(positive) Keras':>18} {'PyTorch':>10}  {'label':8}  text{attends}")
    for i in range(min(6, len(texts))):
        text = texts[i].replace("\n", " ")
        text = text if len(text) <= 50 else text[:47] + "..."
        line = f"  {keras_pos[i]:18.6f} {torch_pos[i]:10.6f}  {LABELS[labels[i]]:8}  {text:50}"
        if attention is not None:
            line += f"  {words.get(int(ids[i, attention[i].argmax()]), '?')!r}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out", help="where converted files go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    texts, labels, source = load_texts()
    print(f"Keras {keras.__version__} vs PyTorch {torch.__version__}, on {source}")
    for bundled in BUNDLED:
        run(bundled, texts, labels, args.out.resolve())


if __name__ == "__main__":
    main()
