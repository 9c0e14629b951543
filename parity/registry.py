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

from parity.convert.load import Row, apply_mapping, build_empty, collect_weights, resolve_layers
from parity.convert.read import KerasFile
from parity.errors import ConversionError
from parity.models import deepmoji, embedding_dense, generic


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
    #: The Keras classes of the model config's layers in order (InputLayer left out), when the
    #: pair is exactly a model of standard layers: a file with a config converts as this pair
    #: (arch=None) only if its layers are these; None = decide from the weighted layers.
    keras_structure: tuple[str, ...] | None = None

    def build(self, config: Any) -> nn.Module:
        return self.model_cls(config)

    def from_keras(
        self, kfile: KerasFile, hard_sigmoid: str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[nn.Module, list[str]]:
        """Build this pair's module with the file's sizes and fill it strictly."""
        layers = resolve_layers(kfile, self.keras_layers)
        weights = collect_weights(kfile, layers, self.keras_layers)
        config, notes = self.config_from_keras(kfile, layers, weights, hard_sigmoid)
        model = build_empty(lambda: self.build(config), dtype)
        apply_mapping(model, self.mapping, weights, source=str(kfile.path), assign=True)
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
        keras_structure=("Embedding", "Flatten", "Dense"),
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


@dataclass(frozen=True)
class GenericArch:
    """The generic path as an architecture: the module is rebuilt from the file's model config
    by parity.models.generic. Zoo entries are generic architectures with a name, a Keras
    reference and the mapping table their layers produce (the test matrix of the seed models)."""

    name: str
    reference: str | None = None
    #: Weighted layers (role, class) as in Pair; empty for the open-ended "generic".
    keras_layers: Sequence[tuple[str, str]] = ()
    config_cls: type = generic.GenericConfig
    model_cls: type[nn.Module] = generic.GenericModel

    @property
    def mapping(self) -> list[Row]:
        """The rows the generic converters produce for ``keras_layers`` (default configs)."""
        return [row for role, cls in self.keras_layers for row in generic.default_rows(role, cls)]

    def build(self, config: generic.GenericConfig) -> nn.Module:
        return generic.GenericModel(config)

    def from_keras(
        self, kfile: KerasFile, hard_sigmoid: str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[nn.Module, list[str]]:
        model, notes = generic.from_keras(kfile, hard_sigmoid=hard_sigmoid, dtype=dtype)
        if self.keras_layers and set(model.mapping) != set(self.mapping):
            raise ConversionError(
                f"{kfile.path}: not a {self.name} model (its layers map to "
                f"{sorted({r[0].split('/')[0] for r in model.mapping if r[0]})}, {self.name} has "
                f"{[role for role, _ in self.keras_layers]})"
            )
        return model, notes


GENERIC_NAME = "generic"
GENERIC = GenericArch(GENERIC_NAME)

#: The seed model zoo (issue 4): standard-layer models converted by the generic path, each with a
#: Keras reference in reference_keras/<name>.py and golden cases in tests/golden_cases.py.
ZOO: dict[str, GenericArch] = {
    entry.name: entry
    for entry in (
        GenericArch(
            "embedding_mlp",
            "reference_keras.embedding_mlp",
            (("embedding", "Embedding"), ("hidden", "Dense"), ("output", "Dense")),
        ),
        GenericArch(
            "cnn",
            "reference_keras.cnn",
            (
                ("embedding", "Embedding"),
                ("conv_0", "Conv1D"),
                ("conv_1", "Conv1D"),
                ("hidden", "Dense"),
                ("output", "Dense"),
            ),
        ),
        GenericArch(
            "cnn_lstm",
            "reference_keras.cnn_lstm",
            (
                ("embedding", "Embedding"),
                ("conv", "Conv1D"),
                ("lstm", "LSTM"),
                ("output", "Dense"),
            ),
        ),
        GenericArch(
            "stacked_rnn",
            "reference_keras.stacked_rnn",
            (
                ("embedding", "Embedding"),
                ("rnn_0", "SimpleRNN"),
                ("rnn_1", "SimpleRNN"),
                ("output", "Dense"),
            ),
        ),
        GenericArch(
            "bigru_classifier",
            "reference_keras.bigru_classifier",
            (
                ("embedding", "Embedding"),
                ("bi_gru_0", "Bidirectional(GRU)"),
                ("bi_gru_1", "Bidirectional(GRU)"),
                ("output", "Dense"),
            ),
        ),
        GenericArch(
            "bilstm_classifier",
            "reference_keras.bilstm_classifier",
            (
                ("embedding", "Embedding"),
                ("bi_lstm_0", "Bidirectional(LSTM)"),
                ("bi_lstm_1", "Bidirectional(LSTM)"),
                ("output", "Dense"),
            ),
        ),
        GenericArch(
            "lstm_regressor",
            "reference_keras.lstm_regressor",
            (("embedding", "Embedding"), ("lstm", "LSTM"), ("output", "Dense")),
        ),
    )
}


def arch_names() -> list[str]:
    """Every name arch= accepts: the pairs, "generic", the zoo."""
    return [*PAIRS, GENERIC_NAME, *ZOO]


def get_pair(name: str) -> Pair | GenericArch:
    if name in PAIRS:
        return PAIRS[name]
    if name == GENERIC_NAME:
        return GENERIC
    if name in ZOO:
        return ZOO[name]
    raise ConversionError(f"unknown arch {name!r}; registered: {', '.join(arch_names())}")


def pair_of(model: nn.Module) -> Pair | GenericArch:
    for pair in PAIRS.values():
        if type(model) is pair.model_cls:
            return pair
    if type(model) is generic.GenericModel:
        return GENERIC
    raise TypeError(f"{type(model).__name__} is not a registered keras-parity model")


def choose_arch(kfile: KerasFile) -> Pair | GenericArch:
    """arch=None: which architecture converts this file.

    A file with a model config whose layers are all supported converts through the generic path,
    unless a registered pair is exactly that model (its keras_structure) and accepts the file.
    A file without a config (weights only), or with layers the generic path does not know
    (DeepMoji's attention), is matched to a registered pair by its weighted layers.
    """
    structure = generic.config_classes(kfile)
    if structure is not None and not generic.unsupported_layers(kfile):
        for pair in PAIRS.values():
            if pair.keras_structure is None or tuple(structure) != pair.keras_structure:
                continue
            try:
                layers = resolve_layers(kfile, pair.keras_layers)
                weights = collect_weights(kfile, layers, pair.keras_layers)
                pair.config_from_keras(kfile, layers, weights, None)
            except ConversionError:
                continue
            return pair
        return GENERIC
    try:
        return detect_pair(kfile)
    except ConversionError as exc:
        unsupported = generic.unsupported_layers(kfile)
        if unsupported:
            raise ConversionError(
                f"{exc}; the generic path cannot convert it either: unsupported layer(s) "
                f"{', '.join(unsupported)}"
            ) from exc
        if not kfile.model_config:
            raise ConversionError(
                f"{exc}; the file has no model config ({kfile.format} stores weights only), so "
                "the generic path cannot rebuild it: pass arch=, or convert the full-model file"
            ) from exc
        raise


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
