"""Every layer the generic path converts, against live Keras: outputs AND gradients.

Each case is a small Keras model around one layer configuration, with every weight drawn at
random (so biases and moving statistics are non-trivial), saved by Keras, converted with
``parity.load_keras(path)`` (arch=None: the generic path) and compared with Keras' own forward
and its GradientTape gradients of sum(output * random weights) w.r.t. every trainable weight,
mapped back through the converted model's own mapping table. float32 and float64.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import parity
from parity.arch.generic import CONVERTERS, INPUT_KINDS, Example, GenericModel
from parity.check import compare, keras_side, tolerance_for
from parity.check.harness import torch_side
from tests.conftest import needs_keras
from tests.golden_cases import ragged_ids

pytestmark = [needs_keras, pytest.mark.keras]

VOCAB, T, B = 30, 9, 5
IDS = ragged_ids(VOCAB, [9, 1, 4, 7, 2], T, seed=21, pre=[True, False, True, False, False])
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: (H, W, C) of the "image" input kind: odd and even sides, so "same" padding is asymmetric.
IMAGE = (9, 8, 3)


def _floats(k: Any, shape: tuple[int, ...]) -> tuple[Any, np.ndarray]:
    x = np.random.default_rng(22).standard_normal((B, *shape))
    return k.Input(shape=shape), x


def _ids(k: Any) -> tuple[Any, np.ndarray]:
    return k.Input(shape=(T,), dtype="int32"), IDS


#: Texts for the "texts" input kind (text preprocessing layers): case, punctuation, non-ASCII,
#: single words in and out of the examples' vocabularies, a text longer than their lengths.
TEXTS = np.array(
    [
        ["The cat sat on the mat."],
        ["caf\u00e9 CAF\u00c9, stra\u00dfe!"],
        ["cat"],
        ["unknown words only"],
        ["the the the cat cat sat sat on on mat mat the end"],
    ]
)
#: Integers for the "integers" input kind (IntegerLookup, Hashing), negatives included.
INTEGERS = np.array([[1, 2, 3], [5, 8, -3], [0, 13, 2], [8, 8, 1], [100, -1, 5]])


def _preprocessed(k: Any, layer: Any, kind: str) -> tuple:
    """A text preprocessing layer on strings or integers, then a layer with weights on its
    ids (Embedding) or encoding (Dense), so there is a gradient to compare."""
    if kind == "texts":
        inp, x = k.Input(shape=(1,), dtype="string"), TEXTS
    else:
        inp, x = k.Input(shape=(3,), dtype="int64"), INTEGERS
    out = layer(inp)
    if "int" in str(out.dtype):
        out = out if len(out.shape) == 2 else k.layers.Flatten()(out)
        return inp, k.layers.Embedding(64, 4)(out), x
    return inp, k.layers.Dense(3)(out), x


def _embedded(k: Any, mask_zero: bool = True) -> tuple[Any, Any, np.ndarray]:
    inp, x = _ids(k)
    return inp, k.layers.Embedding(VOCAB, 4, mask_zero=mask_zero)(inp), x


def _dense(activation: str) -> Callable[[Any], tuple]:
    def build(k: Any) -> tuple:
        inp, x = _floats(k, (6,))
        return inp, k.layers.Dense(4, activation=activation)(inp), x

    return build


def _conv(padding: str, strides: int, dilation: int) -> Callable[[Any], tuple]:
    def build(k: Any) -> tuple:
        inp, x = _floats(k, (11, 3))
        out = k.layers.Conv1D(
            5, 4, strides=strides, padding=padding, dilation_rate=dilation, activation="tanh"
        )(inp)
        return inp, out, x

    return build


def _pool(cls: str, padding: str, pool: int, strides: int | None) -> Callable[[Any], tuple]:
    def build(k: Any) -> tuple:
        inp, x = _floats(k, (11, 3))
        h = k.layers.Dense(3)(inp)
        return inp, getattr(k.layers, cls)(pool, strides=strides, padding=padding)(h), x

    return build


def _flatten(k: Any) -> tuple:
    inp, x = _floats(k, (7, 3))
    h = k.layers.Conv1D(2, 3, padding="same")(inp)
    return inp, k.layers.Dense(3)(k.layers.Flatten()(h)), x


def _global(cls: str, mask_zero: bool) -> Callable[[Any], tuple]:
    def build(k: Any) -> tuple:
        inp, h, x = _embedded(k, mask_zero)
        return inp, getattr(k.layers, cls)()(k.layers.Dense(3)(h)), x

    return build


def _rnn(cls: str, **kwargs: Any) -> Callable[[Any], tuple]:
    def build(k: Any) -> tuple:
        inp, h, x = _embedded(k)
        out = getattr(k.layers, cls)(3, **kwargs)(h)
        return inp, out, x

    return build


def _bidirectional(cls: str, merge_mode: str, **kwargs: Any) -> Callable[[Any], tuple]:
    def build(k: Any) -> tuple:
        inp, h, x = _embedded(k)
        rnn = getattr(k.layers, cls)(3, **kwargs)
        return inp, k.layers.Bidirectional(rnn, merge_mode=merge_mode)(h), x

    return build


def _batch_norm(k: Any) -> tuple:
    inp, x = _floats(k, (7, 3))
    h = k.layers.Dense(4)(inp)
    return inp, k.layers.BatchNormalization(epsilon=0.01, momentum=0.9)(h), x


def _layer_norm(k: Any) -> tuple:
    inp, x = _floats(k, (7, 3))
    return inp, k.layers.LayerNormalization()(k.layers.Dense(4)(inp)), x


def _concatenate(masked_branch_only: bool) -> Callable[[Any], tuple]:
    def build(k: Any) -> tuple:
        inp, h, x = _embedded(k)
        a = k.layers.LSTM(3, return_sequences=True)(h)
        b = (
            k.layers.Dense(2)(h)
            if not masked_branch_only
            else k.layers.GRU(2, return_sequences=True)(h)
        )
        merged = k.layers.Concatenate()([a, b])
        return inp, k.layers.SimpleRNN(2)(merged), x

    return build


def _dropouts(k: Any) -> tuple:
    inp, h, x = _embedded(k)
    h = k.layers.SpatialDropout1D(0.5)(h)
    h = k.layers.Dropout(0.5)(k.layers.Activation("relu")(h))
    return inp, k.layers.GlobalAveragePooling1D()(h), x


def _broadcast_merge(cls: str) -> Callable[[Any], tuple]:
    """A (B, T, 3) sequence merged with a (B, 3) vector: Keras inserts the time axis."""

    def build(k: Any) -> tuple:
        inp, x = _floats(k, (7, 5))
        seq = k.layers.Dense(3)(inp)
        vec = k.layers.Dense(3)(k.layers.GlobalAveragePooling1D()(inp))
        return inp, getattr(k.layers, cls)()([seq, vec]), x

    return build


def _masked_merge(cls: str, **kwargs: Any) -> Callable[[Any], tuple]:
    """Two masked branches merged, then an LSTM that must see the merged mask."""

    def build(k: Any) -> tuple:
        inp, h, x = _embedded(k)
        left = k.layers.Dense(4)(h)
        right = k.layers.Embedding(VOCAB, 4, mask_zero=True)(inp)
        merged = getattr(k.layers, cls)(**kwargs)([left, right])
        return inp, k.layers.LSTM(3, return_sequences=True)(merged), x

    return build


def _dot(axes: Any, normalize: bool, vector: bool) -> Callable[[Any], tuple]:
    """Dot of a (B, T, 3) sequence with a (B, T, 4) sequence, or with a (B, 3) vector."""

    def build(k: Any) -> tuple:
        inp, x = _floats(k, (7, 5))
        a = k.layers.Dense(3)(inp)
        b = k.layers.Dense(3)(k.layers.Flatten()(inp)) if vector else k.layers.Dense(4)(inp)
        return inp, k.layers.Dot(axes=axes, normalize=normalize)([a, b]), x

    return build


def _masking_lstm(k: Any) -> tuple:
    """Masking on a float input with whole steps at mask_value, feeding an LSTM."""
    inp, x = _floats(k, (7, 3))
    x[:, 4:] = 0.0
    x[1, :2] = 0.0
    out = k.layers.LSTM(3, return_sequences=True)(k.layers.Masking(0.0)(inp))
    return inp, out, x


def _time_distributed(k: Any) -> tuple:
    """TimeDistributed(Dense) between a masked Embedding and an LSTM: the mask reaches the
    LSTM (Keras 2 allows only mask-supporting layers inside when a mask arrives)."""
    inp, h, x = _embedded(k)
    h = k.layers.TimeDistributed(k.layers.Dense(6, activation="relu"))(h)
    return inp, k.layers.LSTM(3, return_sequences=True)(h), x


def _time_distributed_shapes(k: Any) -> tuple:
    """TimeDistributed Reshape, Conv1D and Flatten: per-step tensors of other ranks."""
    inp, x = _floats(k, (5, 6))
    h = k.layers.TimeDistributed(k.layers.Reshape((3, 2)))(inp)
    h = k.layers.TimeDistributed(k.layers.Conv1D(2, 2))(h)
    return inp, k.layers.TimeDistributed(k.layers.Flatten())(h), x


def _structure(k: Any) -> tuple:
    """Permute, Reshape with -1, RepeatVector in a row."""
    inp, x = _floats(k, (7, 3))
    h = k.layers.Permute((2, 1))(k.layers.Dense(4)(inp))
    h = k.layers.Dense(2)(k.layers.Reshape((-1, 14))(h))
    return inp, k.layers.RepeatVector(3)(k.layers.Flatten()(h)), x


def _image(*layers: tuple[str, dict[str, Any]]) -> Callable[[Any], tuple]:
    """A (B, H, W, C) image through a Dense (so weightless layers get gradients), then
    ``layers`` as (Keras class, kwargs) in order."""

    def build(k: Any) -> tuple:
        inp, x = _floats(k, IMAGE)
        h = k.layers.Dense(3)(inp)
        for cls, kwargs in layers:
            h = getattr(k.layers, cls)(**kwargs)(h)
        return inp, h, x

    return build


#: 2-D cases: TF's asymmetric "same" padding (even kernels, strides), dilation, groups, depth
#: multipliers, transposed-convolution output sizes, "same" average pooling, keepdims.
VISION_CASES: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "conv2d-same-k2-s2": (
        ("Conv2D", {"filters": 4, "kernel_size": 2, "strides": 2, "padding": "same"}),
    ),
    "conv2d-same-k4x3-s2x3": (
        ("Conv2D", {"filters": 4, "kernel_size": (4, 3), "strides": (2, 3), "padding": "same"}),
    ),
    "conv2d-valid-s2-nobias": (
        ("Conv2D", {"filters": 4, "kernel_size": 3, "strides": 2, "use_bias": False}),
    ),
    "conv2d-same-d2-softmax": (
        (
            "Conv2D",
            {
                "filters": 4,
                "kernel_size": 3,
                "dilation_rate": 2,
                "padding": "same",
                "activation": "softmax",
            },
        ),
    ),
    "conv2d-groups3": (
        ("Dense", {"units": 6}),
        ("Conv2D", {"filters": 9, "kernel_size": 2, "groups": 3, "padding": "same"}),
    ),
    "depthwise-k2-s2-same-m3": (
        (
            "DepthwiseConv2D",
            {"kernel_size": 2, "strides": 2, "padding": "same", "depth_multiplier": 3},
        ),
    ),
    "depthwise-d2-m2-relu": (
        (
            "DepthwiseConv2D",
            {"kernel_size": 3, "dilation_rate": 2, "depth_multiplier": 2, "activation": "relu"},
        ),
    ),
    "separable-k2-s2-same-m2": (
        (
            "SeparableConv2D",
            {
                "filters": 5,
                "kernel_size": 2,
                "strides": 2,
                "padding": "same",
                "depth_multiplier": 2,
                "activation": "tanh",
            },
        ),
    ),
    "separable-d2-nobias": (
        (
            "SeparableConv2D",
            {"filters": 5, "kernel_size": 3, "dilation_rate": 2, "use_bias": False},
        ),
    ),
    "transpose-valid-k3-s2": (("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2}),),
    "transpose-valid-k2-s3": (("Conv2DTranspose", {"filters": 4, "kernel_size": 2, "strides": 3}),),
    "transpose-same-k4-s2": (
        ("Conv2DTranspose", {"filters": 4, "kernel_size": 4, "strides": 2, "padding": "same"}),
    ),
    "transpose-same-k3-s2-op1": (
        (
            "Conv2DTranspose",
            {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "output_padding": 1},
        ),
    ),
    "transpose-valid-k3x2-s2-op1x0": (
        (
            "Conv2DTranspose",
            {"filters": 4, "kernel_size": (3, 2), "strides": 2, "output_padding": (1, 0)},
        ),
    ),
    "transpose-same-k3-d2": (
        (
            "Conv2DTranspose",
            {"filters": 4, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
        ),
    ),
    "maxpool2d-valid-3-2": (("MaxPooling2D", {"pool_size": 3, "strides": 2}),),
    "maxpool2d-same-2-1": (("MaxPooling2D", {"pool_size": 2, "strides": 1, "padding": "same"}),),
    "avgpool2d-same-3-2": (
        ("AveragePooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}),
    ),
    "avgpool2d-same-2x3-s2x1": (
        ("AveragePooling2D", {"pool_size": (2, 3), "strides": (2, 1), "padding": "same"}),
    ),
    "avgpool2d-valid-2": (("AveragePooling2D", {"pool_size": 2}),),
    "gap2d-keepdims-conv": (
        ("GlobalAveragePooling2D", {"keepdims": True}),
        ("Conv2D", {"filters": 2, "kernel_size": 1}),
    ),
    "gmp2d": (("GlobalMaxPooling2D", {}),),
    "zeropad-crop": (("ZeroPadding2D", {"padding": 2}), ("Cropping2D", {"cropping": (1, 3)})),
    "upsampling-bilinear-2x3": (("UpSampling2D", {"size": (2, 3), "interpolation": "bilinear"}),),
    "batch_norm-image-axis1": (("BatchNormalization", {"axis": 1}),),
    "flatten-image": (
        ("Conv2D", {"filters": 2, "kernel_size": 3}),
        ("Flatten", {}),
        ("Dense", {"units": 3}),
    ),
    "cnn": (
        ("Conv2D", {"filters": 6, "kernel_size": 3, "padding": "same", "activation": "relu"}),
        ("BatchNormalization", {}),
        ("MaxPooling2D", {"padding": "same"}),
        ("SeparableConv2D", {"filters": 4, "kernel_size": 2, "padding": "same"}),
        ("UpSampling2D", {}),
        ("Conv2DTranspose", {"filters": 3, "kernel_size": 2, "strides": 2}),
        ("GlobalAveragePooling2D", {}),
        ("Dense", {"units": 2, "activation": "softmax"}),
    ),
}


def _activation_layer(cls: str, **kwargs: Any) -> Callable[[Any], tuple]:
    """An activation layer on a (B, T, 3) Dense output, then an LSTM (the mask passes)."""

    def build(k: Any) -> tuple:
        # Keras' Softmax applies a mask it is given to the logits: fed unmasked floats instead
        if cls == "Softmax":
            inp, x = _floats(k, (7, 3))
            h = inp
        else:
            inp, h, x = _embedded(k)
        h = getattr(k.layers, cls)(**kwargs)(k.layers.Dense(3)(h))
        return inp, k.layers.LSTM(2, return_sequences=True)(h), x

    return build


ACTIVATIONS = (
    "linear", "relu", "sigmoid", "hard_sigmoid", "tanh", "softmax", "softplus", "softsign", "elu",
    "selu", "exponential", "gelu", "swish", "silu", "relu6", "leaky_relu", "log_softmax", "mish",
    "hard_silu",
)  # fmt: skip

#: Every merge mode with and without return_sequences for LSTM; each once for GRU and SimpleRNN.
BIDIRECTIONAL_GRID = [
    *(("LSTM", m, rs) for m in ("concat", "sum", "mul", "ave") for rs in (True, False)),
    *(
        (cls, m, rs)
        for cls in ("GRU", "SimpleRNN")
        for m, rs in (("concat", True), ("sum", False), ("mul", True), ("ave", False))
    ),
]

#: Input kinds of the attention layers (parity.ports.registry.INPUT_KINDS).
ATTENTION_INPUTS = (
    "masked_value_pair",
    "masked_triple",
    "query_value",
    "query_value_key",
    "masked_query_value",
)


def _attention_inputs(k: Any, layer: Any, kind: str, **options: Any) -> tuple:
    """``layer`` on query/value(/key) tensors from one ids input: masked ones (the Embedding's
    mask through a Dense) and unmasked ones (an Embedding without mask_zero); ``options`` are
    call keywords (use_causal_mask, return_attention_scores)."""
    inp, h, x = _embedded(k)
    masked, masked_too = k.layers.Dense(4)(h), k.layers.Dense(4)(h)
    plain, wide = k.layers.Embedding(VOCAB, 4)(inp), k.layers.Embedding(VOCAB, 5)(inp)
    calls: dict[str, Callable[[], Any]] = {
        "masked_pair": lambda: layer([masked, plain], **options),
        "masked_value_pair": lambda: layer([plain, masked], **options),
        "masked_triple": lambda: layer([masked, masked_too, plain], **options),
        "query_value": lambda: layer(masked, wide, **options),
        "query_value_key": lambda: layer(query=plain, value=masked, key=wide, **options),
        "masked_query_value": lambda: layer(masked, masked_too, **options),
        "plain_query_value": lambda: layer(plain, wide, **options),
    }
    return inp, calls[kind](), x


def _attention(
    cls: str, kind: str, options: dict[str, Any], then: str | None = None, **config: Any
) -> Callable[[Any], tuple]:
    """An attention layer with call ``options``, optionally followed by a layer ``then`` that
    reads the output's mask (so the mask rule is checked, not only the values)."""

    def build(k: Any) -> tuple:
        inp, out, x = _attention_inputs(k, getattr(k.layers, cls)(**config), kind, **options)
        if then is not None:
            out = getattr(k.layers, then)()(out)
        return inp, out, x

    return build


