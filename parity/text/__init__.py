"""DeepMoji's text pipeline, reproduced exactly and without Keras: text -> the ids its models saw.

- ``tokenize(text)``: the words DeepMoji looks up (``parity.text.normalize`` cleaning, the
  token rules of ``parity.text.tokenizer``, shortened runs, special tokens). Its cost is linear
  in the text's length, and a text over ``MAX_TEXT_CHARS`` characters (hostile input: no real
  sentence is that long) is cut to its side that truncation keeps, with a
  ``TextTruncatedWarning``.
- ``encode(texts, vocabulary, maxlen)``: ids, padded and truncated with Keras' ``pad_sequences``
  semantics. DeepMoji's own ``SentenceTokenizer`` post-pads and post-truncates: pass
  ``padding="post", truncating="post"`` to get its arrays; the default stays Keras' "pre" (the
  reference models here were trained that way).
- ``extend_vocabulary``: new training words for fine-tuning, as DeepMoji adds them.
- ``parity.text.simple``: the approximate tokenizer the bundled small models were trained with.

Checked against ids DeepMoji's own code computed under Python 2.7 for all 25,434 sentences of
its eight benchmark datasets (tests/test_text_deepmoji.py, tests/golden/deepmoji-text-ids.npz).
numpy only: the product side runs where Keras and TensorFlow are absent.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from parity.text.normalize import clean
from parity.text.sequences import PAD_ID, PADDING_MODES, pad_sequences
from parity.text.tokenizer import (
    BREAK_TOKEN,
    MASK_TOKEN,
    MAX_TEXT_CHARS,
    MENTION_TOKEN,
    NUMBER_TOKEN,
    SPECIAL_TOKENS,
    UNKNOWN_TOKEN,
    URL_TOKEN,
    TextTruncatedWarning,
    process_word,
    split_tokens,
    truncate_text,
)
from parity.text.vocab import (
    DEFAULT_EXTEND,
    UNKNOWN_ID,
    count_words,
    extend_vocabulary,
    load_vocabulary,
    save_vocabulary,
    tokens_to_ids,
)

__all__ = [
    "BREAK_TOKEN",
    "DEFAULT_EXTEND",
    "MASK_TOKEN",
    "MAX_TEXT_CHARS",
    "MENTION_TOKEN",
    "NUMBER_TOKEN",
    "PADDING_MODES",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "UNKNOWN_ID",
    "UNKNOWN_TOKEN",
    "URL_TOKEN",
    "TextTruncatedWarning",
    "count_words",
    "deepmoji_maxlen",
    "encode",
    "extend_vocabulary",
    "load_vocabulary",
    "pad_sequences",
    "save_vocabulary",
    "split_tokens",
    "tokenize",
    "tokens_to_ids",
]

#: DeepMoji's fine-tuning length: this percentile of raw token counts, rounded up to ten.
MAXLEN_PERCENTILE = 80.0


def tokenize(text: str, *, truncating: str = "post") -> list[str]:
    """The words DeepMoji's ``SentenceTokenizer`` looks up for ``text`` (lower-case; special
    tokens in their upper-case vocabulary spelling).

    A text over ``MAX_TEXT_CHARS`` characters, raw or once cleaned (cleaning can lengthen it),
    is cut to that many at a word boundary, keeping its start (``truncating="post"``) or its
    end (``"pre"``): the tokens ``pad_sequences`` would keep with that ``truncating``. A
    ``TextTruncatedWarning`` says so.
    """
    if truncating not in PADDING_MODES:
        raise ValueError(f"truncating must be one of {PADDING_MODES}, got {truncating!r}")
    kept = truncate_text(text, truncating)
    cleaned = clean(kept)
    assert cleaned is not None  # only a vocabulary count skips sentences
    short = truncate_text(cleaned, truncating)
    if len(kept) < len(text) or len(short) < len(cleaned):
        side = "first" if truncating == "post" else "last"
        warnings.warn(
            f"tokenize: a text of {len(text):,} characters was cut to its {side} "
            f"{MAX_TEXT_CHARS:,} or fewer, raw and cleaned (parity.text.MAX_TEXT_CHARS); "
            f"truncating={truncating!r} feeds a model only its {side} tokens anyway",
            TextTruncatedWarning,
            stacklevel=2,
        )
    return [process_word(t) for t in split_tokens(short)]


def encode(
    texts: str | Iterable[str],
    vocabulary: Mapping[str, int],
    maxlen: int | None,
    *,
    vocab_size: int | None = None,
    padding: str = "pre",
    truncating: str = "pre",
) -> np.ndarray:
    """Texts -> (N, maxlen) int32 ids; ``padding="post", truncating="post"`` gives DeepMoji's
    ``SentenceTokenizer(vocabulary, maxlen).tokenize_sentences(texts)[0]``.

    A single string is one text (N = 1), never a sequence of characters. A text without any
    token is a row of padding (DeepMoji's tokenizer fails on it). ``vocab_size``: ids the
    model's embedding has; words beyond it become the unknown id. A text over
    ``MAX_TEXT_CHARS`` characters is cut on the side ``truncating`` keeps (``tokenize``).
    """
    if isinstance(texts, str):
        texts = [texts]
    ids = [
        tokens_to_ids(tokenize(t, truncating=truncating), vocabulary, vocab_size=vocab_size)
        for t in texts
    ]
    return pad_sequences(ids, maxlen, padding=padding, truncating=truncating)


def deepmoji_maxlen(texts: Sequence[str]) -> int:
    """The text length DeepMoji's fine-tuning picks for a dataset
    (``calculate_batchsize_maxlen``): the 80th percentile of token counts of the raw texts
    (tokenizer rules only, before cleaning), rounded up to a multiple of ten."""
    lengths = [len(split_tokens(t)) for t in texts]
    return math.ceil(float(np.percentile(lengths, MAXLEN_PERCENTILE)) / 10.0) * 10
