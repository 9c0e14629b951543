"""parity.text on hostile texts: linear cost, bounded length and cache, same tokens.

Each shape below once cost time quadratic in its length (a 200 KB line of '1.1.1.1' never
finished). Here: the tokens of a long text are those of a short one, repeated where the shape
repeats; the time per character does not grow with the length (4x the text: < 8x the time,
where quadratic is 16x; the best of 3 runs, so a busy machine does not fail it); the rewritten
parts agree with the plain algorithms they replace on random texts; a text over
MAX_TEXT_CHARS is cut on the side truncation keeps, with a warning; long words stay out of the
word cache.
"""

from __future__ import annotations

import random
import re
import time
import tracemalloc
import unicodedata
import warnings
from collections.abc import Callable

import pytest

from parity.text import (
    MAX_TEXT_CHARS,
    NUMBER_TOKEN,
    TextTruncatedWarning,
    encode,
    normalize,
    split_tokens,
    tokenize,
    tokenizer,
)
from parity.text.normalize import clean
from parity.text.tokenizer import process_word

#: Shapes at this many characters and 4x as many are timed.
SIZE = 50_000
#: 4x the text may take at most this many times as long (linear: ~4, quadratic: 16).
MAX_TIME_RATIO = 8.0


def _tokens(text: str) -> list[str]:
    """tokenize without its length bound: the parts that must be linear on their own
    (count_words and deepmoji_maxlen run them on whole texts)."""
    cleaned = clean(text)
    assert cleaned is not None
    return [process_word(t) for t in split_tokens(cleaned)]


