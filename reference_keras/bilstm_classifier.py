"""Two-layer bidirectional LSTM classifier over masked embeddings.

Parity notes: sigmoid gates (Keras 3 / tf.keras 2.3+ default); Bidirectional concatenates
[forward, backward], outputs zeros at masked steps, and the backward pass starts at the last
real token, whether rows are pre- or post-padded.
"""

from __future__ import annotations

from typing import Any

from reference_keras.zoo import builders, output_layer

NAME = "bilstm_classifier"


def layers(
    k: Any, vocab_size: int = 5000, embedding_dim: int = 32, units: int = 16, num_classes: int = 2
) -> list[Any]:
    return [
        k.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding"),
        k.layers.Bidirectional(k.layers.LSTM(units, return_sequences=True), name="bi_lstm_0"),
        k.layers.Bidirectional(k.layers.LSTM(units), name="bi_lstm_1"),
        output_layer(k, num_classes),
    ]


build, build_keras2 = builders(NAME, layers)
