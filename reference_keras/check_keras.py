"""Keras' side of `parity check` and `parity golden`: load the user's file live, run it.

Runs the file's own model (not our reference build), in eval mode, on the check's inputs, and
records outputs, the outputs of the layers that have activation points, and the gradients of
sum(output * loss_weights) w.r.t. every weight the conversion maps. Needs the keras extra.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from parity.check.harness import GRAD_PREFIX
from parity.convert.read import HDF5_SIGNATURE
from reference_keras.deepmoji import CUSTOM_OBJECTS
from reference_keras.golden import keras_side

#: Floating dtypes a Keras config may name, rewritten when a check runs in another dtype.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _retype_config(config: Any, dtype: str) -> Any:
    """A layer config with every floating dtype (and dtype policy) replaced by ``dtype``."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config.get("config", {}), "name": dtype}}
        return {
            k: (dtype if k == "dtype" and v in FLOAT_DTYPES else _retype_config(v, dtype))
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [_retype_config(v, dtype) for v in config]
    return config


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _load_tf_keras(path: str | Path) -> Any:
    """A legacy HDF5 model through tf_keras (Keras 2): Keras 3 cannot rebuild many Keras 2
    files with RNNs (e.g. LSTM's removed time_major argument)."""
    import tf_keras

    from reference_keras.deepmoji import keras2_custom_objects

    return tf_keras.models.load_model(path, custom_objects=keras2_custom_objects(), compile=False)


def load_model(path: str | Path, dtype: str = "float32") -> Any:
    """The file's Keras model, in ``dtype`` (float64 checks rebuild a float32 model in float64
    from its own config and cast the weights, so Keras computes in float64 too).

    Keras 3 loads it if it can; a legacy .h5 it cannot load is loaded with tf_keras (Keras 2),
    which is what wrote such files.
    """
    try:
        model = keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
    except Exception as exc:  # Keras raises many types for files it cannot rebuild
        problems = [f"Keras {keras.__version__}: {_first_line(exc)}"]
        model = None
        if Path(path).read_bytes()[:8] == HDF5_SIGNATURE:
            try:
                model = _load_tf_keras(path)
            except Exception as exc2:  # tf_keras absent, or it cannot rebuild the file either
                problems.append(f"tf_keras: {_first_line(exc2)}")
        if model is None:
            raise ValueError(
                f"{path}: cannot load this file as a Keras model ({'; '.join(problems)}); a live "
                "check needs a full model file (.keras, or .h5 saved with model.save)"
            ) from exc
    weights = model.weights
    if all(keras.backend.standardize_dtype(w.dtype) == dtype for w in weights):
        return model
    with keras.saving.custom_object_scope(CUSTOM_OBJECTS):
        clone = model.__class__.from_config(_retype_config(model.get_config(), dtype))
    clone.set_weights([w.astype(dtype) for w in model.get_weights()])
    return clone


def runtime(model: Any) -> dict[str, str]:
    """Which Keras computed the numbers (recorded in the golden file's meta)."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return {"keras_version": tf_keras.__version__, "keras_runtime": "tf_keras"}
    return {"keras_version": keras.__version__, "keras_runtime": "keras"}


def weight_variables(
    model: keras.Model, layer_names: Mapping[str, str], weights: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """grad/<role>/<weight> -> the trainable Keras variable (layer.weights is in saved order)."""
    variables = {}
    for role, names in weights.items():
        layer = model.get_layer(layer_names.get(role, role))
        if len(layer.weights) != len(names):
            raise ValueError(
                f"layer {layer.name!r}: {len(layer.weights)} weights, expected {names}"
            )
        for name, weight in zip(names, layer.weights, strict=True):
            if weight.trainable:  # moving statistics get no gradient, in Keras or torch
                variables[f"{GRAD_PREFIX}{role}/{name}"] = weight
    return variables


def keras_reference(
    path: str | Path,
    pair: str | None,
    ids: np.ndarray,
    *,
    layer_names: Mapping[str, str],
    weights: Mapping[str, Sequence[str]],
    activation_points: Mapping[str, str],
    dtype: str = "float32",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Keras' numbers for a check of ``path`` (arguments: parity.check.run.subject_for's second
    result), keyed as golden files are."""
    model = load_model(path, dtype)
    source = {"source": Path(path).name, "source_sha256": sha256(path), "dtype": dtype}
    source.update(runtime(model))
    return keras_side(
        model,
        pair,
        ids.astype(np.int32),
        seed=seed,
        activation_points=activation_points,
        variables=weight_variables(model, layer_names, weights),
        extra_meta=source,
    )
