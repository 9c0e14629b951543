"""DeepMoji's sentence cleaning (deepmoji/word_generator.py ``get_words``), Python 2 exact.

Steps, in DeepMoji's order:

1. strip surrounding whitespace, lower-case (Python 2's one-to-one case mapping: ``İ`` -> ``i``
   and a final ``Σ`` -> ``σ``, where Python 3 gives ``i̇`` and ``ς``);
2. line breaks -> `` CUSTOM_BREAK ``: real ``\\n``/``\\r``, their escaped spellings
   ``\\\\n``, ``\\\\\\\\n`` (as scraped text often holds them) and ``<br>``;
3. drop variation selectors U+FE00-U+FE0F (``❤️`` -> ``❤``);
4. per whitespace-separated word holding non-ASCII characters: NFKC (``…`` -> ``...``,
   full-width letters -> ASCII, ``™`` -> ``TM``: NFKC runs *after* lower-casing, so it can
   bring capitals back), then every character text-unidecode transliterates to ASCII
   punctuation is replaced by that (``“`` -> ``"``, ``‼`` -> ``!!``);
5. for a vocabulary count only (DeepMoji's default ``WordGenerator``): emoji are removed and a
   sentence with any other non-ASCII character left is skipped.

Python 3's Unicode tables are newer than Python 2.7's (5.2); where they disagree (characters
assigned since) the tables in ``parity.text._tables`` (generated from Python 2.7 itself) give
Python 2's answer.
"""

# ruff: noqa: RUF002  (the docstring names look-alike characters on purpose)
from __future__ import annotations

import functools
import re
import unicodedata

from parity.text import _tables
from parity.text.tokenizer import BREAK_TOKEN

#: What DeepMoji turned into a line break, replaced in this order (the doubly escaped first).
LINE_BREAKS = ("\\\\n", "\\n", "\n", "\\\\r", "\\r", "\r", "<br>")
_BREAK = f" {BREAK_TOKEN} "
_VARIATION_SELECTORS = dict.fromkeys(range(0xFE00, 0xFE10))
_EXTRA_SPACE = "".join(chr(a) for a, b in _tables.EXTRA_SPACE for _ in range(b - a + 1))
_SPACES = re.compile(f"[\\s{re.escape(_EXTRA_SPACE)}]*")
#: Pieces up to this length go to unicodedata.normalize whole; longer ones are normalized in
#: linear time (``_nfkc_long``).
NFKC_CHUNK = 256


def _expand(ranges: list[tuple[int, int]]) -> frozenset[int]:
    return frozenset(cp for a, b in ranges for cp in range(a, b + 1))


_LOWER_UNCHANGED = _expand(_tables.LOWER_UNCHANGED)
_NFKC_UNCHANGED = _expand(_tables.NFKC_UNCHANGED)
_EMOJI = _expand(_tables.EMOJI)
_PUNCTUATION = _tables.PUNCTUATION


class _Py2Lower(dict[int, str]):
    """str.translate table: each character's Python 2 lower case, filled on first sight."""

    def __missing__(self, cp: int) -> str:
        c = chr(cp)
        low = _tables.LOWER_OTHER.get(cp, c if cp in _LOWER_UNCHANGED else c.lower())
        self[cp] = low
        return low


_PY2_LOWER = _Py2Lower()


def py2_strip(text: str) -> str:
    """``unicode.strip()`` of Python 2 (its whitespace includes U+180E)."""
    text = text.strip()
    if text and (text[0] in _EXTRA_SPACE or text[-1] in _EXTRA_SPACE):
        # one pass from each end (stripping each kind of space in turn copies the text once
        # per change of kind: quadratic on ' \u180e \u180e ...')
        start = _SPACES.match(text).end()
        end = len(text) - _SPACES.match(text[::-1]).end()
        text = text[start:end] if start < end else ""
    return text


