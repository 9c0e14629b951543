"""Keras' side of a parity check, saved as a golden file (see parity.check.harness for keys).

Golden files let the parity tests run where TensorFlow is absent (the CUDA machine, a user's
torch-only environment); live tests regenerate them and cross-check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import tensorflow as tf

from parity.check.harness import (
    ACTIVATION_GRAD_PREFIX,
    ACTIVATION_PREFIX,
    GRAD_PREFIX,
    OUTPUT_PREFIX,
)
from parity.convert.load import KERAS_LAYER_WEIGHTS
from parity.registry import get_pair

OUTPUT_NAMES = ("output", "attention")

# Keras' numbers are full float32: TF32 (on by default for TF on Ampere+ GPUs) stays off.
tf.config.experimental.enable_tensor_float_32_execution(False)


def _forward(model: keras.Model, ids: tf.Tensor, activations: Sequence[str], tape: tf.GradientTape):
    """Model outputs; with activations, run a layer chain and watch the named layer outputs."""
    watched: dict[str, tf.Tensor] = {}
    if not activations:
        result = model(ids, training=False)
        return (list(result) if isinstance(result, list | tuple) else [result]), watched
    x = ids
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = layer(x, training=False)
        if layer.name in activations:
            tape.watch(x)
            watched[layer.name] = x
    return [x], watched


def _model_class(model: Any) -> type:
    """keras.Model, or tf_keras.Model for a legacy file only tf_keras can load."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras.Model
    return keras.Model


def _differentiable(variable: Any) -> Any:
    """What GradientTape differentiates: a Keras 3 Variable's backing tf.Variable (its
    ``value``), a tf_keras weight (a tf.Variable) itself."""
    value = getattr(variable, "value", variable)
    return variable if callable(value) else value


def layer_outputs(
    model: keras.Model, ids: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Outputs of the named layers (eval mode), from a sub-model sharing the model's graph;
    a layer with several outputs (attention's [pooled, weights]) gives its first."""
    if not names:
        return {}
    tensors = []
    for name in names:
        out = model.get_layer(name).output
        tensors.append(out[0] if isinstance(out, list | tuple) else out)
    probe = _model_class(model)(model.inputs, tensors)
    values = probe(tf.constant(ids), training=False)
    values = values if isinstance(values, list | tuple) else [values]
    return {
        f"{ACTIVATION_PREFIX}{name}": np.asarray(v) for name, v in zip(names, values, strict=True)
    }


def pair_variables(
    model: keras.Model, pair_name: str, layer_names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """grad/<role>/<weight> -> the Keras variable, for every weight of the pair's layers;
    ``layer_names`` maps the pair's roles to the model's layer names (default: the same)."""
    variables = {}
    for role, cls in get_pair(pair_name).keras_layers:
        layer = model.get_layer((layer_names or {}).get(role, role))
        names = KERAS_LAYER_WEIGHTS[cls]
        if len(layer.weights) != len(names):
            raise ValueError(f"{role}: {len(layer.weights)} weights, expected {names}")
        for name, weight in zip(names, layer.weights, strict=True):
            variables[f"{GRAD_PREFIX}{role}/{name}"] = weight
    return variables


def keras_side(
    model: keras.Model,
    pair_name: str | None,
    ids: np.ndarray,
    loss_weights: np.ndarray | None = None,
    *,
    activations: Sequence[str] = (),
    seed: int = 0,
    layer_names: Mapping[str, str] | None = None,
    activation_points: Mapping[str, str] | None = None,
    variables: Mapping[str, Any] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Outputs and gradients of sum(output * loss_weights), keyed as the harness expects.

    ``activation_points`` (Keras layer name -> name in the pair's point table) adds those
    layers' outputs; ``variables`` (key -> Keras variable) replaces the pair's weights, for
    models that are not a registered pair; ``layer_names`` maps roles to a user's layer names.
    """
    if variables is None:
        variables = pair_variables(model, pair_name, layer_names)
    with tf.GradientTape(persistent=False) as tape:
        results, watched = _forward(model, tf.constant(ids), activations, tape)
        if loss_weights is None:
            rng = np.random.default_rng(seed)
            loss_weights = rng.standard_normal(tuple(results[0].shape))
        loss_weights = np.asarray(
            loss_weights, dtype=keras.backend.standardize_dtype(results[0].dtype)
        )
        loss = tf.reduce_sum(results[0] * loss_weights)
    keys = [*variables, *(f"{ACTIVATION_GRAD_PREFIX}{name}" for name in watched)]
    targets = [_differentiable(v) for v in variables.values()]
    grads = tape.gradient(loss, targets + list(watched.values()))
    golden = {
        f"{OUTPUT_PREFIX}{name}": np.asarray(r)
        for name, r in zip(OUTPUT_NAMES, results, strict=False)
    }
    # Embedding gradients come back as IndexedSlices: densify them.
    golden.update(
        {key: np.asarray(tf.convert_to_tensor(g)) for key, g in zip(keys, grads, strict=True)}
    )
    points = dict(activation_points or {})
    golden.update(layer_outputs(model, ids, list(points)))
    golden["ids"] = np.asarray(ids)
    golden["loss_weights"] = loss_weights
    meta = {
        "pair": pair_name,
        "outputs": list(OUTPUT_NAMES[: len(results)]),
        "forward_kwargs": {"return_attention": True} if len(results) > 1 else {},
        "activations": list(watched),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "floatx": keras.config.floatx(),
        "seed": seed,
    }
    if points:
        meta["activation_points"] = points
    meta.update(extra_meta or {})
    golden["meta"] = np.array(json.dumps(meta))
    return golden


def write_golden(path: str | Path, golden: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, **golden)
