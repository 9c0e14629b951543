"""Keras ``pad_sequences`` for int ids (reproduced exactly; tested against Keras itself)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parity.conventions import MASK_VALUE

#: Padding id; equal to the Embedding(mask_zero=True) mask value.
PAD_ID = MASK_VALUE
PADDING_MODES = ("pre", "post")


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    maxlen: int | None = None,
    *,
    padding: str = "pre",
    truncating: str = "pre",
    value: int = PAD_ID,
) -> np.ndarray:
    """Keras ``pad_sequences`` for int ids: (N, maxlen) int32, default pre-pad, pre-truncate.

    ``maxlen=None`` uses the longest sequence; empty sequences become all-padding rows.
    """
    for name, mode in (("padding", padding), ("truncating", truncating)):
        if mode not in PADDING_MODES:
            raise ValueError(f"{name} must be one of {PADDING_MODES}, got {mode!r}")
    lengths = [len(s) for s in sequences]
    if maxlen is None:
        maxlen = max(lengths, default=0)
    elif maxlen < 1:
        raise ValueError(f"maxlen must be >= 1 or None, got {maxlen}")
    out = np.full((len(sequences), maxlen), value, dtype=np.int32)
    for row, seq in enumerate(sequences):
        if not len(seq):
            continue
        kept = np.asarray(seq[-maxlen:] if truncating == "pre" else seq[:maxlen], dtype=np.int32)
        if padding == "pre":
            out[row, maxlen - len(kept) :] = kept
        else:
            out[row, : len(kept)] = kept
    return out