CAUSAL, SCORES = {"use_causal_mask": True}, {"return_attention_scores": True}
#: Attention layers with call options and downstream mask readers (Keras 3 and tf.keras).
ATTENTION_CASES: dict[str, Callable[[Any], tuple]] = {
    "attention-causal-masked": _attention("Attention", "masked_triple", CAUSAL, use_scale=True),
    "attention-concat-causal": _attention("Attention", "masked_pair", CAUSAL, score_mode="concat"),
    "attention-scores": _attention("Attention", "masked_value_pair", SCORES, use_scale=True),
    "attention-then-pooling": _attention("Attention", "masked_pair", {}, "GlobalAveragePooling1D"),
    "additive-causal": _attention("AdditiveAttention", "masked_value_pair", CAUSAL),
    "additive-then-pooling": _attention(
        "AdditiveAttention", "masked_pair", {}, "GlobalAveragePooling1D"
    ),
    "mha-causal-masked": _attention(
        "MultiHeadAttention", "masked_query_value", CAUSAL, num_heads=2, key_dim=3
    ),
    "mha-causal-only": _attention(
        "MultiHeadAttention", "plain_query_value", CAUSAL, num_heads=2, key_dim=3
    ),
    "mha-scores": _attention(
        "MultiHeadAttention", "query_value_key", SCORES, num_heads=2, key_dim=3
    ),
    "mha-then-pooling": _attention(
        "MultiHeadAttention", "query_value", {}, "GlobalAveragePooling1D", num_heads=2, key_dim=3
    ),
    "mha-keys-dropout-causal": _attention(
        "MultiHeadAttention", "query_value_key", CAUSAL, num_heads=3, key_dim=2, dropout=0.1
    ),
}


