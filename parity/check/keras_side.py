"""Keras' side of a check: run a Keras model, record what the harness compares, save it.

`parity check` loads the user's file live in Keras (its own model, not a reference build), runs
it in eval mode on the check's inputs and records outputs, the outputs of the layers that have
activation points, and the gradients of sum(output * loss_weights) w.r.t. every weight the
conversion maps (keyed as parity.check.harness reads golden files); `parity golden` and
`make goldens` save the same record. Needs the keras extra: keras and tensorflow are imported on
first use (import_keras), so importing this module, parity or parity.check never loads them.

Custom layers in a user's file (DeepMoji's AttentionWeightedAverage) are defined once, with
their reference model in reference_keras; they are imported from there only when the file's
config names one (CUSTOM_OBJECT_MODULES), so a file of builtin layers needs no reference_keras.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from parity.arch import get_arch
from parity.check.harness import (
    ACTIVATION_GRAD_PREFIX,
    ACTIVATION_PREFIX,
    GRAD_PREFIX,
    OUTPUT_PREFIX,
)
from parity.keras.graph import SCOPE_SEPARATOR
from parity.keras.read import HDF5_SIGNATURE, read_model_config
from parity.ports import CONVERTERS

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

OUTPUT_NAMES = ("output", "attention")

#: Floating dtypes a Keras config may name, rewritten when a check runs in another dtype.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

#: Custom Keras objects a file's config may name (without the "package>" prefix Keras gives
#: registered names) -> the reference_keras module defining them, which exposes CUSTOM_OBJECTS
#: (Keras 3) and keras2_custom_objects() (tf_keras).
CUSTOM_OBJECT_MODULES: dict[str, str] = {
    "AttentionWeightedAverage": "reference_keras.deepmoji",
    "hard_sigmoid_keras2": "reference_keras.deepmoji",
}


def _plugin_objects(keras2: bool) -> dict[str, Any]:
    """custom_objects the plug-ins registered (parity.plugins.register_layer), for Keras 3 or
    tf_keras."""
    objects: dict[str, Any] = {}
    for keras3_objects, keras2_objects in CONVERTERS.keras_objects.values():
        provided = keras2_objects if keras2 else keras3_objects
        if provided is not None:
            objects.update(provided() if callable(provided) else provided)
    return objects


@functools.cache
def import_keras() -> tuple[ModuleType, ModuleType]:
    """(keras, tensorflow), imported on first use; ImportError when the keras extra is missing.

    TF32 (on by default for TF on Ampere+ GPUs) is turned off: Keras' numbers are full float32.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)
    return keras, tf


# --- running a Keras model ----------------------------------------------------------------------


def _forward(model: keras.Model, ids: tf.Tensor, activations: Sequence[str], tape: tf.GradientTape):
    """Model outputs; with activations, run a layer chain and watch the named layer outputs."""
    keras, _ = import_keras()
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
    keras, _ = import_keras()
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
    _, tf = import_keras()
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
    for role, names in get_arch(pair_name).keras_weights().items():
        layer = model.get_layer((layer_names or {}).get(role, role))
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
    keras, tf = import_keras()
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


# --- loading the user's file ----------------------------------------------------------------------


def sha256(path: str | Path) -> str:
    """The file's digest; a SavedModel directory's is its Keras metadata's and variables'."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for part in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(part.relative_to(path).as_posix().encode() + b"\0" + part.read_bytes())
        return digest.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strings(config: Any) -> Iterator[str]:
    """Every string in a (nested) Keras config."""
    if isinstance(config, str):
        yield config
    elif isinstance(config, dict):
        for value in config.values():
            yield from _strings(value)
    elif isinstance(config, list):
        for value in config:
            yield from _strings(value)


def objects_for(classes: set[str], *, keras2: bool = False) -> dict[str, Any]:
    """custom_objects for Keras classes that are not Keras' own: those of ``classes`` defined in
    reference_keras (DeepMoji's attention), and every plug-in's."""
    objects = _plugin_objects(keras2)
    for name in sorted({CUSTOM_OBJECT_MODULES[c] for c in classes & CUSTOM_OBJECT_MODULES.keys()}):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"its custom layers are defined in {name}, which cannot be imported ({exc}); "
                "install keras-parity with its reference_keras package"
            ) from exc
        objects.update(module.keras2_custom_objects() if keras2 else module.CUSTOM_OBJECTS)
    return objects


def custom_objects(path: str | Path, *, keras2: bool = False) -> dict[str, Any]:
    """custom_objects for loading ``path`` in Keras 3 (or tf_keras with ``keras2``): those its
    config names, imported from their reference_keras module; {} for builtin layers only."""
    try:
        config = read_model_config(path)
    except (ValueError, OSError):
        return {}  # no readable config: Keras' own load says what is wrong with the file
    strings = set(_strings(config))
    try:
        objects = objects_for({text.rpartition(">")[2] for text in strings}, keras2=keras2)
    except ImportError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    # A file whose custom classes were registered under the user's own package names them
    # "their_package>AttentionWeightedAverage": the class part decides.
    for text in strings:
        package, sep, name = text.rpartition(">")
        if sep and package and name in objects:
            objects.setdefault(text, objects[name])
    return objects


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
    """A legacy HDF5 model (or a tf-keras SavedModel directory) through tf_keras (Keras 2):
    Keras 3 cannot rebuild many Keras 2 files with RNNs (e.g. LSTM's removed time_major
    argument), nor read SavedModels."""
    import tf_keras

    objects = custom_objects(path, keras2=True)
    return tf_keras.models.load_model(path, custom_objects=objects, compile=False)


def load_model(path: str | Path, dtype: str = "float32") -> Any:
    """The file's Keras model, in ``dtype`` (float64 checks rebuild a float32 model in float64
    from its own config and cast the weights, so Keras computes in float64 too).

    Keras 3 loads it if it can; a legacy .h5 it cannot load is loaded with tf_keras (Keras 2),
    which is what wrote such files.
    """
    keras, _ = import_keras()
    objects = custom_objects(path)
    try:
        model = keras.models.load_model(path, custom_objects=objects, compile=False)
    except Exception as exc:  # Keras raises many types for files it cannot rebuild
        problems = [f"Keras {keras.__version__}: {_first_line(exc)}"]
        model = None
        source = Path(path)
        if source.is_dir() or (source.is_file() and source.read_bytes()[:8] == HDF5_SIGNATURE):
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
    with keras.saving.custom_object_scope(objects):
        clone = model.__class__.from_config(_retype_config(model.get_config(), dtype))
    clone.set_weights([w.astype(dtype) for w in model.get_weights()])
    return clone


def runtime(model: Any) -> dict[str, str]:
    """Which Keras computed the numbers (recorded in the golden file's meta)."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return {"keras_version": tf_keras.__version__, "keras_runtime": "tf_keras"}
    keras, _ = import_keras()
    return {"keras_version": keras.__version__, "keras_runtime": "keras"}


def weight_variables(
    model: keras.Model, layer_names: Mapping[str, str], weights: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """grad/<role>/<weight> -> the trainable Keras variable (layer.weights is in saved order)."""
    variables = {}
    for role, names in weights.items():
        layer = model
        for part in layer_names.get(role, role).split(SCOPE_SEPARATOR):  # "block/dense": nested
            layer = layer.get_layer(part)
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
        ids if ids.dtype.kind in "US" else ids.astype(np.int32),  # texts stay strings
        seed=seed,
        activation_points=activation_points,
        variables=weight_variables(model, layer_names, weights),
        extra_meta=source,
    )
