"""Keras' side of a parity check, saved as a golden file (see parity.check.harness for keys).

Golden files let the parity tests run where TensorFlow is absent (the CUDA machine, a user's
torch-only environment); live tests regenerate them and cross-check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import tensorflow as tf

from parity.check.harness import ACTIVATION_GRAD_PREFIX, GRAD_PREFIX, OUTPUT_PREFIX
from parity.convert.load import KERAS_LAYER_WEIGHTS
from parity.registry import get_pair

OUTPUT_NAMES = ("output", "attention")


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


def keras_side(
    model: keras.Model,
    pair_name: str,
    ids: np.ndarray,
    loss_weights: np.ndarray | None = None,
    *,
    activations: Sequence[str] = (),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Outputs and gradients of sum(output * loss_weights), keyed as the harness expects."""
    pair = get_pair(pair_name)
    with tf.GradientTape(persistent=False) as tape:
        results, watched = _forward(model, tf.constant(ids), activations, tape)
        if loss_weights is None:
            rng = np.random.default_rng(seed)
            loss_weights = rng.standard_normal(tuple(results[0].shape))
        loss_weights = np.asarray(
            loss_weights, dtype=keras.backend.standardize_dtype(results[0].dtype)
        )
        loss = tf.reduce_sum(results[0] * loss_weights)
    keys, variables = [], []
    for role, cls in pair.keras_layers:
        layer = model.get_layer(role)
        names = KERAS_LAYER_WEIGHTS[cls]
        if len(layer.weights) != len(names):
            raise ValueError(f"{role}: {len(layer.weights)} weights, expected {names}")
        for name, weight in zip(names, layer.weights, strict=True):
            keys.append(f"{GRAD_PREFIX}{role}/{name}")
            variables.append(weight.value)
    keys += [f"{ACTIVATION_GRAD_PREFIX}{name}" for name in watched]
    grads = tape.gradient(loss, variables + list(watched.values()))
    golden = {
        f"{OUTPUT_PREFIX}{name}": np.asarray(r)
        for name, r in zip(OUTPUT_NAMES, results, strict=False)
    }
    # Embedding gradients come back as IndexedSlices: densify them.
    golden.update(
        {key: np.asarray(tf.convert_to_tensor(g)) for key, g in zip(keys, grads, strict=True)}
    )
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
    golden["meta"] = np.array(json.dumps(meta))
    return golden


def write_golden(path: str | Path, golden: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, **golden)
