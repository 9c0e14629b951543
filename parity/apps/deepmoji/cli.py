"""`parity deepmoji`: emoji for texts, and batch scoring of files, with a converted DeepMoji.

    parity deepmoji emojize "I love mom's cooking" --model deepmoji.h5 [--top-k 5] [--json]
    parity deepmoji score texts.txt|.jsonl|.csv scores.jsonl|.csv --model M [--features]

MODEL is DeepMoji's weight file (or any file ``parity convert`` reads, or a parity
.safetensors); the vocabulary is --vocab or vocabulary.json beside MODEL; the emoji are
DeepMoji's 64 (``parity.apps.deepmoji.EMOJIS``) unless --emojis names an emoji_unicode.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from parity.api import load_model
from parity.apps.deepmoji.emoji import DEFAULT_TOP_K, EMOJIS, emojize, load_emojis
from parity.apps.deepmoji.pipeline import DEFAULT_BATCH_SIZE
from parity.apps.deepmoji.scoring import score_file
from parity.conventions import HARD_SIGMOID_VARIANTS
from parity.errors import error_line
from parity.inference import DEFAULT_TEXT_LENGTH
from parity.text import load_vocabulary
from parity.text.vocab import VOCABULARY_FILE


def _load(args: argparse.Namespace):
    model = load_model(args.model, arch=args.arch, hard_sigmoid=args.hard_sigmoid)
    vocab_path = args.vocab or Path(args.model).parent / VOCABULARY_FILE
    if args.vocab is None and not Path(vocab_path).is_file():
        raise FileNotFoundError(f"no {VOCABULARY_FILE} beside {args.model}; pass --vocab")
    emojis = load_emojis(args.emojis) if args.emojis else EMOJIS
    return model, load_vocabulary(vocab_path), emojis


def _fail(message: str) -> int:
    print(f"parity: error: {error_line(message)}", file=sys.stderr)
    return 1


def _emojize(args: argparse.Namespace) -> int:
    try:
        model, vocab, emojis = _load(args)
        results = emojize(model, args.texts, vocab, k=args.top_k, maxlen=args.maxlen, emojis=emojis)
    except ValueError as exc:  # wrong emoji list, not a DeepMoji: one line, no traceback
        return _fail(str(exc))
    for text, top in zip(args.texts, results, strict=True):
        if args.json:
            rec = {"text": text, "emojis": [e for e, _ in top], "probs": [p for _, p in top]}
            print(json.dumps(rec, ensure_ascii=False))
        else:
            print(" ".join(f"{e} {p:.3f}" for e, p in top) + f"  {text}")
    return 0


def _score(args: argparse.Namespace) -> int:
    try:
        model, vocab, emojis = _load(args)
        n = _score_file(args, model, vocab, emojis)
    except (ValueError, json.JSONDecodeError) as exc:
        return _fail(f"{args.src}: {exc}" if isinstance(exc, json.JSONDecodeError) else str(exc))
    print(f"scored {n} texts -> {args.dst}", file=sys.stderr)
    return 0


def _score_file(args: argparse.Namespace, model, vocab, emojis) -> int:
    return score_file(
        model,
        vocab,
        args.src,
        args.dst,
        k=args.top_k,
        maxlen=args.maxlen,
        batch_size=args.batch_size,
        emojis=emojis,
        features=args.features,
        field=args.field,
        progress=False if args.quiet else None,
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="DeepMoji weights (.h5/.keras) or .safetensors")
    p.add_argument("--vocab", type=Path, default=None, help=f"default: {VOCABULARY_FILE} beside")
    p.add_argument("--emojis", type=Path, default=None, help="emoji_unicode.csv (default: 64)")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    p.add_argument(
        "--maxlen",
        type=int,
        default=None,
        help=f"tokens per text (default: the model's own input length, else {DEFAULT_TEXT_LENGTH})",
    )
    p.add_argument("--arch", default=None, help="for Keras files (default: from the file)")
    p.add_argument(  # not parity.cli.options': parity.cli imports this module
        "--hard-sigmoid",
        choices=HARD_SIGMOID_VARIANTS,
        help="hard sigmoid variant: keras2 = clip(0.2x+0.5), keras3 = relu6(x+3)/6 "
        "(default: decided from the file)",
    )


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `parity deepmoji` (parity.cli.COMMANDS)."""
    p = commands.add_parser(
        "deepmoji",
        help="emoji for texts and batch scoring with a converted DeepMoji",
        description="Use a converted 64-class DeepMoji: top-k emoji for texts, or score a file.",
    )
    sub = p.add_subparsers(dest="deepmoji_command", required=True, metavar="ACTION")
    e = sub.add_parser("emojize", help="top-k emoji with probabilities for texts")
    e.add_argument("texts", nargs="+", help="texts to score")
    e.add_argument("--json", action="store_true", help="one JSON object a line")
    _common(e)
    e.set_defaults(run=_emojize)
    s = sub.add_parser("score", help="score a .txt/.jsonl/.csv file into .jsonl/.csv")
    s.add_argument("src", help="texts: .txt (one a line), .jsonl (field), .csv (column)")
    s.add_argument("dst", help="output .jsonl or .csv")
    s.add_argument("--field", default="text", help="JSONL field / CSV column (default: text)")
    s.add_argument("--features", action="store_true", help="also write the 2304-dim features")
    s.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(s)
    s.set_defaults(run=_score)
