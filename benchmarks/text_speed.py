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

``--hostile`` instead times hostile texts (each shape once cost time quadratic in its length):
nanoseconds per UTF-8 byte of cleaning + token rules + special tokens, unbounded (as
``count_words`` runs them), at several sizes; linear cost keeps a row flat. Also the time of
``parity.text.tokenize`` itself (which cuts texts over ``MAX_TEXT_CHARS``) on the largest.

    python benchmarks/text_speed.py [--out out/text_speed.json] [--threads 1]
        [--model-sentences 2048]
        [--python2 python2.7 --python2-path /tmp/py2oracle --deepmoji /tmp/DeepMoji]
    python benchmarks/text_speed.py --hostile [--sizes 10000,40000,160000,640000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
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


#: Hostile shapes, n -> a text of about n UTF-8 bytes.
HOSTILE: dict[str, Callable[[int], str]] = {
    "1.1.1.1 (e-mail rule)": lambda n: "1." * (n // 2),
    "a-a-a-a (e-mail rule)": lambda n: "a-" * (n // 2),
    "ab--ab-- (hyphen runs)": lambda n: "ab--" * (n // 4),
    "aaabaaab (shortening)": lambda n: "aaab" * (n // 4),
    "www.www. (URL, shortening)": lambda n: "www." * (n // 4),
    "xxxx (one word)": lambda n: "x" * n,
    "a + U+0301 U+0316 (marks)": lambda n: "a" + "\u0301\u0316" * (n // 4),
    "U+FDFA (NFKC 18 chars)": lambda n: "\ufdfa" * (n // 3),
    "U+0F73 (NFKC 2 marks)": lambda n: "\u0f73" * (n // 3),
    "a + ' U+180E' (strip)": lambda n: "a" + " \u180e" * (n // 4),
}


def hostile(sizes: list[int], repeats: int) -> dict:
    """ns per byte of the unbounded pipeline on each hostile shape at each size."""
    from parity.text import tokenize
    from parity.text.normalize import clean
    from parity.text.tokenizer import process_word, split_tokens

    def pipeline(text: str) -> list[str]:
        return [process_word(t) for t in split_tokens(clean(text) or "")]

    pipeline("a\u0301\u0316" * 200)  # builds the combining-mark table once
    rows = {}
    print(f"{'shape':28s}" + "".join(f"{n:>12,d} B" for n in sizes) + "   tokenize(largest)")
    for name, make in HOSTILE.items():
        per_byte = []
        for n in sizes:
            text = make(n)
            seconds = min(_seconds(pipeline, text) for _ in range(repeats))
            per_byte.append(seconds / len(text.encode()) * 1e9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bounded = min(_seconds(tokenize, make(sizes[-1])) for _ in range(repeats))
        rows[name] = {"ns_per_byte": [round(v, 1) for v in per_byte], "tokenize_s": bounded}
        cells = "".join(f"{v:>10.1f} ns" for v in per_byte)
        print(f"{name:28s}{cells}   {bounded:.3f} s", flush=True)
    return {"sizes_bytes": sizes, "shapes": rows}


def _seconds(fn: Callable[[str], object], text: str) -> float:
    start = time.perf_counter()
    fn(text)
    return time.perf_counter() - start


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
    parser.add_argument("--hostile", action="store_true", help="time hostile texts instead")
    parser.add_argument("--sizes", default="10000,40000,160000,640000", help="--hostile bytes")
    args = parser.parse_args()
    if args.hostile:
        result = hostile([int(n) for n in args.sizes.split(",")], args.repeats)
        result |= {"python": platform.python_version(), "machine": platform.machine()}
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return

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
