"""Inputs for a parity check: generated to fit the model, or the user's own ids.

Generated rows cover what breaks ports: length 1 and full length, lengths in between, and the
same lengths pre- and post-padded (Keras' pad_sequences pre-pads; many ports assume post).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from parity.conventions import MASK_VALUE
from parity.errors import ConversionError

#: Sequence length of generated inputs when the model accepts any length.
DEFAULT_SEQ_LEN = 12
INPUT_SEED = 0


def generate_ids(vocab_size: int, seq_len: int, *, seed: int = INPUT_SEED) -> np.ndarray:
    """Eight rows: lengths (T, 1, ~T/2, T-1) pre-padded, then the same lengths post-padded."""
    if vocab_size < 2:
        raise ConversionError(f"vocabulary of {vocab_size} ids leaves no real token to feed")
    lengths = [seq_len, 1, max(1, seq_len // 2), max(1, seq_len - 1)]
    rng = np.random.default_rng(seed)
    ids = np.full((2 * len(lengths), seq_len), MASK_VALUE, dtype=np.int64)
    for row, length in enumerate(lengths * 2):
        tokens = rng.integers(1, vocab_size, length)
        if row < len(lengths):
            ids[row, seq_len - length :] = tokens  # pre-padded
        else:
            ids[row, :length] = tokens  # post-padded
    return ids


#: Texts a check feeds a model that takes strings: the cases that break text preprocessing
#: (case, ASCII and full-width punctuation, non-ASCII letters, emoji, Unicode spaces that do
#: not split, a text longer than any output_sequence_length). No empty text: it gives an
#: all-padding row, which Keras' masked pooling turns into NaN (0/0), as the port does, and a
#: NaN compares as a difference (tests/test_text_vectorization.py checks empty texts' ids).
SAMPLE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    'WHAT?! no... way -- it\'s (really) "quoted" [text]',
    "caf\u00e9 CAF\u00c9 stra\u00dfe \u0130stanbul \u03a3\u03c3\u03c2",
    "emoji \U0001f44d\U0001f3fd and\u00a0nbsp\u3000ideographic",
)


def generate_texts(vocabulary: list[str], seq_len: int, *, seed: int = INPUT_SEED) -> np.ndarray:
    """(B, 1) texts: SAMPLE_TEXTS, then rows of vocabulary words (lengths 1, T/2, T and 2T,
    so output_sequence_length both pads and truncates) mixed with words outside it."""
    rng = np.random.default_rng(seed)
    words = [w for w in vocabulary if w and " " not in w] or ["word"]
    texts = list(SAMPLE_TEXTS)
    for length in (1, max(1, seq_len // 2), seq_len, 2 * seq_len):
        picked = [words[i] for i in rng.integers(0, len(words), length)]
        picked[rng.integers(0, length)] = "zzqxj"  # almost surely out of vocabulary
        texts.append(" ".join(picked))
    return np.array(texts)[:, None]


def load_ids(path: str | Path, vocab_size: int, seq_len: int | None) -> np.ndarray:
    """A user's ids from .npy or .npz (one array, or the array named "ids"), checked."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ConversionError(f"{path}: not a .npy or .npz file of ids ({exc})") from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if "ids" not in data.files and len(data.files) != 1:
                raise ConversionError(
                    f"{path}: .npz with arrays {data.files}; name the ids array 'ids'"
                )
            ids = data["ids" if "ids" in data.files else data.files[0]]
    else:
        ids = data
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.dtype.kind not in "iu" or ids.size == 0:
        raise ConversionError(
            f"{path}: ids must be a non-empty (batch, time) integer array; got "
            f"{ids.dtype} {tuple(ids.shape)}"
        )
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ConversionError(
            f"{path}: ids must lie in [0, {vocab_size}) for this model; "
            f"found {ids.min()}..{ids.max()}"
        )
    if seq_len is not None and ids.shape[1] != seq_len:
        raise ConversionError(f"{path}: this model takes {seq_len} ids per row; got {ids.shape[1]}")
    return ids.astype(np.int64)


def padding_shifts(ids: np.ndarray, to: str) -> np.ndarray:
    """Per row, how far to roll it along time to move its padding to side ``to`` ("pre"/"post").

    Rows with padding on both sides or holes are left alone (shift 0).
    """
    real = ids != MASK_VALUE
    seq_len = ids.shape[1]
    shifts = np.zeros(len(ids), dtype=np.int64)
    for row, mask in enumerate(real):
        idx = np.flatnonzero(mask)
        if idx.size == 0 or idx.size != idx[-1] - idx[0] + 1:
            continue
        if to == "post" and idx[0] > 0 and idx[-1] == seq_len - 1:
            shifts[row] = -idx[0]
        elif to == "pre" and idx[0] == 0 and idx[-1] < seq_len - 1:
            shifts[row] = seq_len - 1 - idx[-1]
    return shifts


def roll_rows(array: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Roll each row of a (B, T, ...) array along time by its shift."""
    return np.stack([np.roll(row, int(s), axis=0) for row, s in zip(array, shifts, strict=True)])
