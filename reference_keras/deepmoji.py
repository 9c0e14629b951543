"""DeepMoji (Felbo et al. 2017) in Keras 3, plus a tf_keras twin that writes DeepMoji-layout files.

ids -> Embedding(mask_zero) -> tanh -> [SpatialDropout1D] -> BiLSTM -> BiLSTM ->
concat(bi_lstm_1, bi_lstm_0, tanh embedding after its dropout, as in DeepMoji) ->
attention-weighted average -> [Dropout] -> softmax (or one sigmoid unit for two classes).

Parity notes:
- Gates: DeepMoji was trained with Keras 2's default LSTM gate activation, the 0.2-slope
  ``hard_sigmoid``. Keras 3's builtin ``"hard_sigmoid"`` has slope 1/6, so a Keras 3 rebuild of
  DeepMoji must use ``gate="hard_sigmoid_keras2"`` (the registered ``parity>hard_sigmoid_keras2``
  activation below) to compute what the original computed.
- Masking: id 0 is masked. Bidirectional forces ``zero_output_for_mask`` on its return-sequence
  LSTMs, so masked steps output zeros in both directions, but the tanh-embedding branch of the
  concatenation is *not* zeroed (row 0 of the embedding is an ordinary, trained row).
- Attention: the max subtracted before ``exp`` runs over *all* steps, masked ones included (as
  in DeepMoji); it cancels in the ratio except against the epsilon
  (``parity.conventions.ATTENTION_EPSILON``), so a port must take the same max.
- Layer names are DeepMoji's (embedding, bi_lstm_0, bi_lstm_1, attlayer, softmax), so
  ``build_keras2(...).save_weights("x.h5")`` has the layer groups of DeepMoji's weight file.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
from keras import ops

from parity.conventions import (
    ATTENTION_EPSILON,
    HARD_SIGMOID_KERAS2_OFFSET,
    HARD_SIGMOID_KERAS2_SLOPE,
)

NAME = "deepmoji"
PACKAGE = "parity"


@keras.saving.register_keras_serializable(package=PACKAGE, name="hard_sigmoid_keras2")
def hard_sigmoid_keras2(x: Any) -> Any:
    """Keras 1/2's hard sigmoid clip(0.2x + 0.5, 0, 1); Keras 3 no longer ships it."""
    return ops.clip(HARD_SIGMOID_KERAS2_SLOPE * x + HARD_SIGMOID_KERAS2_OFFSET, 0.0, 1.0)


#: build(gate=...) choices -> the recurrent_activation handed to keras.layers.LSTM.
GATES: dict[str, Any] = {
    "sigmoid": "sigmoid",
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
    "hard_sigmoid_keras3": "hard_sigmoid",  # Keras 3's builtin: relu6(x + 3) / 6
}


class _AttentionShapes:
    """Output shapes, mask and config of DeepMoji's attention, the same in Keras 2 and 3."""

    return_attention: bool

    def compute_output_shape(self, input_shape: Any) -> Any:
        out = (input_shape[0], input_shape[-1])
        return [out, (input_shape[0], input_shape[1])] if self.return_attention else out

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return [None, None] if self.return_attention else None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "return_attention": self.return_attention}


@keras.saving.register_keras_serializable(package=PACKAGE, name="AttentionWeightedAverage")
class AttentionWeightedAverage(_AttentionShapes, keras.layers.Layer):
    """DeepMoji's attention: softmax over time of x @ W (masked), then the weighted mean of x."""

    def __init__(self, return_attention: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.return_attention = return_attention
        self.supports_masking = True

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.W = self.add_weight(name="W", shape=(input_shape[-1], 1), initializer="glorot_uniform")

    def call(self, x: Any, mask: Any = None) -> Any:
        logits = ops.squeeze(ops.matmul(x, self.W), axis=-1)  # (B, T)
        a = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True))
        if mask is not None:
            a = a * ops.cast(mask, a.dtype)
        att = a / (ops.sum(a, axis=-1, keepdims=True) + ATTENTION_EPSILON)
        out = ops.sum(x * ops.expand_dims(att, -1), axis=1)  # (B, D)
        return [out, att] if self.return_attention else out


#: For keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS) (registration covers the
#: "parity>" names once this module is imported; the bare names serve hand-written configs).
CUSTOM_OBJECTS: dict[str, Any] = {
    "AttentionWeightedAverage": AttentionWeightedAverage,
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
    f"{PACKAGE}>AttentionWeightedAverage": AttentionWeightedAverage,
    f"{PACKAGE}>hard_sigmoid_keras2": hard_sigmoid_keras2,
}


def _head(layers: Any, x: Any, num_classes: int, final_dropout: float) -> Any:
    """[Dropout] -> classifier; DeepMoji uses one sigmoid unit for two classes (same name)."""
    if final_dropout:
        x = layers.Dropout(final_dropout, name="final_drop")(x)
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", name="softmax")(x)
    return layers.Dense(num_classes, activation="softmax", name="softmax")(x)


def _compile(model: Any, num_classes: int) -> None:
    loss = "binary_crossentropy" if num_classes == 2 else "categorical_crossentropy"
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])


