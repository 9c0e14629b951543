"""DeepMoji (Felbo et al. 2017): embedding -> 2 bidirectional LSTMs -> attention -> classifier.

Port of deepmoji/model_def.py (``deepmoji_architecture``). Keras half: reference_keras/deepmoji.py.

Parity notes:
- The LSTMs use Keras 2's hard sigmoid (slope 0.2) on their gates: DeepMoji relies on the
  LSTM default, which was hard_sigmoid before Keras 2.3. ``gate_activation`` is config-driven so
  a model re-trained under Keras 3 (slope 1/6) or with sigmoid gates is expressible too.
- Keras' Embedding has no padding row: id 0 (``MASK_VALUE``) is a trained vector, only masked.
  So nn.Embedding has no padding_idx; the mask is ``ids != MASK_VALUE``, and masked steps carry
  the LSTM state, whether rows are pre-padded, post-padded or have holes.
- Bidirectional layers output zeros at masked steps (Keras >= 2.2 / Keras 3). Keras 2.0, which
  DeepMoji was trained with, emitted the carried output there instead; the classifier output is
  the same either way because the attention gives masked steps weight 0 and the next LSTM skips
  them. Only intermediate LSTM outputs at masked positions differ.
- The attention's max runs over all steps (masked included) and its denominator carries
  ``ATTENTION_EPSILON``, as in deepmoji/attlayer.py (torchMoji differs on both).
- The features the attention pools are concatenated as [bi_lstm_1, bi_lstm_0, tanh(embedding)],
  in that order, so the attention weight converts without permutation.
- ``embed_dropout`` is SpatialDropout1D: whole embedding channels per sample; identity in eval.
- Binary tasks end in Dense(1, sigmoid), others in Dense(num_classes, softmax); the layer is
  named ``softmax`` either way, as in DeepMoji.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from parity.arch.base import PairArch, Point
from parity.arch.gates import activation_name, resolve_gate
from parity.arch.generic import default_rows, default_weights
from parity.conventions import (
    DEEPMOJI_MAX_SIGMOID_CLASSES,
    LSTM_RECURRENT_ACTIVATION_DEFAULT_KERAS_LT_2_3,
    MASK_VALUE,
)
from parity.convert.mapping import Row
from parity.errors import ConversionError
from parity.keras.read import KerasFile, KerasLayer
from parity.ports import LSTM, AttentionWeightedAverage, SpatialDropout1D


def _softmax(z: Tensor) -> Tensor:
    return torch.softmax(z, dim=-1)


_OUTPUT_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "softmax": _softmax,
    "sigmoid": torch.sigmoid,
}


@dataclass
class DeepMojiConfig:
    vocab_size: int = 50000
    embedding_dim: int = 256
    hidden_size: int = 512
    num_classes: int = 64
    gate_activation: str = "hard_sigmoid_keras2"
    embed_dropout: float = 0.0
    final_dropout: float = 0.0
    #: Keras layers saved with trainable=False: their weights convert frozen (requires_grad off).
    frozen_layers: list[str] = field(default_factory=list)
    #: The length the file's Input fixes (DeepMoji's own: Input(shape=(maxlen,))); None: any.
    input_length: int | None = None

    @property
    def binary(self) -> bool:
        return self.num_classes <= DEEPMOJI_MAX_SIGMOID_CLASSES

    @property
    def output_units(self) -> int:
        """1 for binary tasks (one sigmoid unit), else one unit per class."""
        return 1 if self.binary else self.num_classes

    @property
    def output_activation(self) -> str:
        return "sigmoid" if self.binary else "softmax"

    @property
    def attention_size(self) -> int:
        """Width of [bi_lstm_1, bi_lstm_0, embedding]: two bidirectional outputs + the input."""
        return 2 * (2 * self.hidden_size) + self.embedding_dim


class DeepMoji(nn.Module):
    """DeepMoji; submodule names are DeepMoji's Keras layer names."""

    def __init__(self, config: DeepMojiConfig) -> None:
        super().__init__()
        self.config = config
        lstm_kwargs = {
            "batch_first": True,
            "bidirectional": True,
            "gate_activation": config.gate_activation,
            "trainable_bias_hh": False,  # Keras' LSTM has one bias
        }
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.embed_dropout = SpatialDropout1D(config.embed_dropout)
        self.bi_lstm_0 = LSTM(config.embedding_dim, config.hidden_size, **lstm_kwargs)
        self.bi_lstm_1 = LSTM(2 * config.hidden_size, config.hidden_size, **lstm_kwargs)
        self.attlayer = AttentionWeightedAverage(config.attention_size)
        self.final_dropout = nn.Dropout(config.final_dropout)
        self.softmax = nn.Linear(config.attention_size, config.output_units)
        self._output_activation = _OUTPUT_ACTIVATIONS[config.output_activation]

    def forward(
        self, ids: Tensor, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """ids: (B, T) int, 0 = padding (pre or post). Returns probabilities (B, output_units),
        and the attention weights (B, T) when ``return_attention``."""
        mask = ids != MASK_VALUE  # (B, T)
        x = torch.tanh(self.embedding(ids))  # (B, T, E)
        x = self.embed_dropout(x)  # (B, T, E)
        h0 = self.bi_lstm_0(x, mask=mask)[0]  # (B, T, 2H), zeros at masked steps
        h1 = self.bi_lstm_1(h0, mask=mask)[0]  # (B, T, 2H)
        feats = torch.cat([h1, h0, x], dim=-1)  # (B, T, 4H + E), DeepMoji's order
        pooled, att = self.attlayer(feats, mask, return_attention=True)  # (B, 4H + E), (B, T)
        logits = self.softmax(self.final_dropout(pooled))  # (B, output_units)
        probs = self._output_activation(logits)
        return (probs, att) if return_attention else probs


# --- conversion -------------------------------------------------------------------------------

#: The Keras layers with weights, in model order: DeepMoji's layer names and Keras classes.
KERAS_LAYERS: tuple[tuple[str, str], ...] = (
    ("embedding", "Embedding"),
    ("bi_lstm_0", "Bidirectional(LSTM)"),
    ("bi_lstm_1", "Bidirectional(LSTM)"),
    ("attlayer", "AttentionWeightedAverage"),
    ("softmax", "Dense"),
)


#: Mapping table: (Keras weight, torch parameter, transform).
MAPPING: tuple[Row, ...] = (
    ("embedding/embeddings", "embedding.weight", "identity"),
    # the recurrent port's own rows: forward then backward, torch's bias_hh a zero buffer
    *default_rows("bi_lstm_0", "Bidirectional(LSTM)"),
    *default_rows("bi_lstm_1", "Bidirectional(LSTM)"),
    *default_rows("attlayer", "AttentionWeightedAverage"),  # the attention port's own row
    ("softmax/kernel", "softmax.weight", "transpose"),
    ("softmax/bias", "softmax.bias", "identity"),
)

#: DeepMoji relies on the LSTM default gate, hard_sigmoid in the Keras it was trained with.
DEFAULT_GATE = LSTM_RECURRENT_ACTIVATION_DEFAULT_KERAS_LT_2_3


def _recurrent_activation(layer: KerasLayer) -> object | None:
    """The wrapped LSTM's gate from a Bidirectional config (Keras 1 calls it inner_activation)."""
    if layer.config is None:
        return None
    inner = layer.config.get("layer", {})
    inner = inner.get("config", inner)
    return inner.get("recurrent_activation", inner.get("inner_activation"))


def config_from_keras(
    kfile: KerasFile,
    layers: dict[str, KerasLayer],
    weights: dict[str, np.ndarray],
    hard_sigmoid: str | None,
) -> tuple[DeepMojiConfig, list[str]]:
    """Sizes from the weight shapes, the gate from the LSTM configs (or the file's version)."""
    vocab_size, embedding_dim = weights["embedding/embeddings"].shape
    hidden_size = weights["bi_lstm_0/forward_recurrent_kernel"].shape[0]
    units = weights["softmax/kernel"].shape[1]
    lstms = [layers["bi_lstm_0"], layers["bi_lstm_1"]]
    configured = [_recurrent_activation(layer) for layer in lstms]
    if len({None if c is None else activation_name(c) for c in configured}) > 1:
        raise ConversionError(
            f"{kfile.path}: the two LSTMs use different gates {configured}; DeepMoji has one"
        )
    gate, notes = resolve_gate(
        kfile,
        configured[0],
        hard_sigmoid,
        default=DEFAULT_GATE,
        layer=" and ".join(layer.name for layer in lstms),
    )
    num_classes = DEEPMOJI_MAX_SIGMOID_CLASSES if units == 1 else units
    config = DeepMojiConfig(
        vocab_size=vocab_size,
        embedding_dim=embedding_dim,
        hidden_size=hidden_size,
        num_classes=num_classes,
        gate_activation=gate,
    )
    return config, notes


#: Where each Keras layer's output is in the port, for `parity check`.
CHECK_POINTS: tuple[tuple[str, Point], ...] = (
    ("embedding", Point("embedding")),
    ("activation", Point("embedding", then="tanh")),  # tanh is a call in forward()
    ("bi_lstm_0", Point("bi_lstm_0", pick=0)),  # LSTM returns (output, (h, c))
    ("bi_lstm_1", Point("bi_lstm_1", pick=0)),
    ("concat", Point("attlayer", hook="input")),  # the features the attention pools
    ("attlayer", Point("attlayer", pick=0)),  # (pooled, attention)
    ("softmax", Point("softmax", then="config.output_activation")),  # Linear gives logits
)

ARCH = PairArch(
    name="deepmoji",
    config_cls=DeepMojiConfig,
    model_cls=DeepMoji,
    keras_layers=KERAS_LAYERS,
    layer_weights={cls: default_weights(cls) for _, cls in KERAS_LAYERS},
    rows=MAPPING,
    own_class="AttentionWeightedAverage",
    config_from_keras=config_from_keras,
    points=CHECK_POINTS,
    head_module="softmax",
    reference="reference_keras.deepmoji",
    length_field="input_length",
    dropout_fields=("embed_dropout", "final_dropout"),
)