#: Image preprocessing in a row, and the augmentation layers both Keras versions have (each the
#: identity at inference).
IMAGE_PREPROCESSING_CASES: dict[str, Callable[[Any], tuple]] = {
    "resizing-crop-then-center-crop": _image(
        ("Resizing", {"height": 12, "width": 7, "crop_to_aspect_ratio": True}),
        ("CenterCrop", {"height": 5, "width": 4}),
    ),
    "resizing-nearest-then-bilinear": _image(
        ("Resizing", {"height": 13, "width": 11, "interpolation": "nearest"}),
        ("Resizing", {"height": 6, "width": 5}),
    ),
    "center-crop-upsize": _image(("CenterCrop", {"height": 12, "width": 6})),
    "augmentations-inference": _image(
        ("RandomFlip", {}),
        ("RandomRotation", {"factor": 0.2}),
        ("RandomZoom", {"height_factor": 0.2}),
        ("RandomTranslation", {"height_factor": 0.1, "width_factor": 0.1}),
        ("RandomContrast", {"factor": 0.3}),
        ("RandomBrightness", {"factor": 0.2}),
        ("Conv2D", {"filters": 2, "kernel_size": 3}),
    ),
}

#: Keras 3 cases: id -> builder(k) returning (input, output(s), numpy input).
CASES: dict[str, Callable[[Any], tuple]] = {
    **{f"dense-{a}": _dense(a) for a in ACTIVATIONS},
    **{
        f"conv1d-{p}-s{s}-d{d}": _conv(p, s, d)
        for p, s, d in (
            ("valid", 1, 1),
            ("valid", 2, 1),
            ("same", 1, 1),
            ("same", 2, 1),
            ("same", 1, 3),
            ("causal", 1, 1),
            ("causal", 1, 2),
            ("causal", 3, 1),
        )
    },
    **{
        f"{cls}-{p}-{pool}-{s}": _pool(cls, p, pool, s)
        for cls in ("MaxPooling1D", "AveragePooling1D")
        for p, pool, s in (("valid", 2, None), ("valid", 3, 2), ("same", 3, 2), ("same", 2, 1))
    },
    "flatten": _flatten,
    **{
        f"{cls}-mask{m}": _global(cls, m)
        for cls in ("GlobalAveragePooling1D", "GlobalMaxPooling1D")
        for m in (True, False)
    },
    **{
        f"{cls}-{'-'.join(k for k, v in kw.items() if v) or 'last'}": _rnn(cls, **kw)
        for cls in ("SimpleRNN", "LSTM", "GRU")
        for kw in (
            {},
            {"return_sequences": True},
            {"go_backwards": True},
            {"return_sequences": True, "go_backwards": True},
            {"return_state": True},
            {"return_sequences": True, "return_state": True},
        )
    },
    "GRU-reset_before": _rnn("GRU", reset_after=False, return_sequences=True),
    "GRU-reset_before-no-bias": _rnn("GRU", reset_after=False, use_bias=False),
    "LSTM-hard_sigmoid-keras3": _rnn("LSTM", recurrent_activation="hard_sigmoid"),
    "SimpleRNN-relu": _rnn("SimpleRNN", activation="relu", return_sequences=True),
    **{
        f"bidirectional-{cls}-{m}-{'seq' if rs else 'last'}": _bidirectional(
            cls, m, return_sequences=rs
        )
        for cls, m, rs in BIDIRECTIONAL_GRID
    },
    "bidirectional-LSTM-state": _bidirectional("LSTM", "concat", return_state=True),
    "bidirectional-GRU-reset_before": _bidirectional(
        "GRU", "concat", reset_after=False, return_sequences=True
    ),
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "concatenate-mixed-masks": _concatenate(False),
    "concatenate-masked": _concatenate(True),
    "dropouts-activation": _dropouts,
    **{f"vision-{name}": _image(*layers) for name, layers in VISION_CASES.items()},
    **{f"broadcast-{cls}": _broadcast_merge(cls) for cls in ("Add", "Multiply", "Maximum")},
    **{
        f"masked-{cls}-lstm": _masked_merge(cls)
        for cls in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
    },
    "masked-concatenate-axis1-lstm": _masked_merge("Concatenate", axis=1),
    "dot-normalize-axes-1-1": _dot([1, 1], True, False),
    "dot-axes-2-1-vector": _dot([2, 1], False, True),
    "dot-normalize-axes-2-neg1-vector": _dot([2, -1], True, True),
    "masking-lstm": _masking_lstm,
    "permute-reshape-repeat": _structure,
    "time_distributed-masked": _time_distributed,
    "time_distributed-shapes": _time_distributed_shapes,
    "relu-max-threshold-slope": _activation_layer(
        "ReLU", max_value=0.5, threshold=0.2, negative_slope=0.2
    ),
    "relu-threshold-slope": _activation_layer("ReLU", threshold=0.3, negative_slope=0.1),
    "relu6-slope": _activation_layer("ReLU", max_value=6.0, negative_slope=0.1),
    "prelu-shared_axes": _activation_layer("PReLU", shared_axes=[1]),
    "prelu": _activation_layer("PReLU"),
    "leaky_relu-default": _activation_layer("LeakyReLU"),
    "softmax-axes": _activation_layer("Softmax", axis=[1, 2]),
    **ATTENTION_CASES,
    **IMAGE_PREPROCESSING_CASES,
}
#: Cases also run in float64 (every layer family once).
#: Not here: bilinear Resizing, which TensorFlow computes in float32 for a float64 model too (its
#: outputs match bit for bit; its gradients to float32 rounding, measured 2.6e-7 relative).
#: Not here: dense-hard_sigmoid and dense-gelu, where Keras 3 itself is off the exact float64
#: function by ~1e-8 (measured 4.5e-9 and 1.7e-8: float32 constants inside Keras' ops).
FLOAT64 = (
    "dense-tanh", "dense-softmax", "conv1d-same-s2-d1", "conv1d-causal-s1-d2",
    "AveragePooling1D-same-3-2", "flatten", "GlobalAveragePooling1D-maskTrue",
    "SimpleRNN-return_sequences-go_backwards", "LSTM-return_state", "GRU-reset_before",
    "GRU-last", "bidirectional-GRU-ave-last", "bidirectional-LSTM-mul-last", "batch_norm",
    "layer_norm", "concatenate-mixed-masks", "vision-conv2d-same-k2-s2",
    "vision-depthwise-k2-s2-same-m3", "vision-transpose-same-k3-s2-op1",
    "vision-avgpool2d-same-3-2", "vision-cnn", "broadcast-Multiply", "masked-Maximum-lstm",
    "masked-concatenate-axis1-lstm", "dot-normalize-axes-1-1", "masking-lstm",
    "relu-max-threshold-slope", "prelu-shared_axes", "attention-causal-masked",
    "additive-then-pooling", "mha-causal-masked", "mha-scores", "mha-keys-dropout-causal",
    "time_distributed-masked", "time_distributed-shapes",
)  # fmt: skip