def _repeat(unit: str, period: int) -> Callable[[int], list[str]]:
    """Tokens of unit * n: those of unit * period, n // period times."""
    return lambda n: _tokens(unit * period) * (n // period)


def _one_token(unit: str, period: int) -> Callable[[int], list[str]]:
    """unit * n is one token: that of unit * period, n // period times over."""
    return lambda n: [_tokens(unit * period)[0] * (n // period)]


#: name -> (text of n units, its tokens, characters per unit once cleaned).
SHAPES: dict[str, tuple[Callable[[int], str], Callable[[int], list[str]], int]] = {
    # e-mail rule: a local part scanned to the end at every token start
    "1.1.1.1": (lambda n: "1." * n, _repeat("1.", 1), 2),
    "1.1.1.1@ (no domain)": (
        lambda n: "1." * n + "@",
        lambda n: [NUMBER_TOKEN, "."] * n + ["@"],
        2,
    ),
    # hyphen joints and hyphen runs between words (also local-part characters)
    "a-a-a-a": (lambda n: "a-" * n, _repeat("a-", 2), 2),
    "ab--ab--": (lambda n: "ab--" * n, _repeat("ab--", 1), 4),
    "ab-----ab": (lambda n: ("ab" + "-" * 30) * n, _repeat("ab" + "-" * 30, 1), 32),
    # shortening one token with many runs (a replace per run)
    "aaabaaab": (lambda n: "aaab" * n, _one_token("aaab", 1), 4),
    "aaabbbccc": (lambda n: "aaabbbccc" * n, _one_token("aaabbbccc", 1), 9),
    "www.www. (URL)": (lambda n: "www." * n, _one_token("www.", 2), 4),
    # one huge word
    "xxxx": (lambda n: "x" * n, lambda n: ["xx"], 1),
    "abcabc": (lambda n: "abc" * n, _one_token("abc", 1), 3),
    # NFKC: combining marks out of canonical order (insertion sort), 18x expansion,
    # characters that decompose into two marks
    "a + marks": (
        lambda n: "a" + "\u0301\u0316" * n,
        lambda n: ["á"] + ["\u0316"] * n + ["\u0301"] * (n - 1),
        2,
    ),
    "\ufdfa (18x)": (lambda n: "\ufdfa" * n, _repeat("\ufdfa", 1), 18),
    "\u0f73 (2 marks)": (
        lambda n: "\u0f73" * n,
        lambda n: ["\u0f71"] * n + ["\u0f72"] * n,
        2,
    ),
    # Python 2 strip: alternating kinds of space
    "a + ' \u180e'": (lambda n: "a" + " \u180e" * n, lambda n: ["a"], 2),
}


def _best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("name", list(SHAPES))
def test_hostile_shape_is_linear_and_keeps_tokens(name: str) -> None:
    make, want, unit = SHAPES[name]
    n = SIZE // unit
    assert _tokens(make(4)) == want(4)  # the short version
    small, large = make(n), make(4 * n)
    start = time.perf_counter()
    got = _tokens(large)
    t_large = time.perf_counter() - start
    assert got == want(4 * n)  # ~200 KB: same tokens, shape for shape
    t_large = min(t_large, _best_time(lambda: _tokens(large), repeats=2))
    t_small = _best_time(lambda: _tokens(small))
    assert t_large < MAX_TIME_RATIO * t_small + 0.01, (name, t_small, t_large)


@pytest.mark.parametrize("truncating", ["post", "pre"])
def test_megabyte_texts_are_cut_with_a_warning(truncating: str) -> None:
    text = "1." * 500_000  # 1 MB, one word
    with pytest.warns(TextTruncatedWarning, match="MAX_TEXT_CHARS"):
        start = time.perf_counter()
        got = tokenize(text, truncating=truncating)
        seconds = time.perf_counter() - start
    assert got == [NUMBER_TOKEN, "."] * (MAX_TEXT_CHARS // 2)
    assert seconds < 5.0  # bounded: ~0.05 s here
    with pytest.warns(TextTruncatedWarning):  # cleaning lengthens it 18x: cut again
        assert len(tokenize("\ufdfa" * 10_000)) <= MAX_TEXT_CHARS


def test_cut_keeps_whole_words_on_the_side_truncation_keeps() -> None:
    # one token each, none shortened: 0 -> "az", 10 -> "bzaz", ... (~220,000 characters)
    words = ["".join("abcdefghij"[int(d)] + "z" for d in str(i)) for i in range(20_000)]
    text = " ".join(words)
    with pytest.warns(TextTruncatedWarning):
        head = tokenize(text)
    with pytest.warns(TextTruncatedWarning):
        tail = tokenize(text, truncating="pre")
    assert head == words[: len(head)] and tail == words[-len(tail) :]
    for kept in (head, tail):  # all but the word the cut would split
        assert MAX_TEXT_CHARS - 11 < sum(map(len, kept)) + len(kept) - 1 <= MAX_TEXT_CHARS
    vocab = {w: i + 10 for i, w in enumerate(words)}
    with pytest.warns(TextTruncatedWarning):
        pre = encode(text, vocab, 3)
    with pytest.warns(TextTruncatedWarning):
        post = encode(text, vocab, 3, padding="post", truncating="post")
    assert pre.tolist() == [[vocab[w] for w in words[-3:]]]
    assert post.tolist() == [[vocab[w] for w in words[:3]]]


def test_texts_within_the_bound_are_not_cut() -> None:
    text = ("hello world " * (MAX_TEXT_CHARS // 12))[:MAX_TEXT_CHARS]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tokenize(text) == _tokens(text)
        assert tokenize(text, truncating="pre") == _tokens(text)
    with pytest.raises(ValueError, match="truncating"):
        tokenize("a", truncating="middle")


def test_long_words_stay_out_of_the_cache() -> None:
    cached = tokenizer._process_word_cached
    cached.cache_clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        got = [process_word(chr(ord("a") + i) * 1_000_000 + "!") for i in range(8)]
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert got == [chr(ord("a") + i) * 2 + "!" for i in range(8)]
    assert cached.cache_info().currsize == 0
    assert kept < 100_000  # cached, the eight 1 MB words stayed alive
    assert process_word("x" * tokenizer.WORD_CACHE_MAX_CHARS) == "xx"
    assert cached.cache_info().currsize == 1


def _shorten_as_deepmoji(word: str) -> str:
    """filter_utils.shorten_word: find the runs, then replace each run's text in turn."""
    if len(word) < 3 or not word.isascii():
        return word
    for run in [m.group() for m in re.finditer(r"(.)\1{2,}", word, re.DOTALL)]:
        word = word.replace(run, run[0] * 2)
    return word


def test_shorten_on_run_lengths_equals_deepmoji() -> None:
    rng = random.Random(0)
    lengths = [1, 1, 2, 3, 3, 4, 5, 6, 7, 9, 13, 27]
    for _ in range(3000):
        word = "".join(rng.choice("ab.") * rng.choice(lengths) for _ in range(rng.randint(1, 40)))
        assert tokenizer.shorten(word) == _shorten_as_deepmoji(word), word
    word = "".join(c * n for n in range(3, 60) for c in "ab")  # 114 runs, many lengths
    assert tokenizer.shorten(word) == _shorten_as_deepmoji(word)


def test_split_tokens_equals_the_single_regex() -> None:
    """The e-mail rule checked apart gives the tokens of the rules as one ordered alternation
    (DeepMoji's regex; '++' back to '+', which cannot change a match there)."""
    full = re.compile(
        "|".join(f"(?P<{name}>{rule.replace('++', '+')})" for name, rule in tokenizer._RULES)
    )
    rng = random.Random(1)
    alphabet = [*"aAx1.-_+@#'<3:) pw", "http://", "www.", "@b.co", "a.m.", "é"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        want = [m.group() for m in full.finditer(text) if m.lastgroup != "space"]
        assert split_tokens(text) == want, text


def test_linear_nfkc_equals_unicodedata() -> None:
    rng = random.Random(2)
    alphabet = [*"ae é", *"\u0301\u0316\u0308\u0344\u0345\u05b0\u0591\u0323\u0307\u3099"]
    alphabet += [*"\u0f71\u0f72\u0f73\u0f75\u0f80\u1100\u1161\u11a8\uac00\ufdfa\u212b\u304b"]
    alphabet += [*"\u0cc6\u0cc2\u0cd5\u1e0b"]
    for _ in range(1000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(200, 900)))
        assert normalize._nfkc_long(text) == unicodedata.normalize("NFKC", text)
    assert normalize.py2_strip(" \u180e a b\u180e \u180e\t") == "a b"
