"""The seed tutorial's sentiment model: Embedding -> Flatten -> Dense(softmax).

From the write-up "PyTorch vs Keras: sentiment analysis using embeddings": Embedding(10000, 8)
over 100 pre-padded token ids, Flatten, Dense(2, softmax). Keras half:
reference_keras/embedding_dense.py.

Parity notes:
- Keras' Embedding has no padding row: id 0 is a trained vector like any other, so the port uses
  nn.Embedding without padding_idx (which would zero row 0 and its gradient).
- Keras' Flatten is channels-last: (B, T, D) flattens row-major over (T, D), which is exactly
  torch's reshape of the same (B, T, D) tensor, so the Dense kernel only transposes.
- The model outputs probabilities (softmax inside), as the Keras model does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from parity.arch.base import PairArch, Point
from parity.arch.generic import default_weights
from parity.convert.mapping import Row
from parity.errors import ConversionError
from parity.keras.read import KerasFile, KerasLayer


@dataclass
class EmbeddingDenseConfig:
    vocab_size: int = 10000
    seq_len: int = 100
    embedding_dim: int = 8
    num_classes: int = 2
    #: Keras layers saved with trainable=False: their weights convert frozen (requires_grad off).
    frozen_layers: list[str] = field(default_factory=list)


class EmbeddingDense(nn.Module):
    def __init__(self, config: EmbeddingDenseConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.dense = nn.Linear(config.seq_len * config.embedding_dim, config.num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.shape[1] != self.config.seq_len:
            raise ValueError(
                f"ids must be (batch, {self.config.seq_len}) as the Keras model's Flatten "
                f"fixes the length; got {tuple(ids.shape)}"
            )
        x = self.embedding(ids)  # (B, T, D)
        x = x.reshape(x.shape[0], -1)  # (B, T*D), Keras' channels-last Flatten
        return torch.softmax(self.dense(x), dim=-1)  # (B, C)


# --- conversion -------------------------------------------------------------------------------

OUTPUT_ACTIVATION = "softmax"

#: The Keras layers with weights, in model order: (layer name in the reference, Keras class).
KERAS_LAYERS: tuple[tuple[str, str], ...] = (("embedding", "Embedding"), ("dense", "Dense"))

#: Mapping table: (Keras weight, torch parameter, transform).
MAPPING: tuple[Row, ...] = (
    ("embedding/embeddings", "embedding.weight", "identity"),
    ("dense/kernel", "dense.weight", "transpose"),
    ("dense/bias", "dense.bias", "identity"),
)


def config_from_keras(
    kfile: KerasFile,
    layers: dict[str, KerasLayer],
    weights: dict[str, np.ndarray],
    hard_sigmoid: str | None,
) -> tuple[EmbeddingDenseConfig, list[str]]:
    """Sizes from the weight shapes; the sequence length from the Dense kernel's rows."""
    activation = (layers["dense"].config or {}).get("activation", OUTPUT_ACTIVATION)
    if activation != OUTPUT_ACTIVATION:
        raise ConversionError(
            f"{kfile.path}: layer {layers['dense'].name!r} has activation {activation!r}; "
            f"embedding_dense ends in {OUTPUT_ACTIVATION}"
        )
    vocab_size, embedding_dim = weights["embedding/embeddings"].shape
    flat, num_classes = weights["dense/kernel"].shape
    if flat % embedding_dim:
        raise ConversionError(
            f"{kfile.path}: dense kernel has {flat} rows, not a multiple of the embedding "
            f"width {embedding_dim}: not an Embedding -> Flatten -> Dense model"
        )
    config = EmbeddingDenseConfig(vocab_size, flat // embedding_dim, embedding_dim, num_classes)
    return config, []


#: Where each Keras layer's output is in the port, for `parity check`.
CHECK_POINTS: tuple[tuple[str, Point], ...] = (
    ("embedding", Point("embedding")),
    ("flatten", Point("dense", hook="input")),  # Keras' channels-last Flatten = reshape
    ("dense", Point("dense", then="softmax")),  # Keras Dense outputs post-softmax
)

ARCH = PairArch(
    name="embedding_dense",
    config_cls=EmbeddingDenseConfig,
    model_cls=EmbeddingDense,
    keras_layers=KERAS_LAYERS,
    layer_weights={cls: default_weights(cls) for _, cls in KERAS_LAYERS},
    rows=MAPPING,
    config_from_keras=config_from_keras,
    points=CHECK_POINTS,
    head_module="dense",
    reference="reference_keras.embedding_dense",
    keras_structure=("Embedding", "Flatten", "Dense"),
    length_field="seq_len",
)
