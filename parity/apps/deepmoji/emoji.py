"""DeepMoji's emoji and sentence features for texts, with a converted DeepMoji.

- ``emojize(model, texts, vocabulary)``: the top-k of DeepMoji's 64 emoji with probabilities
  (``examples/score_texts_emojis.py``), for a converted 64-class DeepMoji.
- ``encode_texts(model, texts, vocabulary)``: the sentence features, what DeepMoji's
  ``deepmoji_feature_encoding`` model returns (``examples/encode_texts.py``): what the
  classifier head reads, the (N, 2 * 2H + E) = (N, 2304) vector [bi_lstm_1, bi_lstm_0,
  tanh(embedding)] pooled by the attention.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Unpack

import numpy as np
from torch import nn

from parity.apps.deepmoji.pipeline import RunOptions, run
from parity.files import open_regular, reading

#: DeepMoji's 64 emoji in the pretrained model's output order (DeepMoji's emoji_unicode.csv).
EMOJIS: tuple[str, ...] = tuple(
    chr(int(cp, 16))
    for cp in (
        "1f602 1f612 1f629 1f62d 1f60d 1f614 1f44c 1f60a 2764 1f60f 1f601 1f3b6 1f633 1f4af "
        "1f634 1f60c 263a 1f64c 1f495 1f611 1f605 1f64f 1f615 1f618 2665 1f610 1f481 1f61e "
        "1f648 1f62b 270c 1f60e 1f621 1f44d 1f622 1f62a 1f60b 1f624 270b 1f637 1f44f 1f440 "
        "1f52b 1f623 1f608 1f613 1f494 2661 1f3a7 1f64a 1f609 1f480 1f616 1f604 1f61c 1f620 "
        "1f645 1f4aa 1f44a 1f49c 1f496 1f499 1f62c 2728"
    ).split()
)
DEFAULT_TOP_K = 5
#: DeepMoji's sentence features are what its classifier head reads (parity.inference.OUTPUTS).
FEATURES = ("encoding",)


def load_emojis(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """An emoji list in DeepMoji's emoji_unicode.csv layout (``\\U0001f602,1f602`` a line: the
    second column is the code point(s) in hex), or one emoji a line."""
    emojis = []
    with reading(path, "emoji list"), open_regular(path, "emoji list", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            cells = line.split(",")
            try:
                if len(cells) > 1:
                    emojis.append("".join(chr(int(cp, 16)) for cp in cells[1].split()))
                else:
                    emojis.append(cells[0])
            except (ValueError, OverflowError) as exc:
                raise ValueError(f"{path}:{n}: not an emoji line ({exc})") from exc
    return tuple(emojis)


def top_k(probs: np.ndarray, k: int = DEFAULT_TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) probabilities -> (indices, probabilities) of the k largest per row, largest first
    (DeepMoji's ``top_elements``; equal probabilities in class order)."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def check_emojis(num_classes: int, emojis: Sequence[str]) -> None:
    """ValueError unless there is one emoji per class of the model."""
    if num_classes != len(emojis):
        raise ValueError(
            f"the model has {num_classes} classes but {len(emojis)} emoji are named: "
            "use DeepMoji's 64-class model or pass its own emoji list"
        )


def predict(
    model: nn.Module,
    texts: str | Sequence[str],
    vocabulary: Mapping[str, int],
    **options: Unpack[RunOptions],
) -> np.ndarray:
    """Texts -> the model's probabilities (N, C), texts fed as DeepMoji feeds them
    (``options``: maxlen, batch_size; pipeline.RunOptions)."""
    return run(model, texts, vocabulary, **options)["probs"]


def emojize(
    model: nn.Module,
    texts: str | Sequence[str],
    vocabulary: Mapping[str, int],
    *,
    k: int = DEFAULT_TOP_K,
    emojis: Sequence[str] = EMOJIS,
    **options: Unpack[RunOptions],
) -> list[list[tuple[str, float]]]:
    """Per text, the k most likely emoji with their probabilities, most likely first."""
    probs = predict(model, texts, vocabulary, **options)
    check_emojis(probs.shape[1], emojis)
    order, top = top_k(probs, k)
    return [
        [(emojis[i], float(p)) for i, p in zip(row, prow, strict=True)]
        for row, prow in zip(order, top, strict=True)
    ]


def encode_texts(
    model: nn.Module,
    texts: str | Sequence[str],
    vocabulary: Mapping[str, int],
    **options: Unpack[RunOptions],
) -> np.ndarray:
    """Texts -> DeepMoji's sentence features (N, attention width: 2304 for the full model),
    float32: the attention-weighted average that feeds the classifier (the head's input)."""
    return run(model, texts, vocabulary, outputs=FEATURES, **options)["encoding"]
