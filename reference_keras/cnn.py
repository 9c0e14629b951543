"""1-D CNN text classifier: Embedding -> Conv1D(same) -> MaxPooling1D -> Conv1D(causal,
dilated) -> GlobalMaxPooling1D -> Dense(relu) -> output.

Parity notes: no mask (Keras' Conv1D does not support one); "same" pads the TensorFlow way
(extra column on the right), "causal" on the left by (kernel - 1) * dilation.
"""

from __future__ import annotations

from typing import Any

from reference_keras.zoo import builders, output_layer

NAME = "cnn"


def layers(
    k: Any,
    vocab_size: int = 5000,
    embedding_dim: int = 32,
    filters: int = 16,
    hidden: int = 16,
    num_classes: int = 2,
) -> list[Any]:
    return [
        k.layers.Embedding(vocab_size, embedding_dim, name="embedding"),
        k.layers.SpatialDropout1D(0.2, name="embed_dropout"),
        k.layers.Conv1D(filters, 4, padding="same", activation="relu", name="conv_0"),
        k.layers.MaxPooling1D(2, name="pool_0"),
        k.layers.Conv1D(
            filters, 3, padding="causal", dilation_rate=2, activation="relu", name="conv_1"
        ),
        k.layers.GlobalMaxPooling1D(name="pool_1"),
        k.layers.Dense(hidden, activation="relu", name="hidden"),
        output_layer(k, num_classes),
    ]


build, build_keras2 = builders(NAME, layers)
