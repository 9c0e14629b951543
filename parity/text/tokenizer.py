"""DeepMoji's token rules (deepmoji/tokenizer.py, deepmoji/filter_utils.py) as one regex.

``split_tokens`` cuts cleaned text into tokens; ``process_word`` then shortens letter runs and
maps numbers, @mentions and URLs to DeepMoji's special tokens. ``parity.text.tokenize`` runs
both after the sentence cleaning of ``parity.text.normalize``.

Rules, tried in this order at each position; the first that matches wins (an ordered
alternation, not the longest match), whitespace separates and is dropped:

1. URL: ``http://``, ``https://`` or ``www.`` and a run of URL characters.
2. e-mail address (``latte-express@mit.edu``).
3. two letter runs joined by ``-`` or ``_`` (``red-haired``, ``CUSTOM_BREAK``; one joint only).
4. ``#hashtag``, 5. ``@mention`` (ASCII letters, digits, underscore).
6. hearts ``<3``, ``<333``, ``</3``.
7. emoticons: ``-_-`` ``x_x`` ``^_^`` ``o.o`` ``o_o`` ``(:`` ``):`` ``);`` ``(;``, or one of
   ``>: : = ;``, an optional nose ``- , ^ ' "`` and a run of one mouth character
   ``D d p P v ) o O ( 3 / | \\``.
8. contraction ``don't``, 9. title ``mr. ms. mrs. dr. prof.``, 10. abbreviation ``a.m.``.
11. a run of ASCII digits (``1,000`` is three tokens), 12. a run of ASCII letters.
13. a run of one repeated symbol (``!!!``, ``..``), from DeepMoji's symbol list.
14. any other single character (an emoji, a letter outside ASCII).

Python 2 facts kept (DeepMoji's ids came from Python 2.7):
- DeepMoji's pattern holds an inline ``(?i)`` (for the titles) that Python 2 applied to the
  *whole* pattern, so every rule is case-insensitive there. Python 3 refuses that pattern and
  its case-insensitive matching differs on ``ſ``/``K``/``ı``; the rules below spell both cases
  (``[dD]``), which is what Python 2 matched.
- DeepMoji wrote the symbol list as a raw string, so its ``\\xa3`` is four characters (``\\``,
  ``x``, ``a``, ``3``), not ``£``: backslash runs are one token, ``££`` is two.
- Its emoji rule names UTF-16 surrogate pairs, which a wide (UCS-4) Python 2 never sees as
  such: every emoji is one single-character token (rule 14). Kept for lone surrogates.
- Whitespace includes U+180E (Unicode 5.2 called it a space; Python 3 does not).
- ``\\b`` (rules 2 and 10) uses Python 3's word characters (Unicode 14): they differ from
  Python 2's only for characters assigned since Unicode 5.2 that touch an address or an
  abbreviation.
"""

# ruff: noqa: RUF001, RUF002  (the rules name look-alike characters on purpose)
from __future__ import annotations

import functools
import re

from parity.text import _tables

# --- special tokens (deepmoji/global_variables.py SPECIAL_TOKENS: the order is their id) -------
MASK_TOKEN = "CUSTOM_MASK"
UNKNOWN_TOKEN = "CUSTOM_UNKNOWN"
MENTION_TOKEN = "CUSTOM_AT"
URL_TOKEN = "CUSTOM_URL"
NUMBER_TOKEN = "CUSTOM_NUMBER"
BREAK_TOKEN = "CUSTOM_BREAK"
#: ids 0-9: the named specials, then four blanks DeepMoji reserved.
SPECIAL_TOKENS = (
    MASK_TOKEN,
    UNKNOWN_TOKEN,
    MENTION_TOKEN,
    URL_TOKEN,
    NUMBER_TOKEN,
    BREAK_TOKEN,
    *(f"CUSTOM_BLANK_{i}" for i in range(6, 10)),
)

#: Letter runs of this length or more are cut to two letters (ASCII tokens only).
SHORTEN_RUN = 3


