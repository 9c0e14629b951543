"""parity.text against DeepMoji's own ids on its eight benchmark datasets (25,434 sentences).

The golden ids (tests/golden/deepmoji-text-ids.npz) were computed by DeepMoji's original code
under Python 2.7 (tests/deepmoji_text_oracle.py). The texts come from ../shared (skipped when
absent); the golden file pins their count per dataset.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from parity.text import (
    deepmoji_maxlen,
    encode,
    extend_vocabulary,
    load_vocabulary,
    tokenize,
    tokens_to_ids,
)

GOLDEN = Path(__file__).parent / "golden" / "deepmoji-text-ids.npz"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "deepmoji_benchmarks"
#: The issue's bar; measured: 1.0 (every sentence, at DeepMoji's length and untruncated).
MIN_MATCH_RATE = 0.999

pytestmark = pytest.mark.skipif(
    not (DATA / "vocabulary.json").is_file(), reason="../shared DeepMoji benchmarks absent"
)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="module")
def vocabulary() -> dict[str, int]:
    return load_vocabulary(DATA / "vocabulary.json")


def _records(name: str) -> list[dict]:
    with open(DATA / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _datasets(golden: dict[str, np.ndarray]) -> list[str]:
    return [n.decode() for n in golden["datasets"]]


def test_ids_match_deepmoji_on_all_benchmarks(golden, vocabulary) -> None:
    """encode(..., padding="post", truncating="post") at each dataset's DeepMoji length and
    untruncated gives DeepMoji's ids; the rate over all eight datasets is >= 99.9%."""
    offsets, ids = golden["offsets"], golden["ids"]
    total, differ, k = 0, [], 0
    for d, name in enumerate(_datasets(golden)):
        texts = [r["text"] for r in _records(name)]
        assert (golden["dataset_index"] == d).sum() == len(texts), name
        maxlen = int(golden["maxlen"][d])
        assert deepmoji_maxlen(texts) == maxlen, name
        got = encode(texts, vocabulary, maxlen, padding="post", truncating="post")
        for i, text in enumerate(texts):
            want = ids[offsets[k] : offsets[k + 1]].astype(np.int64)
            row = np.zeros(maxlen, np.int64)
            row[: min(maxlen, len(want))] = want[:maxlen]
            full = tokens_to_ids(tokenize(text), vocabulary)  # untruncated
            if not (np.array_equal(got[i], row) and full == want.tolist()):
                differ.append(f"{name}[{i}] {text[:80]!r}")
            k += 1
        total += len(texts)
    assert total == len(offsets) - 1 == 25434
    rate = 1 - len(differ) / total
    assert rate >= MIN_MATCH_RATE, f"{rate:.5f}: {len(differ)} differ, e.g. {differ[:5]}"
    assert not differ, f"every sentence matched when this test was written: {differ[:5]}"


def test_vocabulary_extension_matches_deepmoji(golden, vocabulary) -> None:
    """DeepMoji's split_train_val_test(extend_with=10000) on each training split: the same
    words added, with the same counts in id order; words with a count of their own get
    DeepMoji's very id (tied words may trade ids: Python 2 dict order)."""
    counts, offsets = golden["ext_counts"], golden["ext_offsets"]
    for d, name in enumerate(_datasets(golden)):
        train = [r["text"] for r in _records(name) if r["split"] == "train"]
        raw = golden["ext_words"][d].decode("utf-8")
        want = raw.split("\n") if raw else []
        want_counts = counts[offsets[d] : offsets[d + 1]].tolist()
        extended, added = extend_vocabulary(vocabulary, train, 10000)
        assert set(added) == set(want) and len(added) == len(want), name
        count_of = dict(zip(want, want_counts, strict=True))
        assert [count_of[w] for w in added] == want_counts, name
        tally = Counter(want_counts)
        for i, (word, count) in enumerate(zip(want, want_counts, strict=True)):
            if tally[count] == 1:
                assert extended[word] == len(vocabulary) + i, (name, word)
        base = len(vocabulary)
        assert sorted(extended[w] for w in added) == list(range(base, base + len(added)))
