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

import bisect
import functools
import re
from collections import defaultdict

from parity.errors import ParityWarning
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

#: Longest text (raw, and again once cleaned) ``parity.text.tokenize`` reads; longer ones are
#: cut at a word boundary (``truncate_text``). Why: a model is fed at most ``maxlen`` tokens
#: (10-100 on DeepMoji's benchmarks) and the longest of their 25,434 sentences has 18,244
#: characters, so this never cuts a real sentence, while it bounds what one hostile text costs
#: (tokenizing is linear in the length, but a 100 MB "sentence" would still take minutes).
MAX_TEXT_CHARS = 50_000
#: Tokens up to this length are cached by ``process_word``; longer ones are recomputed (linear
#: in their length, and rare). Real tokens are nearly all shorter (of the benchmarks' 782,814,
#: 24 have over 64 characters, the longest 167) and repeat. With ``WORD_CACHE_SIZE`` entries
#: (32,768 hit as often as 65,536 on the benchmarks) this caps the cache at 32,768 x (two
#: strings of 49 + 64 bytes + ~90 bytes of bookkeeping) ~= 10 MB, whatever the input;
#: uncapped, it kept 96 MB after 100 distinct 1 MB words.
WORD_CACHE_MAX_CHARS = 64
WORD_CACHE_SIZE = 1 << 15


class TextTruncatedWarning(ParityWarning):
    """A text longer than ``MAX_TEXT_CHARS`` was cut before it was tokenized."""


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
#: e-mail address: a local part, then this (the domain) right after it.
_EMAIL_LOCAL = "[a-zA-Z0-9_.+-]"
_EMAIL_DOMAIN = r"@[a-zA-Z0-9-]++\.[a-zA-Z0-9.-]+\b"

_RULES: tuple[tuple[str, str], ...] = (
    ("space", rf"{_SPACE}+"),
    ("url", rf"{_URL_START}{_URL_CHAR}+"),
    ("email", rf"\b{_EMAIL_LOCAL}++{_EMAIL_DOMAIN}"),
    # '++' (possessive): the class excludes what follows, so giving letters back cannot help
    ("joined", r"[a-zA-Z]++[-_][a-zA-Z]+"),
    ("hashtag", rf"#{_WORDCHAR}+"),
    ("mention", rf"@{_WORDCHAR}+"),
    ("heart", r"(?:<+/?3+)+"),
    (
        "emoticon",
        r"-_-|[xX]_[xX]|\^_\^|[oO]\.[oO]|[oO]_[oO]|\(:|\):|\);|\(;"
        r"|(?:>:|[:=;])[-,^'\"]?(?:[dD]+|[pP]+|[vV]+|\)+|[oO]+|\(+|3+|/+|\|+|\\+)",
    ),
    ("contraction", r"[a-zA-Z]++'[a-zA-Z]+"),
    ("title", rf"(?:{'|'.join(_both_cases(t) for t in ('mr', 'ms', 'mrs', 'dr', 'prof'))})\."),
    ("abbreviation", r"\b(?<!\.)(?:[a-zA-Z]\.){2,}"),
    ("number", r"[0-9]+"),
    ("word", r"[a-zA-Z]+"),
    ("symbol", rf"(?P<sym>[{re.escape(_SYMBOLS)}])(?P=sym)*"),
    ("hash", rf"#+(?=#{_WORDCHAR})|@+(?=@{_WORDCHAR})|#+|@+"),
    ("surrogates", "\ud83c[\udf00-\udfff]|\ud83d[\udc00-\ude4f\ude80-\udeff]"),
    ("other", r"."),
)
#: The rules without the e-mail rule: that one is tried only where an address can start (see
#: split_tokens), since as a regex alternative it rescans the rest of a run like
#: '1.1.1.1...' at every token start (quadratic).
_SCAN_RE = re.compile("|".join(f"(?P<{name}>{rule})" for name, rule in _RULES if name != "email"))
#: A maximal run of local-part characters right before an '@' (the lookbehind makes each run
#: scanned once, from its start).
_EMAIL_AT_RE = re.compile(rf"(?<!{_EMAIL_LOCAL}){_EMAIL_LOCAL}++(?=@)")
_EMAIL_DOMAIN_RE = re.compile(_EMAIL_DOMAIN)
_BOUNDARY_RE = re.compile(r"\b")

