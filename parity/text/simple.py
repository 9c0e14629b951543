"""The approximate tokenizer the bundled small models (weights/, tests/golden) were trained with.

Kept so those models are fed what they saw: lowercase words with apostrophes, emoticons, runs
of one punctuation mark cut to two, single symbols/emoji; @mentions, URLs and numbers become
DeepMoji's special tokens. It is *not* DeepMoji's tokenizer: ``parity.text.tokenize`` /
``parity.text.encode`` are, exactly. Padding and lookup are the shared ``parity.text`` ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

from parity.text.sequences import PAD_ID, PADDING_MODES, pad_sequences
from parity.text.tokenizer import BREAK_TOKEN, MENTION_TOKEN, NUMBER_TOKEN, UNKNOWN_TOKEN, URL_TOKEN
from parity.text.vocab import UNKNOWN_ID, load_vocabulary, tokens_to_ids

__all__ = [
    "PADDING_MODES",
    "PAD_ID",
    "UNKNOWN_ID",
    "UNKNOWN_TOKEN",
    "encode",
    "load_vocabulary",
    "pad_sequences",
    "tokenize",
    "tokens_to_ids",
]

#: Runs of one punctuation mark are cut to this length: DeepMoji's vocabulary holds "!!", "..",
#: "??" and other doubled marks but no run of three or more, so "!!!!" would otherwise be unknown.
MAX_MARK_RUN = 2

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