def _both_cases(word: str) -> str:
    """'http' -> '[hH][tT][tT][pP]': Python 2's case-insensitive match, without Python 3's
    extra case-folding equivalents ('ſ' ~ 's', 'K' ~ 'k')."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


def _ranges_class(ranges: list[tuple[int, int]]) -> str:
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


_SPACE = rf"[\s{_ranges_class(_tables.EXTRA_SPACE)}]"
#: One URL character: '!', everything from '$' to '_' (digits, upper case and most
#: punctuation: DeepMoji's class [$-_@.&+] is a range), lower-case letters.
_URL_CHAR = r"[!$-_a-z]"
_URL_START = rf"(?:{_both_cases('http')}[sS]?://|{_both_cases('www.')})"
#: Symbols whose runs are one token; '#' and '@' are handled apart (before hashtags/mentions).
_SYMBOLS = "()<!?.,/\\'\"-_=§|´ˇ°[]>{}~$^&*;:%+€`"
_WORDCHAR = "[a-zA-Z0-9_]"

_RULES: tuple[tuple[str, str], ...] = (
    ("space", rf"{_SPACE}+"),
    ("url", rf"{_URL_START}{_URL_CHAR}+"),
    ("email", r"\b[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9.-]+\b"),
    ("joined", r"[a-zA-Z]+[-_][a-zA-Z]+"),
    ("hashtag", rf"#{_WORDCHAR}+"),
    ("mention", rf"@{_WORDCHAR}+"),
    ("heart", r"(?:<+/?3+)+"),
    (
        "emoticon",
        r"-_-|[xX]_[xX]|\^_\^|[oO]\.[oO]|[oO]_[oO]|\(:|\):|\);|\(;"
        r"|(?:>:|[:=;])[-,^'\"]?(?:[dD]+|[pP]+|[vV]+|\)+|[oO]+|\(+|3+|/+|\|+|\\+)",
    ),
    ("contraction", r"[a-zA-Z]+'[a-zA-Z]+"),
    ("title", rf"(?:{'|'.join(_both_cases(t) for t in ('mr', 'ms', 'mrs', 'dr', 'prof'))})\."),
    ("abbreviation", r"\b(?<!\.)(?:[a-zA-Z]\.){2,}"),
    ("number", r"[0-9]+"),
    ("word", r"[a-zA-Z]+"),
    ("symbol", rf"(?P<sym>[{re.escape(_SYMBOLS)}])(?P=sym)*"),
    ("hash", rf"#+(?=#{_WORDCHAR})|@+(?=@{_WORDCHAR})|#+|@+"),
    ("surrogates", "\ud83c[\udf00-\udfff]|\ud83d[\udc00-\ude4f\ude80-\udeff]"),
    ("other", r"."),
)
_TOKEN_RE = re.compile("|".join(f"(?P<{name}>{rule})" for name, rule in _RULES))

#: process_word's checks search anywhere in a token, case-sensitively (filter_utils compiles
#: them on their own, without the tokenizer's flags).
_MENTION_IN = re.compile(rf"@{_WORDCHAR}+")
_URL_IN = re.compile(rf"(?:https?://|www\.){_URL_CHAR}+")
_RUN_RE = re.compile(rf"(.)\1{{{SHORTEN_RUN - 1},}}", re.DOTALL)


def split_tokens(text: str) -> list[str]:
    """Text -> tokens by the rules above, case kept (DeepMoji's ``tokenizer.tokenize``)."""
    return [m.group() for m in _TOKEN_RE.finditer(text) if m.lastgroup != "space"]


def shorten(word: str) -> str:
    """Cut runs of 3+ equal characters to 2 (``'!!!!'`` -> ``'!!'``, ``'soooo'`` ->
    ``'soo'``), in ASCII tokens only.

    DeepMoji finds the runs first, then replaces each run's text everywhere in the word, in
    order; so ``'aaa-aaaa'`` becomes ``'aa-aaa'`` (the first replacement eats the start of the
    longer run). Reproduced, as the vocabulary holds such words.
    """
    if len(word) < SHORTEN_RUN or not word.isascii():
        return word
    for run in [m.group() for m in _RUN_RE.finditer(word)]:
        word = word.replace(run, run[0] * 2)
    return word


def _is_digit(c: str) -> bool:
    cp = ord(c)
    if c.isdecimal():
        return not _in_ranges(cp, _tables.NOT_DIGITS)
    return _in_ranges(cp, _tables.EXTRA_DIGITS)


def _in_ranges(cp: int, ranges: list[tuple[int, int]]) -> bool:
    return any(a <= cp <= b for a, b in ranges)


def is_number(word: str) -> bool:
    """Whether Python 2's ``int(word)`` reads a token: decimal digits of Unicode 5.2 (a token
    never holds whitespace, a sign or an underscore beside digits)."""
    if word.isascii():
        return word.isdigit()
    return bool(word) and all(map(_is_digit, word))


@functools.lru_cache(maxsize=1 << 16)  # words repeat: most tokens are a dictionary hit
def process_word(word: str) -> str:
    """A token as the vocabulary is looked up with: shortened, then a number ->
    ``CUSTOM_NUMBER``, else one holding an @mention -> ``CUSTOM_AT``, else one holding a URL
    -> ``CUSTOM_URL`` (an e-mail address holds a mention)."""
    word = shorten(word)
    if is_number(word):
        return NUMBER_TOKEN
    if _MENTION_IN.search(word):
        return MENTION_TOKEN
    if _URL_IN.search(word):
        return URL_TOKEN
    return word
