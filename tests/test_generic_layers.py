"""Every layer the generic path converts, against live Keras: outputs AND gradients.

Each case is a small Keras model around one layer configuration, with every weight drawn at
random (so biases and moving statistics are non-trivial), saved by Keras, converted with
``parity.load_keras(path)`` (arch=None: the generic path) and compared with Keras' own forward
and its GradientTape gradients of sum(output * random weights) w.r.t. every trainable weight,
mapped back through the converted model's own mapping table. float32 and float64.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import parity
from parity.arch.generic import CONVERTERS, INPUT_KINDS, Example, GenericModel
from parity.check import compare, tolerance_for
from parity.check.harness import torch_side
from tests.conftest import needs_keras
from tests.golden_cases import ragged_ids

pytestmark = [needs_keras, pytest.mark.keras]

VOCAB, T, B = 30, 9, 5
IDS = ragged_ids(VOCAB, [9, 1, 4, 7, 2], T, seed=21, pre=[True, False, True, False, False])
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _floats(k: Any, shape: tuple[int, ...]) -> tuple[Any, np.ndarray]:
    x = np.random.default_rng(22).standard_normal((B, *shape))
    return k.Input(shape=shape), x


def _ids(k: Any) -> tuple[Any, np.ndarray]:
    return k.Input(shape=(T,), dtype="int32"), IDS


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
}
#: Cases also run in float64 (every layer family once).
#: Not here: dense-hard_sigmoid and dense-gelu, where Keras 3 itself is off the exact float64
#: function by ~1e-8 (measured 4.5e-9 and 1.7e-8: float32 constants inside Keras' ops).
FLOAT64 = (
    "dense-tanh", "dense-softmax", "conv1d-same-s2-d1", "conv1d-causal-s1-d2",
    "AveragePooling1D-same-3-2", "flatten", "GlobalAveragePooling1D-maskTrue",
    "SimpleRNN-return_sequences-go_backwards", "LSTM-return_state", "GRU-reset_before",
    "GRU-last", "bidirectional-GRU-ave-last", "bidirectional-LSTM-mul-last", "batch_norm",
    "layer_norm", "concatenate-mixed-masks",
)  # fmt: skip


def _randomise(model: Any, seed: int = 23) -> None:
    """Every weight random (moving variances positive), so no transform hides behind zeros."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            value = rng.standard_normal(tuple(weight.shape)) * 0.6
            if "variance" in weight.path if hasattr(weight, "path") else weight.name:
                value = np.abs(value) + 0.3
            values.append(value)
        if values:
            layer.set_weights(values)


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
        layer = model.get_layer(spec["name"])
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
        check_against_keras(model, x, tmp_path / "m.keras", DTYPES[floatx])
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
        layer = k.layers.deserialize(_with_module({"class_name": cls, "config": example.config}))
        if example.input == "embedded":
            inp, h, x = _embedded(k)
            return inp, layer(h), x
        if example.input == "two_sequences":  # one (B, T, 5) input split into 3 + 2 channels
            inp, x = _floats(k, (7, 5))
            left, right = k.layers.Dense(3)(inp), k.layers.Dense(2)(inp)
            return inp, layer([left, right]), x
        inputs: dict[str, Callable[[], tuple]] = {
            "ids": lambda: _ids(k),
            "sequence": lambda: _floats(k, (11, 3)),
            "vector": lambda: _floats(k, (6,)),
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


def test_bn_trains_like_keras() -> None:
    """One training step of BatchNormalization: batch moments, Keras' momentum and the biased
    variance in the moving statistics, as keras.layers.BatchNormalization computes them."""
    import keras

    from parity.layers import BatchNormalization

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


@pytest.mark.parametrize("writer", ["keras", "tf_keras"])
def test_initial_state_is_refused_never_dropped(writer: str, tmp_path: Path) -> None:
    """An LSTM fed initial states (a seq2seq decoder) must not run on its first input alone: the
    file is refused, naming the layer and what it is given."""
    import importlib

    k = importlib.import_module(writer)
    ids, h0, c0 = k.Input((5,), dtype="int32"), k.Input((3,)), k.Input((3,))
    out = k.layers.LSTM(3, name="decoder")(k.layers.Embedding(20, 4)(ids), initial_state=[h0, c0])
    path = tmp_path / ("m.keras" if writer == "keras" else "m.h5")
    k.Model([ids, h0, c0], out).save(str(path))
    with pytest.raises(parity.ConversionError, match=r"initial_state|initial states") as info:
        parity.load_keras(path)
    assert "decoder" in str(info.value)