def build(
    vocab_size: int = 50000,
    embedding_dim: int = 256,
    hidden_size: int = 512,
    num_classes: int = 64,
    seq_len: int | None = None,
    gate: str = "hard_sigmoid_keras2",
    embed_dropout: float = 0.0,
    final_dropout: float = 0.0,
    *,
    return_attention: bool = False,
) -> keras.Model:
    """Keras 3 DeepMoji; the defaults are the pretrained model's sizes and gates.

    ``return_attention=True`` makes the model output [probabilities, attention (B, T)], the
    two tensors a parity check compares.
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {sorted(GATES)}, got {gate!r}")
    layers = keras.layers
    ids = keras.Input(shape=(seq_len,), dtype="int32", name="ids")
    x = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(ids)
    x = layers.Activation("tanh", name="activation")(x)
    if embed_dropout:
        x = layers.SpatialDropout1D(embed_dropout, name="embed_drop")(x)

    def bilstm(name: str) -> keras.layers.Layer:
        lstm = layers.LSTM(hidden_size, return_sequences=True, recurrent_activation=GATES[gate])
        return layers.Bidirectional(lstm, merge_mode="concat", name=name)

    lstm_0 = bilstm("bi_lstm_0")(x)
    lstm_1 = bilstm("bi_lstm_1")(lstm_0)
    x = layers.Concatenate(name="concat")([lstm_1, lstm_0, x])
    x = AttentionWeightedAverage(return_attention=return_attention, name="attlayer")(x)
    x, att = x if return_attention else (x, None)
    out = _head(layers, x, num_classes, final_dropout)
    model = keras.Model(ids, [out, att] if return_attention else out, name=NAME)
    if not return_attention:  # the attention output is for inspection, not for a loss
        _compile(model, num_classes)
    return model


@functools.cache
def _keras2_attention_class() -> type:
    """tf_keras twin of AttentionWeightedAverage, defined lazily so tf_keras stays optional."""
    import tensorflow as tf
    import tf_keras

    @tf_keras.utils.register_keras_serializable(package=PACKAGE)
    class AttentionWeightedAverage(_AttentionShapes, tf_keras.layers.Layer):
        """Keras 2 attention layer; its weight is named like DeepMoji's ('<layer>_W')."""

        def __init__(self, return_attention: bool = False, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.return_attention = return_attention
            self.supports_masking = True

        def build(self, input_shape: Any) -> None:
            self.W = self.add_weight(
                name=f"{self.name}_W",
                shape=(int(input_shape[-1]), 1),
                initializer="glorot_uniform",
            )
            super().build(input_shape)

        def call(self, x: Any, mask: Any = None) -> Any:
            logits = tf.squeeze(tf.matmul(x, self.W), axis=-1)
            a = tf.exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
            if mask is not None:
                a = a * tf.cast(mask, a.dtype)
            att = a / (tf.reduce_sum(a, axis=-1, keepdims=True) + ATTENTION_EPSILON)
            out = tf.reduce_sum(x * tf.expand_dims(att, -1), axis=1)
            return [out, att] if self.return_attention else out

    return AttentionWeightedAverage


def keras2_custom_objects() -> dict[str, Any]:
    """custom_objects for tf_keras.models.load_model on files written by build_keras2."""
    cls = _keras2_attention_class()
    return {"AttentionWeightedAverage": cls, f"{PACKAGE}>AttentionWeightedAverage": cls}


def build_keras2(
    vocab_size: int = 50000,
    embedding_dim: int = 256,
    hidden_size: int = 512,
    num_classes: int = 64,
    seq_len: int | None = None,
    embed_dropout: float = 0.0,
    final_dropout: float = 0.0,
    *,
    return_attention: bool = False,
) -> Any:
    """DeepMoji in tf_keras (Keras 2) with the builtin 0.2-slope "hard_sigmoid" gates."""
    import tf_keras

    layers = tf_keras.layers
    ids = tf_keras.Input(shape=(seq_len,), dtype="int32", name="ids")
    x = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(ids)
    x = layers.Activation("tanh", name="activation")(x)
    if embed_dropout:
        x = layers.SpatialDropout1D(embed_dropout, name="embed_drop")(x)

    def bilstm(name: str) -> Any:
        lstm = layers.LSTM(hidden_size, return_sequences=True, recurrent_activation="hard_sigmoid")
        return layers.Bidirectional(lstm, merge_mode="concat", name=name)

    lstm_0 = bilstm("bi_lstm_0")(x)
    lstm_1 = bilstm("bi_lstm_1")(lstm_0)
    x = layers.Concatenate(name="concat")([lstm_1, lstm_0, x])
    x = _keras2_attention_class()(return_attention=return_attention, name="attlayer")(x)
    x, att = x if return_attention else (x, None)
    out = _head(layers, x, num_classes, final_dropout)
    model = tf_keras.Model(ids, [out, att] if return_attention else out, name=NAME)
    if not return_attention:  # the attention output is for inspection, not for a loss
        _compile(model, num_classes)
    return model
