"""Feed-forward over embeddings: Embedding(mask_zero) -> masked mean -> Dense(relu) -> output.

Parity notes: GlobalAveragePooling1D averages the unmasked steps only (the mask comes from
Embedding(mask_zero=True)), so padding side does not matter; Dropout is identity at inference.
"""

from __future__ import annotations

from typing import Any

from reference_keras.zoo import builders, output_layer

NAME = "embedding_mlp"


def layers(
    k: Any, vocab_size: int = 5000, embedding_dim: int = 32, hidden: int = 32, num_classes: int = 2
) -> list[Any]:
    return [
        k.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding"),
        k.layers.GlobalAveragePooling1D(name="pool"),
        k.layers.Dense(hidden, activation="relu", name="hidden"),
        k.layers.Dropout(0.5, name="dropout"),
        output_layer(k, num_classes),
    ]


build, build_keras2 = builders(NAME, layers)
