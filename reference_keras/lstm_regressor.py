"""Masked LSTM rating regressor: Embedding(mask_zero) -> LSTM -> Dense(1), linear, MSE.

Parity notes: the LSTM's output is its state at the last real token, whether pre- or
post-padded; the head is linear (``num_classes=0``: regression).
"""

from __future__ import annotations

from typing import Any

from reference_keras.zoo import builders, output_layer

NAME = "lstm_regressor"


def layers(
    k: Any, vocab_size: int = 5000, embedding_dim: int = 32, units: int = 16, num_classes: int = 0
) -> list[Any]:
    return [
        k.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding"),
        k.layers.LSTM(units, name="lstm"),
        output_layer(k, num_classes),
    ]


build, build_keras2 = builders(NAME, layers)
