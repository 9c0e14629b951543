"""Running a converted text model on texts: the one path from texts to outputs.

``run_texts(model, texts, vocabulary, feed)`` encodes the texts as the model is fed
(parity.text, ids bounded by the model's token embedding, the model's text length unless
``feed`` names one), runs them in batches in eval mode without gradients, and returns the
outputs asked for: ``"probs"`` (what the model returns) and ``"encoding"`` (what its classifier
head reads: DeepMoji's attention-pooled features), both from one forward pass. ``run_ids`` is
the same run on ids already encoded (fine-tuning's predictions). Fine-tuning (parity.train),
the engines' BatchScorer (parity.engines) and the DeepMoji application (parity.apps.deepmoji)
all run models through here, so batching, devices, modes and text lengths follow one rule.

It lives here, not in parity.text, because it runs torch models and asks their architecture
(parity.arch) for the head, the token embedding and the input length; parity.text stays the
numpy-only text pipeline below the models, and this module sits between the architectures and
what uses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from parity.arch import arch_of
from parity.text import encode

#: Word -> id, as parity.text.load_vocabulary gives it.
Vocabulary = Mapping[str, int]
#: What a run can return: the model's output, or the head's input (the encoding).
OUTPUTS = ("probs", "encoding")
#: Tokens per text when the model does not fix its input length and the caller names none.
DEFAULT_TEXT_LENGTH = 50
#: Texts (rows of ids) per forward pass.
DEFAULT_BATCH_SIZE = 256


def text_length(model: nn.Module, requested: int | None = None) -> int:
    """Tokens per text for ``model``: its fixed input length when it has one (a Flatten after
    the embedding, an Input that states it), else ``requested``, else DEFAULT_TEXT_LENGTH."""
    fixed = arch_of(model).input_length(model)
    if fixed is not None:
        return fixed
    return requested or DEFAULT_TEXT_LENGTH


def vocabulary_rows(model: nn.Module) -> int | None:
    """Ids the model's token embedding has (words beyond it encode as the unknown token);
    None for a model with no token embedding (ids are then not bounded)."""
    try:
        return arch_of(model).token_embedding(model).num_embeddings
    except ValueError:
        return None


@dataclass(frozen=True)
class TextFeed:
    """How texts become a model's ids: tokens per text (None: ``text_length(model)``) and
    Keras' pad_sequences sides ("pre" by default; DeepMoji's own tokenizer uses "post")."""

    maxlen: int | None = None
    padding: str = "pre"
    truncating: str = "pre"


#: As Keras' pad_sequences feeds the reference models: the model's length, "pre" both sides.
KERAS_FEED = TextFeed()


def encode_for(
    model: nn.Module, texts: Sequence[str], vocabulary: Vocabulary, feed: TextFeed = KERAS_FEED
) -> np.ndarray:
    """Texts -> ids (N, length) as ``model`` is fed (parity.text.encode), ids bounded by its
    token embedding. A caller that lets a model's fixed length override a user's choice sets
    ``feed.maxlen`` to ``text_length(model, choice)``."""
    maxlen = text_length(model) if feed.maxlen is None else feed.maxlen
    return encode(
        list(texts),
        vocabulary,
        maxlen,
        vocab_size=vocabulary_rows(model),
        padding=feed.padding,
        truncating=feed.truncating,
    )


def run_ids(
    model: nn.Module,
    ids: np.ndarray,
    *,
    outputs: Sequence[str] = ("probs",),
    batch_size: int = DEFAULT_BATCH_SIZE,
    dtype: torch.dtype = torch.float32,
) -> dict[str, np.ndarray]:
    """ids (N, T) -> {output: (N, width)} in ``dtype``, ``batch_size`` rows a forward pass on
    the model's device, in eval mode without gradients (the model's mode is restored after).
    ``outputs``: names in OUTPUTS; "encoding" is the head's input, read by a forward hook."""
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or not outputs:
        raise ValueError(f"outputs must be names in {OUTPUTS}, got {list(outputs)!r}")
    head = arch_of(model).head_layer(model) if "encoding" in outputs else None
    seen: list[Tensor] = []
    hook = None if head is None else head.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    device, training = next(model.parameters()).device, model.training
    got: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, len(ids), batch_size):
                batch = np.ascontiguousarray(ids[start : start + batch_size], dtype=np.int64)
                probs = model(torch.from_numpy(batch).to(device))
                found = {"probs": probs, "encoding": seen.pop() if seen else None}
                for name in outputs:
                    got[name].append(found[name].to(dtype).cpu().numpy())
    finally:
        model.train(training)
        if hook is not None:
            hook.remove()
    return {name: _join(chunks, model, name, dtype) for name, chunks in got.items()}


def _join(chunks: list[np.ndarray], model: nn.Module, output: str, dtype: torch.dtype):
    """The batches as one array; no rows: (0, width) with the head's width, when known."""
    if chunks:
        return np.concatenate(chunks)
    width = 0
    try:
        weight = getattr(arch_of(model).head_layer(model), "weight", None)
    except (ValueError, TypeError, AttributeError):  # no head: the width is unknown
        weight = None
    if isinstance(weight, Tensor) and weight.dim() == 2:
        width = weight.shape[0 if output == "probs" else 1]
    return np.zeros((0, width), dtype=torch.empty((), dtype=dtype).numpy().dtype)


def run_texts(
    model: nn.Module,
    texts: Sequence[str],
    vocabulary: Vocabulary,
    feed: TextFeed = KERAS_FEED,
    *,
    outputs: Sequence[str] = ("probs",),
    batch_size: int = DEFAULT_BATCH_SIZE,
    dtype: torch.dtype = torch.float32,
) -> dict[str, np.ndarray]:
    """Texts -> {output: (N, width)}: ``encode_for`` then ``run_ids`` (see both)."""
    ids = encode_for(model, texts, vocabulary, feed)
    return run_ids(model, ids, outputs=outputs, batch_size=batch_size, dtype=dtype)
