"""CNN + LSTM (the Keras IMDB example's shape): Embedding -> Dropout -> Conv1D(valid, strided)
-> MaxPooling1D -> LSTM -> output.

Parity notes: the LSTM sees the pooled convolution features, unmasked; its output is the last
step's h. Gates are Keras 3 / tf.keras 2.3+ defaults (sigmoid).
"""

from __future__ import annotations

from typing import Any

from reference_keras.zoo import builders, output_layer

NAME = "cnn_lstm"


def layers(
    k: Any,
    vocab_size: int = 5000,
    embedding_dim: int = 32,
    filters: int = 16,
    units: int = 16,
    num_classes: int = 2,
) -> list[Any]:
    return [
        k.layers.Embedding(vocab_size, embedding_dim, name="embedding"),
        k.layers.Dropout(0.25, name="dropout"),
        k.layers.Conv1D(filters, 3, strides=1, activation="relu", name="conv"),
        k.layers.MaxPooling1D(2, name="pool"),
        k.layers.LSTM(units, name="lstm"),
        output_layer(k, num_classes),
    ]


build, build_keras2 = builders(NAME, layers)
