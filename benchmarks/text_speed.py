"""Tokenizer throughput beside the model's own cost, in one process.

Times, on the 25,434 sentences of DeepMoji's eight benchmark datasets (../shared):

- ``parity.text.tokenize`` (cleaning + token rules + special tokens) and ``parity.text.encode``
  (that + vocabulary lookup + post-padding to 30 ids), sentences/s;
- ``parity.text.simple.encode``, the approximate tokenizer it replaced;
- a full-size DeepMoji (50000 x 256, 2 x 512 BiLSTM, 64 classes; random weights) scoring the
  encoded ids (``parity.deepmoji_use`` path: eval, no grad, batch 64, post-padded to 30),
  sentences/s, so the share of the text pipeline in end-to-end scoring is visible;
- optionally DeepMoji's own Python 2 pipeline (``--python2``, the oracle's setup in
  tests/deepmoji_text_oracle.py), in a subprocess.

    python benchmarks/text_speed.py [--out out/text_speed.json] [--threads 1]
        [--model-sentences 2048]
        [--python2 python2.7 --python2-path /tmp/py2oracle --deepmoji /tmp/DeepMoji]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "deepmoji_benchmarks"
DATASETS = (
    "SS-Youtube",
    "SS-Twitter",
    "SE0714",
    "Olympic",
    "PsychExp",
    "SCv1",
    "SCv2-GEN",
    "kaggle-insults",
)
MAXLEN = 30
BATCH = 64

#: Python 2 timing of DeepMoji's own WordGenerator + SentenceTokenizer lookup (stdin: JSON).
PY2_TIMER = r"""
import sys, json, time, types
sys.path.insert(0, sys.argv[1])
for name in ("sklearn", "sklearn.model_selection"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["sklearn.model_selection"].train_test_split = None
from sentence_tokenizer import SentenceTokenizer
texts = json.loads(sys.stdin.read())
vocab = json.load(open(sys.argv[2]))
st = SentenceTokenizer(vocab, 30)
start = time.time()
for t in texts:
    w = st.wordgen.get_words(t)
    if w:
        st.find_tokens(w)
print(json.dumps({"seconds": time.time() - start}))
"""


def _texts() -> list[str]:
    texts = []
    for name in DATASETS:
        with open(DATA / f"{name}.jsonl", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f if line.strip()]
    return texts


def _rate(fn, texts: list[str], repeats: int) -> float:
    """Best-of-``repeats`` sentences per second of fn(texts)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-sentences", type=int, default=2048)
    parser.add_argument("--python2", default=None)
    parser.add_argument("--python2-path", default=None, help="its text-unidecode/emoji/numpy")
    parser.add_argument("--deepmoji", type=Path, default=None, help="DeepMoji checkout")
    args = parser.parse_args()

    import torch

    from parity.arch.deepmoji import DeepMoji, DeepMojiConfig
    from parity.text import encode, load_vocabulary, simple, tokenize

    torch.set_num_threads(args.threads)
    texts = _texts()
    vocab_path = DATA / "vocabulary.json"
    vocab = load_vocabulary(vocab_path)
    rates = {
        "tokenize": _rate(lambda ts: [tokenize(t) for t in ts], texts, args.repeats),
        "encode": _rate(
            lambda ts: encode(ts, vocab, MAXLEN, padding="post", truncating="post"),
            texts,
            args.repeats,
        ),
        "simple.encode": _rate(lambda ts: simple.encode(ts, vocab, MAXLEN), texts, args.repeats),
    }
    if args.python2 and args.deepmoji:
        res = subprocess.run(
            [args.python2, "-c", PY2_TIMER, str(args.deepmoji / "deepmoji"), str(vocab_path)],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": args.python2_path or ""},
        )
        rates["deepmoji (python 2)"] = len(texts) / json.loads(res.stdout)["seconds"]

    torch.manual_seed(0)
    model = DeepMoji(DeepMojiConfig()).eval()
    ids = encode(texts[: args.model_sentences], vocab, MAXLEN, padding="post", truncating="post")
    x = torch.from_numpy(ids.astype(np.int64))
    with torch.no_grad():
        model(x[:BATCH])  # warm-up (builds the C++ loop where available)
        start = time.perf_counter()
        for i in range(0, len(x), BATCH):
            model(x[i : i + BATCH])
        seconds = time.perf_counter() - start
    rates["model (full DeepMoji, batch 64, T=30)"] = len(x) / seconds
    result = {
        "sentences": len(texts),
        "tokens_per_sentence": float(np.mean([len(tokenize(t)) for t in texts[:5000]])),
        "sentences_per_second": {k: round(v, 1) for k, v in rates.items()},
        "encode_seconds_per_model_second": round(
            rates["model (full DeepMoji, batch 64, T=30)"] / rates["encode"], 3
        ),
        "threads": args.threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
