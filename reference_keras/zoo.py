"""The seed model zoo's shared Keras plumbing: one layer list, built in Keras 3 or tf_keras.

Each seed model (reference_keras/<name>.py, parity.arch.ZOO[<name>]) writes its layers once
as a function of the Keras module ``k`` (``keras`` or ``tf_keras``), so the Keras 3 model and its
Keras 2 twin are the same architecture with the same layer names. They are converted by
parity's generic path; no hand-written port exists for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def output_layer(k: Any, num_classes: int) -> Any:
    """Binary tasks end in one sigmoid unit, others in a softmax; num_classes 0 = regression."""
    if num_classes == 0:
        return k.layers.Dense(1, name="output")
    if num_classes == 2:
        return k.layers.Dense(1, activation="sigmoid", name="output")
    return k.layers.Dense(num_classes, activation="softmax", name="output")


def loss_for(num_classes: int) -> str:
    return {0: "mse", 2: "binary_crossentropy"}.get(num_classes, "sparse_categorical_crossentropy")


def sequential(k: Any, name: str, seq_len: int | None, layers: list[Any], num_classes: int) -> Any:
    """Input(int ids) + layers, compiled with Adam and the task's loss."""
    model = k.Sequential([k.Input(shape=(seq_len,), dtype="int32", name="ids"), *layers], name=name)
    model.compile(optimizer="adam", loss=loss_for(num_classes))
    return model


def builders(
    name: str, layers: Callable[..., list[Any]]
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(build, build_keras2) for a seed model whose layers are ``layers(k, **sizes)``."""

    def build(seq_len: int | None = None, num_classes: int = 2, **sizes: Any) -> Any:
        import keras

        return sequential(
            keras, name, seq_len, layers(keras, num_classes=num_classes, **sizes), num_classes
        )

    def build_keras2(seq_len: int | None = None, num_classes: int = 2, **sizes: Any) -> Any:
        import tf_keras

        return sequential(
            tf_keras, name, seq_len, layers(tf_keras, num_classes=num_classes, **sizes), num_classes
        )

    return build, build_keras2