#: process_word's checks search anywhere in a token, case-sensitively (filter_utils compiles
#: them on their own, without the tokenizer's flags).
_MENTION_IN = re.compile(rf"@{_WORDCHAR}+")
_URL_IN = re.compile(rf"(?:https?://|www\.){_URL_CHAR}+")
_RUN_RE = re.compile(rf"(.)\1{{{SHORTEN_RUN - 1},}}", re.DOTALL)
#: Up to this many runs in a word, shorten replaces them one by one as DeepMoji did (cheap for
#: the few runs of real words); beyond it, it works on run lengths (linear).
_FEW_RUNS = 8


def split_tokens(text: str) -> list[str]:
    """Text -> tokens by the rules above, case kept (DeepMoji's ``tokenizer.tokenize``).

    Linear in the length of the text: the e-mail rule (rule 2) is checked apart, see
    ``_email_spans``.
    """
    spans = _email_spans(text) if "@" in text else []
    if not spans:
        return [m.group() for m in _SCAN_RE.finditer(text) if m.lastgroup != "space"]
    return _split_with_emails(text, spans)


def _email_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, at, end) of each run of local-part characters ``text[start:at]`` followed by an
    '@' whose domain matches, ending at ``end``.

    The e-mail rule can only match inside such a run: its local part runs to the first
    character outside its class, which must be the '@'. So from any token start ``p`` in the
    run, it matches iff there is a word boundary at ``p``, and then it always ends at ``end``
    (the domain does not depend on ``p``). Runs and domains never overlap: linear.
    """
    spans = []
    for m in _EMAIL_AT_RE.finditer(text):
        domain = _EMAIL_DOMAIN_RE.match(text, m.end())
        if domain:
            spans.append((m.start(), m.end(), domain.end()))
    return spans


def _split_with_emails(text: str, spans: list[tuple[int, int, int]]) -> list[str]:
    """split_tokens where e-mail addresses may start: the other rules by regex, and at each
    token start inside a span, the e-mail rule's answer from the span (it comes after the
    space and URL rules, before all others)."""
    tokens: list[str] = []
    i, pos = 0, 0
    while True:
        for m in _SCAN_RE.finditer(text, pos):
            p = m.start()
            while i < len(spans) and spans[i][1] <= p:
                i += 1
            if i == len(spans):  # no address left: the rest in one go
                tokens += [t.group() for t in _SCAN_RE.finditer(text, p) if t.lastgroup != "space"]
                return tokens
            start, _, end = spans[i]
            if start <= p and m.lastgroup != "url" and _BOUNDARY_RE.match(text, p):
                tokens.append(text[p:end])
                pos = end
                break  # scan on after the address
            if m.lastgroup != "space":
                tokens.append(m.group())
        else:
            return tokens


def shorten(word: str) -> str:
    """Cut runs of 3+ equal characters to 2 (``'!!!!'`` -> ``'!!'``, ``'soooo'`` ->
    ``'soo'``), in ASCII tokens only.

    DeepMoji finds the runs first, then replaces each run's text everywhere in the word, in
    order; so ``'aaa-aaaa'`` becomes ``'aa-aaa'`` (the first replacement eats the start of the
    longer run). Reproduced, as the vocabulary holds such words; computed on run lengths (see
    ``_shortened_lengths``), as one ``str.replace`` per run is quadratic in the word's length.
    """
    if len(word) < SHORTEN_RUN or not word.isascii():
        return word
    runs = [m.group() for m in _RUN_RE.finditer(word)]
    if len(runs) <= _FEW_RUNS:  # DeepMoji's own loop: linear for a bounded number of runs
        for run in runs:
            word = word.replace(run, run[0] * 2)
        return word
    new = _shortened_lengths([(run[0], len(run)) for run in runs])
    return _RUN_RE.sub(lambda m: m[1] * new[m[1], len(m[0])], word)


def _shortened_lengths(runs: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """{(c, n): length after shortening} of each run of ``n`` times ``c``, given the word's
    runs of 3+ in order.

    ``word.replace(c * k, c * 2)`` turns every maximal run of ``c`` of length ``n`` into one
    of ``2 * (n // k) + n % k`` (left to right, no overlap), and touches nothing else; runs of
    a character never merge (another character stays between them). So each distinct length
    is followed through the replacements of its character. A replacement that finds no run
    that long costs O(1), and every other one shortens lengths, which sum to at most the
    word's length: O(n log n) in all, where replacing the text would be O(n * runs).
    """
    by_char: defaultdict[str, list[int]] = defaultdict(list)
    for c, k in runs:
        by_char[c].append(k)
    out: dict[tuple[str, int], int] = {}
    for c, ks in by_char.items():
        current = sorted(set(ks))  # distinct current lengths, ascending
        origins = {n: [n] for n in current}  # current length -> original lengths now at it
        for k in ks:
            if current[-1] < k:  # the replacement finds nothing
                continue
            cut = bisect.bisect_left(current, k)
            longer, current[cut:] = current[cut:], []
            for n in longer:
                m = 2 * (n // k) + n % k
                if m in origins:
                    origins[m] += origins.pop(n)
                else:
                    origins[m] = origins.pop(n)
                    bisect.insort(current, m)
        for n, members in origins.items():
            for original in members:
                out[c, original] = n
    return out


def truncate_text(text: str, truncating: str = "post") -> str:
    """``text`` cut to at most ``MAX_TEXT_CHARS`` characters: its start (``"post"``) or its
    end (``"pre"``), the side ``pad_sequences`` keeps with that ``truncating``.

    The cut falls on whitespace where the kept part has any, dropping the word it would split:
    tokens never span whitespace and no rule looks across it, so every kept word gives the
    tokens it gives in the whole text. Returns ``text`` itself when it is short enough.
    """
    if len(text) <= MAX_TEXT_CHARS:
        return text
    if truncating == "post":
        kept = text[:MAX_TEXT_CHARS]
        if not (kept[-1].isspace() or text[MAX_TEXT_CHARS].isspace()):
            parts = kept.rsplit(None, 1)  # scans back to the last whitespace only
            kept = parts[0] if len(parts) == 2 else kept
        return kept
    kept = text[-MAX_TEXT_CHARS:]
    if not (kept[0].isspace() or text[-MAX_TEXT_CHARS - 1].isspace()):
        parts = kept.split(None, 1)
        kept = parts[1] if len(parts) == 2 else kept
    return kept


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


def process_word(word: str) -> str:
    """A token as the vocabulary is looked up with: shortened, then a number ->
    ``CUSTOM_NUMBER``, else one holding an @mention -> ``CUSTOM_AT``, else one holding a URL
    -> ``CUSTOM_URL`` (an e-mail address holds a mention). Cached up to
    ``WORD_CACHE_MAX_CHARS`` characters."""
    if len(word) <= WORD_CACHE_MAX_CHARS:
        return _process_word_cached(word)
    return _process_word(word)


def _process_word(word: str) -> str:
    word = shorten(word)
    if is_number(word):
        return NUMBER_TOKEN
    if _MENTION_IN.search(word):
        return MENTION_TOKEN
    if _URL_IN.search(word):
        return URL_TOKEN
    return word


#: Words repeat: most tokens are a hit. Only short words, so its size is bounded in bytes.
_process_word_cached = functools.lru_cache(maxsize=WORD_CACHE_SIZE)(_process_word)