def _randomise(model: Any, seed: int = 23) -> None:
    """Every weight random (moving variances positive), so no transform hides behind zeros."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            value = rng.standard_normal(tuple(weight.shape)) * 0.6
            if "variance" in (weight.path if hasattr(weight, "path") else weight.name):
                value = np.abs(value) + 0.3
            values.append(value)
        if values:
            layer.set_weights(values)
            if hasattr(layer, "finalize_state"):  # Normalization derives mean/variance from them
                layer.finalize_state()


def keras_reference(model: Any, x: np.ndarray, converted: GenericModel) -> dict[str, np.ndarray]:
    """Keras' outputs and gradients of sum(output[0] * w) under the converted model's names."""
    import tensorflow as tf

    rng = np.random.default_rng(24)
    with tf.GradientTape() as tape:
        out = model(x, training=False)
        outs = list(out) if isinstance(out, list | tuple) else [out]
        weights = rng.standard_normal(tuple(outs[0].shape)).astype(outs[0].dtype.name)
        loss = tf.reduce_sum(outs[0] * weights)
    names, variables = [], []
    for spec in converted.config.layers:
        canonical = CONVERTERS[spec["config"]["_class"]].weights(spec["config"])
        if not canonical:
            continue
        layer = model
        for part in spec["name"].split("/"):  # a layer of a nested model: "block/dense"
            layer = layer.get_layer(part)
        for name, variable in zip(canonical, layer.weights, strict=True):
            if variable.trainable:
                names.append(f"grad/{spec['name']}/{name}")
                value = getattr(variable, "value", variable)  # Keras 3: the backend variable
                variables.append(variable if callable(value) else value)
    grads = tape.gradient(loss, variables)
    result = {f"output/{i}": np.asarray(o) for i, o in enumerate(outs)}
    result |= {n: np.asarray(tf.convert_to_tensor(g)) for n, g in zip(names, grads, strict=True)}
    result["loss_weights"] = weights
    return result


def check_against_keras(model: Any, x: np.ndarray, path: Path, dtype: torch.dtype) -> None:
    """Save ``model``, convert it with arch=None, compare outputs and gradients with Keras."""
    model.save(path)
    converted = parity.load_keras(path, dtype=dtype)
    assert isinstance(converted, GenericModel)
    keras_side = keras_reference(model, x, converted)
    params = dict(converted.named_parameters())
    rows = [row for row in converted.mapping if row[1] in params]
    outputs = [k.removeprefix("output/") for k in keras_side if k.startswith("output/")]
    if x.dtype.kind == "U":  # texts: a model that takes strings reads them as they are
        x_t = x
    else:
        x_t = torch.from_numpy(x) if x.dtype.kind == "i" else torch.from_numpy(x).to(dtype)
    ours = torch_side(
        converted,
        rows,
        x_t,
        torch.from_numpy(keras_side["loss_weights"]).to(dtype),
        outputs=outputs,
    )
    grads = {k for k in keras_side if k.startswith("grad/")}
    assert grads == {k for k in ours if k.startswith("grad/")}
    failed = []
    for key in sorted(set(keras_side) - {"loss_weights"}):
        kind = "output" if key.startswith("output/") else "gradient"
        row = compare(key, kind, ours[key], keras_side[key], tolerance_for(dtype, "cpu", kind))
        if not row.passed:
            failed.append(str(row))
    assert not failed, "\n".join(failed)


#: TensorFlow's message where its CPU build has no kernel for a case (dilated Conv2DTranspose
#: runs only through oneDNN, which TensorFlow enables on some CPUs and not others).
TF_MISSING_KERNEL = "Current CPU implementations do not yet support dilation rates larger than 1"


def _run(build: Callable[[Any], tuple], floatx: str, tmp_path: Path) -> None:
    import keras

    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(floatx)
    try:
        keras.utils.set_random_seed(25)
        inp, out, x = build(keras)
        model = keras.Model(inp, out)
        _randomise(model)
        x = x.astype(floatx) if x.dtype.kind == "f" else x
        try:
            check_against_keras(model, x, tmp_path / "m.keras", DTYPES[floatx])
        except Exception as exc:  # TensorFlow's own CPU kernels lack some ops without oneDNN
            if TF_MISSING_KERNEL in str(exc):
                pytest.skip(f"Keras cannot compute this case on this CPU: {TF_MISSING_KERNEL}")
            raise
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")


def _with_module(value: Any) -> Any:
    """A layer config as Keras 3 serialises it: every nested layer names its module."""
    if isinstance(value, dict):
        value = {key: _with_module(item) for key, item in value.items()}
        if "class_name" in value:
            value.setdefault("module", "keras.layers")
    return value


def _example_case(cls: str, example: Example) -> Callable[[Any], tuple]:
    """A converter's own example as a case: its layer applied to the input it names."""

    def build(k: Any) -> tuple:
        # a class that is not Keras' own (DeepMoji's attention) loads with its port's objects
        objects = keras_side.objects_for({cls}, keras2=k.__name__ == "tf_keras")
        # a Lambda example's function is the port's own, marshalled by this Python: trusted
        serialization = importlib.import_module(f"{k.__name__}.src.saving.serialization_lib")
        unsafe = serialization.SafeModeScope(False) if cls == "Lambda" else nullcontext()
        with k.saving.custom_object_scope(objects), unsafe:
            layer = k.layers.deserialize(
                _with_module({"class_name": cls, "config": example.config})
            )
        if example.input == "embedded":
            inp, h, x = _embedded(k)
            return inp, layer(h), x
        if example.input == "two_sequences":  # one (B, T, 5) input split into 3 + 2 channels
            inp, x = _floats(k, (7, 5))
            left, right = k.layers.Dense(3)(inp), k.layers.Dense(2)(inp)
            return inp, layer([left, right]), x
        pairs: dict[str, Callable[[], tuple]] = {
            "paired_sequences": lambda: (*_floats(k, (7, 5)), 3),
            "two_vectors": lambda: (*_floats(k, (6,)), 4),
        }
        if example.input in pairs:
            inp, x, width = pairs[example.input]()
            left, right = k.layers.Dense(width)(inp), k.layers.Dense(width)(inp)
            return inp, layer([left, right]), x
        if example.input == "masked_pair":  # one input masked, the other not
            inp, h, x = _embedded(k)
            plain = k.layers.Embedding(VOCAB, 4)(inp)
            return inp, layer([k.layers.Dense(4)(h), plain]), x
        if example.input in ATTENTION_INPUTS:
            return _attention_inputs(k, layer, example.input)
        if example.input in ("texts", "integers"):
            return _preprocessed(k, layer, example.input)
        inputs: dict[str, Callable[[], tuple]] = {
            "ids": lambda: _ids(k),
            "sequence": lambda: _floats(k, (11, 3)),
            "vector": lambda: _floats(k, (6,)),
            "image": lambda: _floats(k, IMAGE),
        }
        inp, x = inputs[example.input]()
        if example.input == "ids":
            return inp, layer(inp), x
        # a Dense in front, so a layer without weights still has gradients to compare
        return inp, layer(k.layers.Dense(inp.shape[-1])(inp)), x

    return build


