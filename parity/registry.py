"""Model pairs by name: the table of contents of the project and the test matrix.

Adding a pair = one entry in PAIRS (its model file provides the landmarks); every conversion,
parity and serialisation test is parametrised over this table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from parity.convert.load import Row, apply_mapping, collect_weights, resolve_layers
from parity.convert.read import KerasFile
from parity.errors import ConversionError
from parity.models import deepmoji, embedding_dense


@dataclass(frozen=True)
class Pair:
    """A Keras reference model and its PyTorch port, linked by a mapping table."""

    name: str
    config_cls: type
    model_cls: type[nn.Module]
    #: Keras layers with weights, in model order: (layer name in the reference, Keras class).
    keras_layers: Sequence[tuple[str, str]]
    mapping: Sequence[Row]
    #: (kfile, resolved layers, weights, hard_sigmoid) -> (config, notes on assumptions)
    config_from_keras: Callable[..., tuple[Any, list[str]]]
    #: Module of the Keras half, under reference_keras/.
    reference: str

    def build(self, config: Any) -> nn.Module:
        return self.model_cls(config)

    def from_keras(
        self, kfile: KerasFile, hard_sigmoid: str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[nn.Module, list[str]]:
        """Build this pair's module with the file's sizes and fill it strictly."""
        layers = resolve_layers(kfile, self.keras_layers)
        weights = collect_weights(kfile, layers, self.keras_layers)
        config, notes = self.config_from_keras(kfile, layers, weights, hard_sigmoid)
        model = self.build(config).to(dtype)
        apply_mapping(model, self.mapping, weights, source=str(kfile.path))
        return model.eval(), notes


PAIRS: dict[str, Pair] = {
    "embedding_dense": Pair(
        name="embedding_dense",
        config_cls=embedding_dense.EmbeddingDenseConfig,
        model_cls=embedding_dense.EmbeddingDense,
        keras_layers=embedding_dense.KERAS_LAYERS,
        mapping=embedding_dense.MAPPING,
        config_from_keras=embedding_dense.config_from_keras,
        reference="reference_keras.embedding_dense",
    ),
    "deepmoji": Pair(
        name="deepmoji",
        config_cls=deepmoji.DeepMojiConfig,
        model_cls=deepmoji.DeepMoji,
        keras_layers=deepmoji.KERAS_LAYERS,
        mapping=deepmoji.MAPPING,
        config_from_keras=deepmoji.config_from_keras,
        reference="reference_keras.deepmoji",
    ),
}


def get_pair(name: str) -> Pair:
    if name not in PAIRS:
        raise ConversionError(f"unknown arch {name!r}; registered: {', '.join(PAIRS)}")
    return PAIRS[name]


def pair_of(model: nn.Module) -> Pair:
    for pair in PAIRS.values():
        if type(model) is pair.model_cls:
            return pair
    raise TypeError(f"{type(model).__name__} is not a registered keras-parity model")


def detect_pair(kfile: KerasFile) -> Pair:
    """The one registered pair whose layers the file matches (arch=None)."""
    fits = []
    for pair in PAIRS.values():
        try:
            layers = resolve_layers(kfile, pair.keras_layers)
            weights = collect_weights(kfile, layers, pair.keras_layers)
            pair.config_from_keras(kfile, layers, weights, None)
        except ConversionError:
            continue
        fits.append(pair)
    if len(fits) != 1:
        found = ", ".join(layer.name for layer in kfile.weighted_layers) or "none"
        which = "none" if not fits else " and ".join(p.name for p in fits)
        raise ConversionError(
            f"{kfile.path}: cannot tell the architecture (layers with weights: {found}; "
            f"registered architectures matching: {which}); pass arch= one of {', '.join(PAIRS)}"
        )
    return fits[0]


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
