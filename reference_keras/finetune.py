"""The Keras half of fine-tuning: DeepMoji's methods run in Keras, batch for batch as parity does.

Stages, learning rates, batch order and early stopping come from parity.train.stages (``plan``,
``epoch_order``, ``EarlyStopping``), so the only thing that differs between the two sides is the
framework: Keras' Adam(clipnorm=1) via ``compile`` + ``train_on_batch``, its losses, its layers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from parity.conventions import DEEPMOJI_CLIPNORM
from parity.train.data import TaskData
from parity.train.stages import EarlyStopping, batches, epoch_order, plan
from reference_keras import deepmoji

HEAD = "softmax"
KERAS_LOSSES = {
    "binary": keras.losses.BinaryCrossentropy,
    "multilabel": keras.losses.BinaryCrossentropy,
    "multiclass": keras.losses.CategoricalCrossentropy,
}


def load(path: str | os.PathLike[str]) -> keras.Model:
    return keras.models.load_model(path, custom_objects=deepmoji.CUSTOM_OBJECTS, compile=False)


def deepmoji_sizes(model: keras.Model) -> dict[str, Any]:
    """build() arguments of a Keras DeepMoji (sizes from its layers)."""
    emb = model.get_layer("embedding")
    lstm = model.get_layer("bi_lstm_0").forward_layer
    act = keras.activations.serialize(lstm.recurrent_activation)
    gate = next(
        (
            g
            for g, f in deepmoji.GATES.items()
            if keras.activations.serialize(keras.activations.get(f)) == act
        ),
        "hard_sigmoid_keras2",
    )
    return {
        "vocab_size": emb.input_dim,
        "embedding_dim": emb.output_dim,
        "hidden_size": lstm.units,
        "gate": gate,
    }


def with_new_head(
    model: keras.Model,
    num_classes: int,
    *,
    embed_dropout: float = 0.0,
    final_dropout: float = 0.0,
    seed: int = 0,
) -> keras.Model:
    """DeepMoji's transfer model: same layers, a fresh (Keras-initialized) head for the task."""
    keras.utils.set_random_seed(seed)
    new = deepmoji.build(
        **deepmoji_sizes(model),
        num_classes=num_classes,
        embed_dropout=embed_dropout,
        final_dropout=final_dropout,
    )
    for layer in new.layers:
        if layer.weights and layer.name != HEAD:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return new


def weighted_layers(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if layer.weights]


def finetune(
    model: keras.Model,
    data: TaskData,
    method: str,
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    seed: int,
    lr: float | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune ``model`` in place (head already fitted to the task); returns stage curves
    shaped like parity.train.History.stages."""
    if method == "new":
        raise ValueError("'new' starts from Keras' own random init: build the model fresh instead")
    return _finetune(model, data, method, epochs, batch_size, patience, seed, lr)


def _finetune(
    model: keras.Model,
    data: TaskData,
    method: str,
    epochs: int,
    batch_size: int,
    patience: int,
    seed: int,
    lr: float | None,
) -> list[dict[str, Any]]:
    x, y = data.split("train")
    xv, yv = data.split("val")
    records = []
    for i, stage in enumerate(plan(weighted_layers(model), HEAD, method, lr)):
        for layer in model.layers:
            if layer.weights:
                layer.trainable = layer.name in stage.layers
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=stage.lr, clipnorm=DEEPMOJI_CLIPNORM),
            # A Loss casts predictions to its dtype (floatx by default): use the model's, so a
            # float64 model gets a float64 loss. floatx stays float32, Keras' default, which is
            # also the dtype of the optimizer's learning-rate variable.
            loss=KERAS_LOSSES[data.task](dtype=model.weights[0].dtype),
        )
        stopper = EarlyStopping(patience)
        best = model.get_weights()
        rec: dict[str, Any] = {"stage": stage.name, "layers": list(stage.layers), "lr": stage.lr}
        rec.update(batch_loss=[], train_loss=[], val_loss=[])
        for epoch in range(epochs):
            seen, total = 0, 0.0
            for idx in batches(epoch_order(seed, i, epoch, len(x)), batch_size):
                logs = model.train_on_batch(x[idx], y[idx], return_dict=True)
                loss = float(logs["loss"])
                rec["batch_loss"].append(loss)
                seen, total = seen + len(idx), total + loss * len(idx)
            logs = model.evaluate(xv, yv, batch_size=len(xv), verbose=0, return_dict=True)
            val = float(logs["loss"])
            rec["train_loss"].append(total / seen)
            rec["val_loss"].append(val)
            improved, stop = stopper.update(val, epoch)
            if improved:
                best = model.get_weights()
            if stop:
                break
        model.set_weights(best)
        rec["best_epoch"] = stopper.best_epoch + 1
        rec["best_val_loss"] = stopper.best
        records.append(rec)
    for layer in model.layers:
        layer.trainable = True
    return records


def predict(model: keras.Model, ids: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(ids, batch_size=256, verbose=0), dtype=np.float64)


def save(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    model.save(path)
    return path


def start_pair(
    source: keras.Model,
    num_classes: int,
    workdir: str | os.PathLike[str],
    *,
    dtype: str = "float32",
    embed_dropout: float = 0.0,
    final_dropout: float = 0.0,
    seed: int = 0,
) -> tuple[keras.Model, Any]:
    """The same starting point on both sides: Keras' transfer model with a fresh head (in
    ``dtype``), saved and converted by parity.load_keras, as a user would."""
    import torch

    import parity

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)  # layers' variables and computations in dtype
    try:
        kmodel = with_new_head(
            source,
            num_classes,
            embed_dropout=embed_dropout,
            final_dropout=final_dropout,
            seed=seed,
        )
    finally:
        keras.config.set_dtype_policy(previous)
    path = Path(workdir) / f"start-{dtype}.keras"
    kmodel.save(path)
    tmodel = parity.load_keras(path, dtype=getattr(torch, dtype))
    if embed_dropout or final_dropout:
        from parity.train import with_dropout

        tmodel = with_dropout(tmodel, embed_dropout, final_dropout)
    return kmodel, tmodel
