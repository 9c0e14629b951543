"""Vocabularies: read DeepMoji's word -> id JSON, look tokens up, extend it for fine-tuning.

Extension follows DeepMoji's ``split_train_val_test(..., extend_with=N)``: the training
texts are tokenized as DeepMoji did when it built vocabularies (emoji removed, sentences with
other non-ASCII characters skipped, words over 30 characters not counted), the words the
vocabulary lacks are taken most frequent first, up to ``N``, and get the next ids. DeepMoji
broke ties between equally frequent words in Python 2's dict order (an artefact of string
hashing); here they keep their order of first appearance, so the same words are added and
each word with a count of its own gets DeepMoji's id, while words tied on a count may trade ids
among themselves.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping

from parity.files import open_regular, reading, write_atomic_text
from parity.text.normalize import clean
from parity.text.tokenizer import SPECIAL_TOKENS, UNKNOWN_TOKEN, process_word, split_tokens

#: DeepMoji's "CUSTOM_UNKNOWN" id: every out-of-vocabulary (or id >= vocab_size) word maps here.
UNKNOWN_ID = SPECIAL_TOKENS.index(UNKNOWN_TOKEN)
#: Words longer than this are never counted into a vocabulary (create_vocab.VocabBuilder).
MAX_WORD_LENGTH = 30
#: DeepMoji's default and its fine-tuning scripts' number of words added ('new', 'full',
#: 'chain-thaw'; 'last' adds none).
DEFAULT_EXTEND = 10000


#: The vocabulary looked for beside a model file when none is named (DeepMoji's file name).
VOCABULARY_FILE = "vocabulary.json"


def load_vocabulary(path: str | os.PathLike[str]) -> dict[str, int]:
    """Read a DeepMoji-style ``{word: id}`` JSON file, checking ids are non-negative ints;
    a malformed one is a ConversionError naming it."""
    with reading(path, "vocabulary"), open_regular(path, "vocabulary", encoding="utf-8") as f:
        return _checked_vocabulary(json.load(f), path)


def _checked_vocabulary(raw: object, path: str | os.PathLike[str]) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise TypeError(f"{os.fspath(path)}: expected a JSON object word -> id")
    vocab: dict[str, int] = {}
    for word, idx in raw.items():
        if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
            raise ValueError(f"{os.fspath(path)}: id of {word!r} is {idx!r}, not an int >= 0")
        vocab[word] = idx
    return vocab


def save_vocabulary(vocabulary: Mapping[str, int], path: str | os.PathLike[str]) -> None:
    """Write ``{word: id}`` as JSON in id order (readable by DeepMoji and ``load_vocabulary``),
    atomically (parity.files: never through a planted symlink)."""
    ordered = dict(sorted(vocabulary.items(), key=lambda kv: kv[1]))
    write_atomic_text(path, json.dumps(ordered, ensure_ascii=False, indent=0), "vocabulary")


def tokens_to_ids(
    tokens: Iterable[str], vocabulary: Mapping[str, int], *, vocab_size: int | None = None
) -> list[int]:
    """Look tokens up; unknown words and ids >= vocab_size (the model's Embedding rows) -> 1."""
    ids = []
    for tok in tokens:
        idx = vocabulary.get(tok, UNKNOWN_ID)
        if vocab_size is not None and idx >= vocab_size:
            idx = UNKNOWN_ID
        ids.append(idx)
    return ids


def count_words(texts: Iterable[str]) -> Counter[str]:
    """Word counts as DeepMoji's VocabBuilder makes them from a default WordGenerator."""
    counts: Counter[str] = Counter()
    for text in texts:
        cleaned = clean(text, for_vocabulary=True)
        if cleaned is None:
            continue
        counts.update(
            w for w in map(process_word, split_tokens(cleaned)) if len(w) <= MAX_WORD_LENGTH
        )
    return counts


def extend_vocabulary(
    vocabulary: Mapping[str, int], texts: Iterable[str], max_words: int = DEFAULT_EXTEND
) -> tuple[dict[str, int], list[str]]:
    """A copy of ``vocabulary`` with up to ``max_words`` new words from ``texts`` (most
    frequent first) at ids ``len(vocabulary)``, ``len(vocabulary) + 1``, ...; and the added
    words in id order. Grow the model's embedding by ``len(added)`` rows to match
    (``parity.train.embedding.extend_embedding``)."""
    if max_words < 0:
        raise ValueError(f"max_words must be >= 0, got {max_words}")
    if sorted(vocabulary.values()) != list(range(len(vocabulary))):
        raise ValueError("vocabulary ids must be 0..len-1 to be extended (DeepMoji's layout)")
    counts = count_words(texts)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: ties by first appearance
    added = [w for w, _ in ranked if w not in vocabulary][:max_words]
    extended = dict(vocabulary)
    extended.update((w, len(vocabulary) + i) for i, w in enumerate(added))
    return extended, added
