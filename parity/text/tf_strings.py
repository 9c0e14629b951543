"""The string ops Keras' TextVectorization runs, as TensorFlow computes them, without TensorFlow.

Strings are handled as TensorFlow holds them, as UTF-8 bytes; a Python str is encoded first.

Parity notes (each checked against live TensorFlow 2.21, tests/test_text_vectorization.py):
- ``tf.strings.lower`` as Keras calls it (no encoding argument) lowercases ASCII A-Z only:
  "ÀBÇ İI ẞ ΣΑΣ" becomes "ÀbÇ İi ẞ ΣΑΣ". Keras 2 (tf.keras) and Keras 3 call it the same way.
- The punctuation regex of both Keras versions (DEFAULT_STRIP_REGEX) is exactly the 32
  ASCII punctuation characters (",-\\." is the range ",", "-", "."); each is one byte that
  never occurs inside a multi-byte UTF-8 sequence, so removing those bytes is the regex
  replacement, valid UTF-8 or not. Full-width and other Unicode punctuation stays.
- ``tf.strings.split`` without a separator splits on ASCII whitespace only (space, \\t, \\n,
  \\v, \\f, \\r), drops empty pieces; U+00A0, U+2028, U+3000, U+0085, \\x1c-\\x1f do not split.
- ``tf.strings.unicode_split(x, "UTF-8")`` returns each code point re-encoded; an invalid byte
  sequence becomes U+FFFD per maximal invalid subpart (as Python's errors="replace").
- ``tf.strings.ngrams(tokens, widths, separator=" ")``: for each width in the given order, every
  run of that many consecutive tokens joined by one space; a row shorter than a width gives
  none of that width.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Keras' standardize modes (TextVectorization's ``standardize`` strings; None = as is).
STANDARDIZE_MODES = (None, "lower", "strip_punctuation", "lower_and_strip_punctuation")
#: Keras' split modes (None = the whole string is one token).
SPLIT_MODES = (None, "whitespace", "character")
#: The bytes Keras' DEFAULT_STRIP_REGEX removes: ASCII punctuation.
PUNCTUATION = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
#: The bytes tf.strings.split treats as whitespace (absl::ascii_isspace).
ASCII_WHITESPACE = b" \t\n\v\f\r"
#: The separator Keras joins n-grams with.
NGRAM_SEPARATOR = b" "
#: A-Z -> a-z, every other byte kept.
_ASCII_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_REPLACEMENT = "\ufffd"


def as_bytes(text: str | bytes) -> bytes:
    """A text as TensorFlow holds it: str -> UTF-8 (lone surrogates refused), bytes as given."""
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"text {text[:40]!r} has a lone surrogate, which has no UTF-8 form "
                "(TensorFlow cannot hold it either); pass bytes"
            ) from exc
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def standardize(text: bytes, mode: str | None) -> bytes:
    """Keras' built-in standardize modes (see the module's parity notes)."""
    if mode in ("lower", "lower_and_strip_punctuation"):
        text = text.translate(_ASCII_LOWER)
    if mode in ("strip_punctuation", "lower_and_strip_punctuation"):
        text = text.translate(None, PUNCTUATION)
    return text


def split_whitespace(text: bytes) -> list[bytes]:
    """tf.strings.split(text): pieces between runs of ASCII whitespace (bytes.split() splits on
    exactly ASCII_WHITESPACE)."""
    return text.split()


def split_characters(text: bytes) -> list[bytes]:
    """tf.strings.unicode_split(text, "UTF-8"): one piece per code point, invalid sequences as
    U+FFFD."""
    return [ch.encode("utf-8") for ch in text.decode("utf-8", errors="replace")]


def split(text: bytes, mode: str | None) -> list[bytes]:
    """Keras' built-in split modes; None keeps the whole text as one token."""
    if mode == "whitespace":
        return split_whitespace(text)
    if mode == "character":
        return split_characters(text)
    return [text]


def ngrams(tokens: Sequence[bytes], widths: Sequence[int]) -> list[bytes]:
    """tf.strings.ngrams(tokens, widths, separator=" ") for one row."""
    out: list[bytes] = []
    for width in widths:
        out += [NGRAM_SEPARATOR.join(tokens[i : i + width]) for i in range(len(tokens) - width + 1)]
    return out


def ngram_widths(value: int | Sequence[int] | None) -> tuple[int, ...] | None:
    """Keras' ``ngrams`` setting as widths: n -> (1, ..., n); a tuple as given."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"ngrams={value!r} is not an int or a tuple of ints")
    if isinstance(value, int):
        widths: tuple[int, ...] = tuple(range(1, value + 1))
    elif isinstance(value, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        widths = tuple(value)
    else:
        raise ValueError(f"ngrams={value!r} is not an int or a tuple of ints")
    if not widths or any(not 0 < w <= MAX_NGRAM_WIDTH for w in widths):
        raise ValueError(f"ngrams={value!r}: widths must be 1..{MAX_NGRAM_WIDTH}")
    return widths


#: Bound on an n-gram width a config may ask for (a hostile config could ask for millions).
MAX_NGRAM_WIDTH = 64
