"""DeepMoji's specifics of running a model on texts: how its own code feeds them.

DeepMoji's ``SentenceTokenizer`` post-pads and post-truncates (parity.text's default is Keras'
"pre"), and its examples score 64 texts a batch. Everything else (the text length, the
vocabulary bound, batching, eval mode) is the library's one rule, parity.inference.run_texts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TypedDict

import numpy as np
from torch import nn

from parity.inference import TextFeed, run_texts

#: DeepMoji's SentenceTokenizer pads and cuts texts at their end.
DEEPMOJI_FEED = TextFeed(padding="post", truncating="post")
#: Texts a forward pass (and, in score_file, texts read before each pass).
DEFAULT_BATCH_SIZE = 64


class RunOptions(TypedDict, total=False):
    """What a caller of ``run`` may set: tokens per text (None: the model's text length,
    parity.inference.text_length) and texts a forward pass."""

    maxlen: int | None
    batch_size: int


def run(
    model: nn.Module,
    texts: str | Sequence[str],
    vocabulary: Mapping[str, int],
    *,
    maxlen: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    outputs: Sequence[str] = ("probs",),
) -> dict[str, np.ndarray]:
    """Texts (or one text) -> {output: (N, width)} float32, fed as DeepMoji feeds them."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    feed = dataclasses.replace(DEEPMOJI_FEED, maxlen=maxlen)
    return run_texts(model, texts, vocabulary, feed, outputs=outputs, batch_size=batch_size)