#: Every converter's examples (parity.arch.generic), so a new converter entry is tested by the
#: examples it carries, with no test code of its own.
EXAMPLE_CASES: dict[str, Callable[[Any], tuple]] = {
    f"{cls}-example{i}": _example_case(cls, example)
    for cls, converter in CONVERTERS.items()
    for i, example in enumerate(converter.examples)
}


def test_every_converter_has_an_example() -> None:
    """Each layer class the generic path converts carries at least one example of itself."""
    missing = [
        cls
        for cls, converter in CONVERTERS.items()
        if cls != "InputLayer" and not cls.startswith("ops.") and not converter.examples
    ]
    assert not missing, f"converters without examples: {missing}"
    kinds = {ex.input for c in CONVERTERS.values() for ex in c.examples}
    assert kinds <= set(INPUT_KINDS), kinds


@pytest.mark.parametrize("case", sorted(EXAMPLE_CASES))
def test_converter_example_matches_keras(case: str, tmp_path: Path) -> None:
    _run(EXAMPLE_CASES[case], "float32", tmp_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_matches_keras_float32(case: str, tmp_path: Path) -> None:
    _run(CASES[case], "float32", tmp_path)


@pytest.mark.parametrize("case", FLOAT64)
def test_layer_matches_keras_float64(case: str, tmp_path: Path) -> None:
    _run(CASES[case], "float64", tmp_path)


#: tf_keras (Keras 2) cases: their "hard_sigmoid" is the 0.2-slope one, GRU defaults differ.
KERAS2_CASES: dict[str, Callable[[Any], tuple]] = {
    "dense-hard_sigmoid": _dense("hard_sigmoid"),
    "lstm-hard_sigmoid-gates": _rnn("LSTM", recurrent_activation="hard_sigmoid"),
    "gru-reset_before-hard_sigmoid": _rnn(
        "GRU", reset_after=False, recurrent_activation="hard_sigmoid", return_sequences=True
    ),
    "bidirectional-gru-ave": _bidirectional("GRU", "ave", return_sequences=True),
    "batch_norm": _batch_norm,
    "conv1d-causal": _conv("causal", 1, 2),
    **{
        f"vision-{name}": _image(*VISION_CASES[name])
        for name in ("cnn", "depthwise-k2-s2-same-m3", "transpose-same-k3-s2-op1")
    },
    "masked-multiply-lstm": _masked_merge("Multiply"),
    "masked-maximum-lstm": _masked_merge("Maximum"),
    "masked-concatenate-axis1-lstm": _masked_merge("Concatenate", axis=1),
    "dot-normalize-axes-1-1": _dot([1, 1], True, False),
    "masking-lstm": _masking_lstm,
    "permute-reshape-repeat": _structure,
    "time_distributed-masked": _time_distributed,
    "time_distributed-shapes": _time_distributed_shapes,
    "relu-max-threshold-slope": _activation_layer(
        "ReLU", max_value=0.5, threshold=0.2, negative_slope=0.2
    ),
    "leaky_relu-alpha": _activation_layer("LeakyReLU", alpha=0.1),
    "prelu-shared_axes": _activation_layer("PReLU", shared_axes=[1]),
    **IMAGE_PREPROCESSING_CASES,
    # tf.keras' RandomCrop smart-resizes at inference (Keras 3's returns its input)
    "random-crop-inference": _image(("RandomCrop", {"height": 5, "width": 6})),
}


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("case", sorted(KERAS2_CASES))
def test_keras2_layer_matches_tf_keras(case: str, suffix: str, tmp_path: Path) -> None:
    import tf_keras

    tf_keras.utils.set_random_seed(26)
    inp, out, x = KERAS2_CASES[case](tf_keras)
    model = tf_keras.Model(inp, out)
    _randomise(model)
    x = x.astype("float32") if x.dtype.kind == "f" else x
    check_against_keras(model, x, tmp_path / f"m{suffix}", torch.float32)


#: tf.keras attention cases, run in float64: the attention layers' float32 gradients are too
#: ill-conditioned under this suite's random weights to tell rounding from error (measured up
#: to 9e-3 on gradients of ~500 in float32, 2e-12 in float64). tf.keras adds -1e9 to masked
#: MultiHeadAttention scores (a fully masked row keeps its softmax in float64) unless asked for
#: its robust masking, which replaces them.
KERAS2_ATTENTION_CASES: dict[str, Callable[[Any], tuple]] = {
    **ATTENTION_CASES,
    "mha-robust-masked": _attention(
        "MultiHeadAttention",
        "masked_query_value",
        {},
        num_heads=2,
        key_dim=3,
        softmax_robust_masking=True,
    ),
}


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("case", sorted(KERAS2_ATTENTION_CASES))
def test_keras2_attention_matches_tf_keras_float64(case: str, suffix: str, tmp_path: Path) -> None:
    import tf_keras

    tf_keras.backend.set_floatx("float64")
    try:
        tf_keras.utils.set_random_seed(26)
        inp, out, x = KERAS2_ATTENTION_CASES[case](tf_keras)
        model = tf_keras.Model(inp, out)
        _randomise(model)
        check_against_keras(model, x, tmp_path / f"m{suffix}", torch.float64)
    finally:
        tf_keras.backend.set_floatx("float32")


def test_bn_trains_like_keras() -> None:
    """One training step of BatchNormalization: batch moments, Keras' momentum and the biased
    variance in the moving statistics, as keras.layers.BatchNormalization computes them."""
    import keras

    from parity.ports import BatchNormalization

    x = np.random.default_rng(27).standard_normal((6, 4, 3)).astype("float32")
    layer = keras.layers.BatchNormalization(momentum=0.8, epsilon=0.01)
    expected = np.asarray(layer(x, training=True))
    ours = BatchNormalization(3, eps=0.01, momentum=0.8).train()
    got = ours(torch.from_numpy(x))
    tol = tolerance_for(torch.float32, "cpu", "output")
    for name, a, b in (
        ("output", got.detach().numpy(), expected),
        ("moving_mean", ours.running_mean.numpy(), np.asarray(layer.moving_mean)),
        ("moving_variance", ours.running_var.numpy(), np.asarray(layer.moving_variance)),
    ):
        row = compare(name, "output", a, b, tol)
        assert row.passed, str(row)


@pytest.mark.parametrize(("shape", "axis"), [((6, 5, 4, 3), -1), ((6, 5, 4, 3), 1), ((6, 3, 4), 1)])
def test_bn_trains_like_keras_on_any_axis(shape: tuple[int, ...], axis: int) -> None:
    """A training step of BatchNormalization over a channels-last image axis or a channels-first
    axis: moments over every other axis, as keras.layers.BatchNormalization(axis=...)."""
    import keras

    from parity.ports import BatchNormalization

    x = np.random.default_rng(28).standard_normal(shape).astype("float32")
    layer = keras.layers.BatchNormalization(axis=axis, momentum=0.8, epsilon=0.01)
    expected = np.asarray(layer(x, training=True))
    ours = BatchNormalization(shape[axis], eps=0.01, momentum=0.8, axis=axis).train()
    got = ours(torch.from_numpy(x))
    tol = tolerance_for(torch.float32, "cpu", "output")
    for name, a, b in (
        ("output", got.detach().numpy(), expected),
        ("moving_mean", ours.running_mean.numpy(), np.asarray(layer.moving_mean)),
        ("moving_variance", ours.running_var.numpy(), np.asarray(layer.moving_variance)),
    ):
        row = compare(name, "output", a, b, tol)
        assert row.passed, str(row)


def test_keras1_convolution2d_converts_and_th_layout_is_refused() -> None:
    """Keras 1's Convolution2D (nb_filter, nb_row, nb_col, border_mode, subsample) becomes Conv2D
    with its strides and padding; dim_ordering 'th' and channels_first are refused by name."""
    from parity.keras.graph import normalise_layer

    keras1 = {
        **{"nb_filter": 4, "nb_row": 2, "nb_col": 3, "border_mode": "same", "subsample": [2, 1]},
        **{"dim_ordering": "tf", "bias": True, "activation": "relu"},
    }
    cls, config = normalise_layer("Convolution2D", keras1)
    shapes = {"kernel": (2, 3, 5, 4), "bias": (4,)}
    module = CONVERTERS[cls].build(config, shapes, {"activation": "relu"})
    assert (module.stride, module.keras_padding, module.kernel_size) == ((2, 1), "same", (2, 3))
    refused = (
        ({"dim_ordering": "th"}, "dim_ordering='th'"),
        ({"data_format": "channels_first"}, "channels_first"),
    )
    for bad, match in refused:
        with pytest.raises(parity.ConversionError, match=match):
            CONVERTERS[cls].build({**config, **bad}, shapes, {"activation": "relu"})
    with pytest.raises(parity.ConversionError, match="nb_row"):
        CONVERTERS[cls].build({**config, "nb_row": 3}, shapes, {"activation": "relu"})


def _seq2seq(cls: str, bidirectional: bool) -> Callable[[Any], tuple]:
    """An encoder's final states start a decoder (the seq2seq pattern): both read masked
    embeddings of the same ids; Bidirectional decoders take forward then backward states."""

    def build(k: Any) -> tuple:
        inp, x = _ids(k)
        enc_in = k.layers.Embedding(VOCAB, 4, mask_zero=True, name="enc_emb")(inp)
        dec_in = k.layers.Embedding(VOCAB, 4, mask_zero=True, name="dec_emb")(inp)
        rnn = getattr(k.layers, cls)
        encoder = rnn(3, return_state=True, name="encoder")
        if bidirectional:
            encoder = k.layers.Bidirectional(encoder, name="encoder")
        _, *states = encoder(enc_in)
        decoder = rnn(3, return_sequences=True, name="decoder")
        if bidirectional:
            decoder = k.layers.Bidirectional(decoder, name="decoder")
        return inp, decoder(dec_in, initial_state=states), x

    return build


SEQ2SEQ = {
    f"{cls}{'-bidirectional' if bi else ''}": _seq2seq(cls, bi)
    for cls, bi in (("LSTM", False), ("GRU", False), ("SimpleRNN", False), ("LSTM", True))
}


@pytest.mark.parametrize("writer", ["keras", "tf_keras"])
@pytest.mark.parametrize("case", sorted(SEQ2SEQ))
def test_initial_state_starts_the_recurrence_as_in_keras(
    case: str, writer: str, tmp_path: Path
) -> None:
    """initial_state is consumed with Keras' meaning, never dropped: a decoder started from an
    encoder's states matches Keras (outputs and gradients), Keras 3 (.keras, the keyword) and
    tf_keras (.h5, extra inbound tensors)."""
    import importlib

    k = importlib.import_module(writer)
    k.utils.set_random_seed(62)
    inp, out, x = SEQ2SEQ[case](k)
    model = k.Model(inp, out)
    _randomise(model)
    check_against_keras(
        model, x, tmp_path / ("m.keras" if writer == "keras" else "m.h5"), torch.float32
    )


def test_wrong_number_of_initial_states_is_refused() -> None:
    """An LSTM given one state tensor (it takes h and c) fails, never runs without it."""
    from parity.ports.recurrent.port import _initial_states

    with pytest.raises(ValueError, match="takes 2"):
        _initial_states({"_rnn_class": "LSTM"}, [torch.zeros(2, 3)], 1)


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        ("GaussianNoise", {"stddev": 0.5}),
        ("GaussianDropout", {"rate": 0.3}),
        ("AlphaDropout", {"rate": 0.2}),
    ],
)
def test_noise_layers_train_like_keras(cls: str, config: dict[str, Any]) -> None:
    """In training mode the converted noise layers draw what Keras' draw: the same mean and
    spread over 100k samples (the draws themselves are each framework's own)."""
    import keras

    x = np.full((200, 500), 0.7, dtype="float32")
    layer = keras.layers.deserialize(_with_module({"class_name": cls, "config": config}))
    theirs = np.asarray(layer(x, training=True))
    module = CONVERTERS[cls].build(config, {}, {})
    ours = module.train()(torch.from_numpy(x)).numpy()
    assert abs(ours.mean() - theirs.mean()) < 0.01
    assert abs(ours.std() / theirs.std() - 1) < 0.02
    assert np.array_equal(module.eval()(torch.from_numpy(x)).numpy(), x)  # identity at inference


