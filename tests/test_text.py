"""parity.text: the tokenizer's documented rules, and pad_sequences against Keras itself."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from parity.text import (
    UNKNOWN_ID,
    encode,
    load_vocabulary,
    pad_sequences,
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


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The GOOD.", ["the", "good", "."]),
        ("I don't know", ["i", "don't", "know"]),
        ("wow!!!! ok...", ["wow", "!!", "ok", ".."]),
        (
            "@bob see https://x.y/z?a=1 or www.foo.com",
            ["CUSTOM_AT", "see", "CUSTOM_URL", "or", "CUSTOM_URL"],
        ),
        ("12 3.5 1,000 5sos", ["CUSTOM_NUMBER"] * 3 + ["5sos"]),
        ("nice :) :-( (:", ["nice", ":)", ":-(", "(:"]),
        ("a\nb", ["a", "CUSTOM_BREAK", "b"]),
        ("love it😀👍", ["love", "it", "😀", "👍"]),
        ("#love 'quoted'", ["#love", "'", "quoted", "'"]),
        ("note:do", ["note", ":", "do"]),
        ("   ", []),
    ],
)
def test_tokenize_rules(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


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