def py2_lower(text: str) -> str:
    """``unicode.lower()`` of Python 2: per character, Unicode 5.2's simple mapping."""
    return text.lower() if text.isascii() else text.translate(_PY2_LOWER)


def py2_split(text: str) -> list[str]:
    """``unicode.split()`` of Python 2."""
    for c in _EXTRA_SPACE:
        text = text.replace(c, " ")
    return text.split()


def nfkc(word: str) -> str:
    """NFKC as Python 2 computed it: characters Unicode 5.2 did not have stay as they are
    (they also stop composition across them, as an unassigned starter did)."""
    if not any(ord(c) in _NFKC_UNCHANGED for c in word):
        return _nfkc(word)
    out, start = [], 0
    for i, c in enumerate(word):
        if ord(c) in _NFKC_UNCHANGED:
            out += [_nfkc(word[start:i]), c]
            start = i + 1
    out.append(_nfkc(word[start:]))
    return "".join(out)


def _nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, linear in the length."""
    return unicodedata.normalize("NFKC", text) if len(text) <= NFKC_CHUNK else _nfkc_long(text)


def _nfkc_long(text: str) -> str:
    """NFKC of a long text in linear time, equal to ``unicodedata.normalize``'s.

    CPython puts combining marks in canonical order by insertion sort, quadratic in a run of
    marks ('a' + 100,000 alternating U+0301 U+0316: ~30 s). NFKC is the composition of NFKD,
    and NFKD is each character's decomposition followed by a stable sort of every run of
    marks by combining class. So: decompose chunk by chunk (each chunk's own sort is short),
    sort the runs (stable, O(n log n)), then NFC: on decomposed, ordered text its own
    decomposition and sort are linear, and so is its composition (no combining mark starts
    one).
    """
    decomposed = "".join(
        unicodedata.normalize("NFKD", text[i : i + NFKC_CHUNK])
        for i in range(0, len(text), NFKC_CHUNK)
    )
    if not unicodedata.is_normalized("NFKD", decomposed):  # quick check: no "maybe" for NFKD
        decomposed = _mark_runs().sub(_sort_marks, decomposed)
    return unicodedata.normalize("NFC", decomposed)


def _sort_marks(run: re.Match[str]) -> str:
    return "".join(sorted(run.group(), key=unicodedata.combining))


@functools.cache
def _mark_runs() -> re.Pattern[str]:
    """Runs of 2+ characters of non-zero combining class (built on first use: ~0.1 s)."""
    ranges, start = [], None
    for cp, ccc in enumerate(map(unicodedata.combining, map(chr, range(0x110000)))):
        if ccc and start is None:
            start = cp
        elif not ccc and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, 0x10FFFF))
    marks = "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)
    return re.compile(f"[{marks}]{{2,}}")


def convert_word(word: str, *, for_vocabulary: bool = False) -> str | None:
    """One whitespace-free word with non-ASCII characters -> NFKC, Unicode punctuation as
    ASCII. ``for_vocabulary``: emoji removed, and None when other non-ASCII characters remain
    (DeepMoji then skips the whole sentence)."""
    word = nfkc(word).translate(_PUNCTUATION)  # {code point: ASCII}; others stay
    if for_vocabulary:
        word = "".join(c for c in word if ord(c) not in _EMOJI)
        if not word.isascii():
            return None
    return word


def clean(text: str, *, for_vocabulary: bool = False) -> str | None:
    """Steps 1-5: the text DeepMoji's tokenizer saw, words joined by single spaces.
    None: a sentence a vocabulary count skips (``for_vocabulary`` only)."""
    text = py2_lower(py2_strip(text))
    for brk in LINE_BREAKS:
        if brk in text:
            text = text.replace(brk, _BREAK)
    if not text.isascii():
        text = text.translate(_VARIATION_SELECTORS)
    words = py2_split(text)
    for i, word in enumerate(words):
        if not word.isascii():
            converted = convert_word(word, for_vocabulary=for_vocabulary)
            if converted is None:
                return None
            words[i] = converted
    return " ".join(words)