def test_a_layer_called_with_constant_arguments_is_refused(tmp_path: Path) -> None:
    """Keras 3 records positional non-tensor arguments of a call; only op nodes use them, so a
    layer given one is refused rather than run without it."""
    import json
    import zipfile

    import keras

    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Dense(2, name="head")(inp)).save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    head = next(e for e in config["config"]["layers"] if e["name"] == "head")
    head["inbound_nodes"][0]["args"].append(0.5)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(parity.ConversionError, match=r"'head'.*non-tensor arguments"):
        parity.load_keras(tmp_path / "bad.keras")


#: Keras 2 merge layer -> (Keras 1 Merge mode, the Keras 1 keys its config keeps).
_KERAS1_MERGES = {
    "Add": ("sum", {}),
    "Multiply": ("mul", {}),
    "Average": ("ave", {}),
    "Maximum": ("max", {}),
    "Concatenate": ("concat", {"axis": "concat_axis"}),
    "Dot": ("dot", {"axes": "dot_axes"}),
}


@needs_keras
@pytest.mark.keras
def test_keras1_merge_modes_convert_as_their_keras2_layers(tmp_path: Path) -> None:
    """Keras 1's Merge(mode=...) computes what the Keras 2 layer of that mode computes: a
    tf_keras model's merges rewritten as Keras 1 Merge entries (and the file marked Keras
    1.2.2) convert and give the tf_keras model's output; mode "cos" is refused by name."""
    import json

    import h5py
    import tf_keras as k

    k.utils.set_random_seed(60)
    inp = k.Input((4,))
    a, b = k.layers.Dense(3, name="a")(inp), k.layers.Dense(3, name="b")(inp)
    merged = [getattr(k.layers, cls)()([a, b]) for cls in ("Add", "Multiply", "Average", "Maximum")]
    merged.append(k.layers.Dot(axes=1)([a, b]))
    out = k.layers.Dense(2, name="out")(k.layers.Concatenate(axis=-1)(merged))
    model = k.Model(inp, out)
    path = tmp_path / "keras1.h5"
    model.save(str(path))
    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] in _KERAS1_MERGES:
                mode, keys = _KERAS1_MERGES[layer["class_name"]]
                old = layer["config"]
                layer["class_name"] = "Merge"
                layer["config"] = {"name": old["name"], "mode": mode, "mode_type": "raw"}
                layer["config"] |= {keras1: old[key] for key, keras1 in keys.items()}
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "1.2.2"
        h5["model_weights"].attrs["keras_version"] = "1.2.2"
    x = np.random.default_rng(61).standard_normal((3, 4)).astype("float32")
    got = parity.load_keras(path)(torch.from_numpy(x)).detach().numpy()
    row = compare(
        "output", "output", got, np.asarray(model(x)), tolerance_for(torch.float32, "cpu", "output")
    )
    assert row.passed, str(row)
    with h5py.File(path, "r+") as h5:
        text = h5.attrs["model_config"]
        h5.attrs["model_config"] = text.replace('"mode": "mul"', '"mode": "cos"')
    with pytest.raises(parity.ConversionError, match=r"\(Merge\)"):
        parity.load_keras(path)


