"""Embedding -> Flatten -> Dense softmax: the seed tutorial's sentiment classifier, in Keras.

The model of "PyTorch vs Keras: sentiment analysis using embeddings": ids of a pre-padded
review go through a trainable embedding, are flattened channels-last and classified by one
softmax layer.

Parity notes:
- Flatten is channels-last: feature index = t * embedding_dim + d, the order the torch port's
  ``flatten(1)`` of a (B, T, D) tensor gives, so the Dense kernel (T*D, C) only transposes.
- No mask: id 0 is an ordinary embedding row here (Keras does not zero it, unlike
  ``nn.Embedding(padding_idx=0)``), so padding side changes the output; inputs are pre-padded.
- ``seq_len`` is fixed by the Dense kernel's shape (seq_len * embedding_dim, num_classes).
"""

from __future__ import annotations

from typing import Any

import keras

NAME = "embedding_dense"


def _build(k: Any, vocab_size: int, seq_len: int, embedding_dim: int, num_classes: int) -> Any:
    """The model in Keras module ``k`` (keras or tf_keras), compiled with Adam and sparse
    categorical cross-entropy (int labels)."""
    model = k.Sequential(
        [
            k.Input(shape=(seq_len,), dtype="int32", name="ids"),
            k.layers.Embedding(vocab_size, embedding_dim, name="embedding"),
            k.layers.Flatten(name="flatten"),
            k.layers.Dense(num_classes, activation="softmax", name="dense"),
        ],
        name=NAME,
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build(
    vocab_size: int = 10000, seq_len: int = 100, embedding_dim: int = 8, num_classes: int = 2
) -> keras.Model:
    """Keras 3 model."""
    return _build(keras, vocab_size, seq_len, embedding_dim, num_classes)


def build_keras2(
    vocab_size: int = 10000, seq_len: int = 100, embedding_dim: int = 8, num_classes: int = 2
) -> Any:
    """The same model in tf_keras (Keras 2), to write the Keras 2 files users hold."""
    import tf_keras

    return _build(tf_keras, vocab_size, seq_len, embedding_dim, num_classes)
