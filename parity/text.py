"""Turn raw text into the id matrices the Keras models were trained on, without Keras.

Two halves, kept apart so each can be checked on its own:

- ``tokenize``: a small, documented tokenizer in the spirit of DeepMoji's (lowercase words with
  apostrophes, emoticons, runs of one punctuation mark, single symbols/emoji; @mentions, URLs and
  numbers become DeepMoji's special tokens). It is not a byte-exact copy of DeepMoji's tokenizer;
  words it splits differently only fall back to the unknown id.
- ``pad_sequences`` / ``encode``: Keras ``pad_sequences`` semantics (pad id 0, default
  ``padding="pre"``, ``truncating="pre"``), which *is* reproduced exactly and tested against
  ``keras.utils.pad_sequences``.

numpy only: the product side must run where Keras and TensorFlow are absent.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from parity.conventions import MASK_VALUE

# --- DeepMoji vocabulary facts (DeepMoji vocabulary.json / deepmoji/global_variables.py) -------
# ids 0-9 are reserved: 0 mask/padding, 1 unknown, 2 @mention, 3 url, 4 number, 5 line break.
#: Padding id; equal to the Embedding(mask_zero=True) mask value.
PAD_ID = MASK_VALUE
#: DeepMoji's "CUSTOM_UNKNOWN" id: every out-of-vocabulary (or id >= vocab_size) word maps here.
UNKNOWN_ID = 1
UNKNOWN_TOKEN = "CUSTOM_UNKNOWN"
MENTION_TOKEN = "CUSTOM_AT"
URL_TOKEN = "CUSTOM_URL"
NUMBER_TOKEN = "CUSTOM_NUMBER"
BREAK_TOKEN = "CUSTOM_BREAK"

#: Runs of one punctuation mark are cut to this length: DeepMoji's vocabulary holds "!!", "..",
#: "??" and other doubled marks but no run of three or more, so "!!!!" would otherwise be unknown.
MAX_MARK_RUN = 2

PADDING_MODES = ("pre", "post")

# One alternative per token kind, tried left to right; the first that matches wins.
_TOKEN_RE = re.compile(
    r"""
    (?P<url>(?:https?://|www\.)\S+)
  | (?P<mention>@\w+)
  | (?P<number>\d+(?:[.,:]\d+)*(?!\w))                 # 12, 3.5, 1,000, 10:30 (not "5sos")
  | (?P<emoticon>[:;=][-'^]?(?:[()\[\]/\\|*]+|[dDpPoO3](?!\w)) | [()][-'^]?[:;=])  # :) ;-( :D (:
  | (?P<word>\#?[^\W_](?:\w|'(?=[^\W_]))*)             # words, don't, it's, #hashtags, 5sos
  | (?P<newline>\n)
  | (?P<repeat>(?P<mark>[^\w\s])(?P=mark)+)             # !!, .., ??, --
  | (?P<symbol>[^\w\s]|_)                               # any other single char, emoji included
    """,
    re.VERBOSE,
)
_SPECIAL = {
    "url": URL_TOKEN,
    "mention": MENTION_TOKEN,
    "number": NUMBER_TOKEN,
    "newline": BREAK_TOKEN,
}


def load_vocabulary(path: str | os.PathLike[str]) -> dict[str, int]:
    """Read a DeepMoji-style ``{word: id}`` JSON file, checking ids are non-negative ints."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise TypeError(f"{os.fspath(path)}: expected a JSON object word -> id")
    vocab: dict[str, int] = {}
    for word, idx in raw.items():
        if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
            raise ValueError(f"{os.fspath(path)}: id of {word!r} is {idx!r}, not an int >= 0")
        vocab[word] = idx
    return vocab


def tokenize(text: str) -> list[str]:
    """Split text into lowercase tokens; @mentions, URLs, numbers, line breaks -> special tokens.

    Rules (first match wins): URL -> ``CUSTOM_URL``; ``@name`` -> ``CUSTOM_AT``; a number
    (``12``, ``3.5``, ``1,000``) -> ``CUSTOM_NUMBER``; an emoticon (``:)``, ``;-)``, ``(:``);
    a word (letters/digits/underscore with inner apostrophes: ``don't``; ``#tags`` keep their
    ``#``); ``\\n`` -> ``CUSTOM_BREAK``; a run of one repeated punctuation mark, cut to two
    (``!!!`` -> ``!!``); otherwise each remaining non-space character (punctuation, emoji) is a
    token of its own.
    The special tokens keep their upper-case vocabulary spelling.
    """
    tokens: list[str] = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if kind in _SPECIAL:
            tokens.append(_SPECIAL[kind])
        elif kind == "repeat":
            tokens.append(m.group(0)[:MAX_MARK_RUN])
        else:
            tokens.append(m.group(0).lower())
    return tokens


def tokens_to_ids(
    tokens: Iterable[str], vocabulary: Mapping[str, int], *, vocab_size: int | None = None
) -> list[int]:
    """Look tokens up; unknown words and ids >= vocab_size (the model's Embedding rows) -> 1."""
    ids = []
    for tok in tokens:
        idx = vocabulary.get(tok, UNKNOWN_ID)
        if vocab_size is not None and idx >= vocab_size:
            idx = UNKNOWN_ID
        ids.append(idx)
    return ids


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    maxlen: int | None = None,
    *,
    padding: str = "pre",
    truncating: str = "pre",
    value: int = PAD_ID,
) -> np.ndarray:
    """Keras ``pad_sequences`` for int ids: (N, maxlen) int32, default pre-pad, pre-truncate.

    ``maxlen=None`` uses the longest sequence; empty sequences become all-padding rows.
    """
    for name, mode in (("padding", padding), ("truncating", truncating)):
        if mode not in PADDING_MODES:
            raise ValueError(f"{name} must be one of {PADDING_MODES}, got {mode!r}")
    lengths = [len(s) for s in sequences]
    if maxlen is None:
        maxlen = max(lengths, default=0)
    elif maxlen < 1:
        raise ValueError(f"maxlen must be >= 1 or None, got {maxlen}")
    out = np.full((len(sequences), maxlen), value, dtype=np.int32)
    for row, seq in enumerate(sequences):
        if not len(seq):
            continue
        kept = np.asarray(seq[-maxlen:] if truncating == "pre" else seq[:maxlen], dtype=np.int32)
        if padding == "pre":
            out[row, maxlen - len(kept) :] = kept
        else:
            out[row, : len(kept)] = kept
    return out


def encode(
    texts: str | Iterable[str],
    vocabulary: Mapping[str, int],
    maxlen: int | None,
    *,
    vocab_size: int | None = None,
    padding: str = "pre",
    truncating: str = "pre",
) -> np.ndarray:
    """Texts -> (N, maxlen) int32 ids exactly as the reference Keras models were fed.

    A single string is one text (N = 1), never a sequence of characters.
    """
    if isinstance(texts, str):
        texts = [texts]
    ids = [tokens_to_ids(tokenize(t), vocabulary, vocab_size=vocab_size) for t in texts]
    return pad_sequences(ids, maxlen, padding=padding, truncating=truncating)