def _family(name: str, **tables: object) -> SimpleNamespace:
    """A stand-in for a family file: its module name and tables."""
    return SimpleNamespace(__name__=f"tests.{name}", **tables)


def test_the_registry_refuses_a_class_two_families_convert() -> None:
    """One table: a family that converts a class another family already converts is refused
    by name (a merged dict would let the later one shadow the earlier silently)."""
    from parity.ports import FAMILIES
    from parity.ports.registry import ConverterRegistry

    registry = ConverterRegistry()
    core, conv = FAMILIES[0], FAMILIES[1]
    registry.add_family(core)
    dense = next(iter(core.CONVERTERS))
    with pytest.raises(ValueError, match=f"{dense} \\(already from core\\)"):
        registry.add_family(
            _family("mine", CONVERTERS={**conv.CONVERTERS, dense: core.CONVERTERS[dense]})
        )
    assert dense in registry and set(conv.CONVERTERS).isdisjoint(registry)  # nothing half-added
    assert sum(len(f.CONVERTERS) for f in FAMILIES) == len(
        {n for f in FAMILIES for n in f.CONVERTERS}
    )


def test_the_registry_refuses_a_second_init_rule_diagnosis_or_layout_of_the_same_name() -> None:
    """A port's init rules, diagnoses and weight layouts are one table each: a second family
    giving the same module type, diagnosis name or transform name is refused, and nothing of it
    is added."""
    from parity.convert import transforms
    from parity.ports import FAMILIES, recurrent
    from parity.ports.registry import ConverterRegistry

    registry = ConverterRegistry()
    registry.add_family(FAMILIES[0])  # core: Dense's nn.Linear rule, the Flatten diagnosis
    clashes = {
        "init": {"INIT_RULES": {torch.nn.Linear: lambda m: None}},
        "diagnosis": {"DIAGNOSES": dict(FAMILIES[0].DIAGNOSES)},
        "transform": {"TRANSFORMS": {"transpose": transforms.TRANSFORMS["transpose"]}},
        "normalisation": {"NORMALISATIONS": dict(recurrent.NORMALISATIONS)},
    }
    for what, tables in clashes.items():
        before = (dict(registry), dict(transforms.TRANSFORMS), dict(transforms.NORMALISATIONS))
        with pytest.raises(ValueError, match=r"twice|other families give"):
            registry.add_family(_family(what, CONVERTERS={"Mine": registry["Dense"]}, **tables))
        after = (dict(registry), dict(transforms.TRANSFORMS), dict(transforms.NORMALISATIONS))
        assert after == before, what


