"""Stacked SimpleRNN classifier: Embedding(mask_zero) -> SimpleRNN(sequences) -> SimpleRNN.

Parity notes: masked steps carry the state; the first RNN outputs its previous output there (a
plain Keras RNN, not Bidirectional), which the second RNN never reads because the mask is
passed on.
"""

from __future__ import annotations

from typing import Any

from reference_keras.zoo import builders, output_layer

NAME = "stacked_rnn"


def layers(
    k: Any, vocab_size: int = 5000, embedding_dim: int = 32, units: int = 16, num_classes: int = 2
) -> list[Any]:
    return [
        k.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding"),
        k.layers.SimpleRNN(units, return_sequences=True, name="rnn_0"),
        k.layers.SimpleRNN(units, name="rnn_1"),
        output_layer(k, num_classes),
    ]


build, build_keras2 = builders(NAME, layers)
