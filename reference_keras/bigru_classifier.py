"""Two-layer bidirectional GRU classifier over masked embeddings.

Parity notes: ``reset_after=True`` is the Keras 3 / tf.keras 2 default (nn.GRU's equations);
``reset_after=False`` (Keras 1 / 2.0-2.2's default) applies the reset gate before the recurrent
matmul, which nn.GRU cannot express: parity.ports.GRU computes both. Bidirectional outputs zeros
at masked steps in both directions.
"""

from __future__ import annotations

from typing import Any

from reference_keras.zoo import builders, output_layer

NAME = "bigru_classifier"


def layers(
    k: Any,
    vocab_size: int = 5000,
    embedding_dim: int = 32,
    units: int = 16,
    num_classes: int = 2,
    reset_after: bool = True,
) -> list[Any]:
    def gru(**kwargs: Any) -> Any:
        return k.layers.GRU(units, reset_after=reset_after, **kwargs)

    return [
        k.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding"),
        k.layers.Bidirectional(gru(return_sequences=True), name="bi_gru_0"),
        k.layers.Bidirectional(gru(), name="bi_gru_1"),
        output_layer(k, num_classes),
    ]


build, build_keras2 = builders(NAME, layers)