def test_the_former_import_paths_still_give_the_ports() -> None:
    """parity.layers and parity.arch.generic keep the names they had, as the ports' objects."""
    import parity.arch.generic as generic
    import parity.layers as layers
    import parity.ports as ports

    assert generic.CONVERTERS is ports.CONVERTERS
    for name in ("LSTM", "GRU", "SimpleRNN", "Dense", "BatchNormalization", "ACTIVATIONS"):
        assert getattr(layers, name) is getattr(ports, name), name
    assert layers.recurrent.operators is ports.recurrent.operators
    from parity.layers.backends import select
    from parity.layers.keras_attention import MultiHeadAttention

    assert select is ports.recurrent.backends.select
    assert MultiHeadAttention is ports.attention.MultiHeadAttention


@pytest.mark.parametrize("writer", ["keras", "tf_keras"])
def test_unit_normalization_keeps_its_keras_floor_on_tiny_vectors(writer: str, tmp_path) -> None:
    """Keras 3 floors the inverse norm (1e12), tf.keras the squared norm (1e-12): on a vector of
    norm 1e-8 they give 1 and 0.01. The converted file computes its own Keras' answer."""
    import importlib

    k = importlib.import_module(writer)
    model = k.Sequential([k.Input(shape=(2,)), k.layers.UnitNormalization()])
    path = tmp_path / ("m.keras" if writer == "keras" else "m.h5")
    model.save(path)
    x = np.array([[1e-8, 0.0], [3.0, 4.0], [0.0, 0.0]], np.float32)
    expected = np.asarray(model(x))
    floor_answer = {"keras": 1.0, "tf_keras": 0.01}[writer]  # the two Kerases do differ here
    np.testing.assert_allclose(expected[0], [floor_answer, 0.0], rtol=1e-5)
    converted = parity.load_keras(path)
    with torch.no_grad():
        ours = converted(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)
