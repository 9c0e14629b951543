"""parity.text: DeepMoji's tokenizer rules and test vectors, vocabulary extension, and
pad_sequences against Keras itself (the benchmark-wide golden check: test_text_deepmoji.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from parity.text import (
    UNKNOWN_ID,
    deepmoji_maxlen,
    encode,
    extend_vocabulary,
    load_vocabulary,
    pad_sequences,
    save_vocabulary,
    split_tokens,
    tokenize,
    tokens_to_ids,
)

VOCAB = {
    "CUSTOM_MASK": 0,
    "CUSTOM_UNKNOWN": 1,
    "CUSTOM_AT": 2,
    "CUSTOM_URL": 3,
    "CUSTOM_NUMBER": 4,
    "CUSTOM_BREAK": 5,
    "the": 10,
    ".": 11,
    "good": 12,
    "!!": 13,
    "don't": 14,
    "rare": 20,
    ":)": 15,
}
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "deepmoji_benchmarks"
SHARED_VOCAB = SHARED_DATA / "vocabulary.json"


# DeepMoji's own tokenizer test vectors (tests/test_tokenizer.py of DeepMoji): raw rules, case kept.
DEEPMOJI_SPLITS = [
    ("200K words!", ["200", "K", "words", "!"]),
    ("i \U0001f496 you to the moon", ["i", "\U0001f496", "you", "to", "the", "moon"]),
    ("i\U0001f496you to the \u2605's", ["i", "\U0001f496", "you", "to", "the", "\u2605", "'", "s"]),
    ("~<3~", ["~", "<3", "~"]),
    ("<333", ["<333"]),
    (":-)", [":-)"]),
    (">:-(", [">:-("]),
    (
        "\u266b\u266a\u2605\u2606\u2665\u2764\u2661",
        list("\u266b\u266a\u2605\u2606\u2665\u2764\u2661"),
    ),
    ("www.sample.com", ["www.sample.com"]),
    ("http://endless.horse", ["http://endless.horse"]),
    ("https://github.mit.edu", ["https://github.mit.edu"]),
    ("#blacklivesmatter", ["#blacklivesmatter"]),
    ("#99_percent.", ["#99_percent", "."]),
    ("the#99%", ["the", "#99", "%"]),
    ("@golden_zenith", ["@golden_zenith"]),
    ("@99_percent", ["@99_percent"]),
    ("latte-express@mit.edu", ["latte-express@mit.edu"]),
    ("518)528-0252", ["518", ")", "528", "-", "0252"]),
    ("1200-0221-0234", ["1200", "-", "0221", "-", "0234"]),
    ("1200.0221.0234", ["1200", ".", "0221", ".", "0234"]),
    ("15:00", ["15", ":", "00"]),
    ("2:00pm", ["2", ":", "00", "pm"]),
    ("9/14/16", ["9", "/", "14", "/", "16"]),
    ("517.933\xa3", ["517", ".", "933", "\xa3"]),
    ("$517.87", ["$", "517", ".", "87"]),
    ("1201.6598", ["1201", ".", "6598"]),
    ("120,6", ["120", ",", "6"]),
    ("10,00\u20ac", ["10", ",", "00", "\u20ac"]),
    ("1,000", ["1", ",", "000"]),
    ("1200pesos", ["1200", "pesos"]),
    ("5162f", ["5162", "f"]),
    ("f5162", ["f", "5162"]),
    ("1203(", ["1203", "("]),
    ("(1203)", ["(", "1203", ")"]),
    ("1200/", ["1200", "/"]),
    ("1200+", ["1200", "+"]),
    ("1202o-east", ["1202", "o-east"]),
    ("1200r", ["1200", "r"]),
    ("1200-1400", ["1200", "-", "1400"]),
    ("120/today", ["120", "/", "today"]),
    ("today/120", ["today", "/", "120"]),
    ("120/5", ["120", "/", "5"]),
    ("120'/5", ["120", "'", "/", "5"]),
    ("120/5pro", ["120", "/", "5", "pro"]),
    ("1200's,)", ["1200", "'", "s", ",", ")"]),
    ("120.76.218.207", ["120", ".", "76", ".", "218", ".", "207"]),
    ("don''t", ["don", "''", "t"]),
    ("don'tcha", ["don'tcha"]),
    ("no?!?!;", ["no", "?", "!", "?", "!", ";"]),
    ("no??!!..", ["no", "??", "!!", ".."]),
    ("a.m.", ["a.m."]),
    (".s.u", [".", "s", ".", "u"]),
    ("!!i..n__", ["!!", "i", "..", "n", "__"]),
    ("lv(<3)w(3>)u Mr.!", ["lv", "(", "<3", ")", "w", "(", "3", ">", ")", "u", "Mr.", "!"]),
    ("-->", ["--", ">"]),
    ("->", ["-", ">"]),
    ("<-", ["<", "-"]),
    ("<--", ["<", "--"]),
    ("hello (@person)", ["hello", "(", "@person", ")"]),
]


@pytest.mark.parametrize(("text", "tokens"), DEEPMOJI_SPLITS)
def test_split_tokens_deepmoji_vectors(text: str, tokens: list[str]) -> None:
    assert split_tokens(text) == tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The GOOD.", ["the", "good", "."]),
        ("I don't know", ["i", "don't", "know"]),
        # runs of 3+ equal characters are cut to 2, in ASCII tokens
        ("wow!!!! sooooo gooood...", ["wow", "!!", "soo", "good", ".."]),
        ("aaa-aaaa", ["aa-aaa"]),  # DeepMoji's run-by-run replacement, kept
        (
            "@bob see https://x.y/z?a=1 or www.foo.com",
            # a run is shortened before URLs are detected: "www." -> "ww." (DeepMoji's order)
            ["CUSTOM_AT", "see", "CUSTOM_URL", "or", "ww.foo.com"],
        ),
        ("mail me: a.b@c.org", ["mail", "me", ":", "CUSTOM_AT"]),  # an address holds a mention
        (
            "12 3.5 1,000 15:00 5sos",
            ["CUSTOM_NUMBER", "CUSTOM_NUMBER", ".", "CUSTOM_NUMBER", "CUSTOM_NUMBER", ","]
            + ["CUSTOM_NUMBER"] * 2
            + [":", "CUSTOM_NUMBER", "CUSTOM_NUMBER", "sos"],
        ),
        ("nice :) :-( (: <3 :DDD", ["nice", ":)", ":-(", "(:", "<3", ":dd"]),
        (
            "a\nb\\nc<br>d\r\ne",
            [
                "a",
                "CUSTOM_BREAK",
                "b",
                "CUSTOM_BREAK",
                "c",
                "CUSTOM_BREAK",
                "d",
                "CUSTOM_BREAK",
                "CUSTOM_BREAK",
                "e",
            ],
        ),
        ("love it😀👍", ["love", "it", "😀", "👍"]),
        ("\u2764\ufe0f you", ["\u2764", "you"]),  # variation selector dropped
        ("#love 'quoted'", ["#love", "'", "quoted", "'"]),
        ("\u201cso\u201d \u2026 \u203c", ['"', "so", '"', "..", "!!"]),  # punctuation, then runs
        ("\uff21\uff22\uff23 x\u2122", ["abc", "xTM"]),  # NFKC after lower-casing
        ("\u0130stanbul \u039f\u03a3", ["istanbul", "\u03bf", "\u03c3"]),  # Python 2 lower()
        ("a\u180eb", ["a", "b"]),  # Unicode 5.2 whitespace
        ("\u0663 \u00b2", ["CUSTOM_NUMBER"] * 2),  # Arabic-Indic digit; NFKC superscript
        ("mr. smith at 9 a.m.", ["mr.", "smith", "at", "CUSTOM_NUMBER", "a.m."]),
        ("   ", []),
    ],
)
def test_tokenize_rules(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_extend_vocabulary_most_frequent_first(tmp_path: Path) -> None:
    texts = ["newword zq newword", "the newword zq", "qq \U0001f602", "\u010dau"]
    base = {f"w{i}": i for i in range(10)} | {"the": 10}
    extended, added = extend_vocabulary(base, texts, max_words=2)
    assert added == ["newword", "zq"]  # counts 3, 2; "qq" (1) cut by the limit
    assert extended["newword"] == 11 and extended["zq"] == 12 and len(extended) == 13
    _, added = extend_vocabulary(base, texts)
    # the emoji is removed for counting; "\u010dau" (non-ASCII) skips its sentence
    assert added == ["newword", "zq", "qq"]
    assert extend_vocabulary(base, texts, max_words=0)[1] == []
    path = tmp_path / "v.json"
    save_vocabulary(extended, path)
    assert load_vocabulary(path) == extended


def test_extend_vocabulary_needs_contiguous_ids() -> None:
    with pytest.raises(ValueError, match=r"0\.\.len-1"):
        extend_vocabulary({"a": 0, "b": 2}, ["c"])


def test_deepmoji_maxlen_rounds_the_80th_percentile_up_to_ten() -> None:
    assert deepmoji_maxlen(["a b c"] * 4 + ["a " * 25]) == 10
    assert deepmoji_maxlen(["a " * 11] * 5) == 20


def test_unknown_and_vocab_size() -> None:
    assert tokens_to_ids(["the", "zzz", "rare"], VOCAB) == [10, UNKNOWN_ID, 20]
    # ids the model's Embedding has no row for fall back to unknown, not to an index error.
    assert tokens_to_ids(["the", "zzz", "rare"], VOCAB, vocab_size=20) == [10, 1, 1]


def test_encode_pre_pads_and_pre_truncates_by_default() -> None:
    got = encode(["the good !!", "the good the good the good"], VOCAB, 4)
    np.testing.assert_array_equal(got, [[0, 10, 12, 13], [10, 12, 10, 12]])
    assert got.dtype == np.int32
    post = encode(["the good"], VOCAB, 4, padding="post", truncating="post")
    np.testing.assert_array_equal(post, [[10, 12, 0, 0]])


def test_encode_single_string_is_one_text() -> None:
    np.testing.assert_array_equal(encode("the good", VOCAB, 3), [[0, 10, 12]])


def test_pad_sequences_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="padding"):
        pad_sequences([[1]], 3, padding="middle")
    with pytest.raises(ValueError, match="truncating"):
        pad_sequences([[1]], 3, truncating="both")
    with pytest.raises(ValueError, match="maxlen"):
        pad_sequences([[1]], 0)


def test_load_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps(VOCAB))
    assert load_vocabulary(path) == VOCAB
    path.write_text(json.dumps({"a": -1}))
    with pytest.raises(ValueError, match="'a'"):
        load_vocabulary(path)


@pytest.mark.skipif(not SHARED_VOCAB.is_file(), reason="shared DeepMoji vocabulary absent")
def test_deepmoji_vocabulary_special_ids() -> None:
    vocab = load_vocabulary(SHARED_VOCAB)
    assert vocab["CUSTOM_MASK"] == 0
    assert vocab["CUSTOM_UNKNOWN"] == UNKNOWN_ID
    for token in tokenize("@a http://b 1 \n"):
        assert token in vocab


SEQUENCES = [[], [7], [1, 2, 3], [4, 5, 6, 7, 8, 9], [3, 1], list(range(1, 12))]


@pytest.mark.keras
@pytest.mark.parametrize(
    ("maxlen", "padding", "truncating"),
    list(itertools.product([None, 1, 3, 6, 20], ["pre", "post"], ["pre", "post"])),
)
def test_pad_sequences_matches_keras(maxlen: int | None, padding: str, truncating: str) -> None:
    keras = pytest.importorskip("keras")
    want = keras.utils.pad_sequences(
        SEQUENCES, maxlen=maxlen, padding=padding, truncating=truncating
    )
    got = pad_sequences(SEQUENCES, maxlen, padding=padding, truncating=truncating)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype == np.int32


@pytest.mark.keras
def test_pad_sequences_defaults_match_keras() -> None:
    keras = pytest.importorskip("keras")
    np.testing.assert_array_equal(
        pad_sequences(SEQUENCES, 4), keras.utils.pad_sequences(SEQUENCES, maxlen=4)
    )
