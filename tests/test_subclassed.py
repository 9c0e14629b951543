"""A subclassed Keras model (its architecture is the code of its class, its config lists no
layers) is refused with its class named and the reason given, from every format that can hold
one; functional and Sequential configs are never taken for one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import parity
from parity.errors import ConversionError
from parity.keras.graph import parse_graph
from parity.keras.read import subclassed_model
from tests.conftest import needs_keras

#: What every refusal of a subclassed model must say, besides the class name.
WORDS = ("subclassed", "is code", "--config", "register_layer")


def _assert_refusal(message: str, cls: str) -> None:
    assert repr(cls) in message, message
    for word in WORDS:
        assert word in message, (word, message)


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "MyNet", "config": {"name": "my_net", "trainable": True}},
        {"class_name": "MyNet", "config": {}},
        {"class_name": "MyNet", "module": "__main__", "registered_name": "Custom>MyNet"},
    ],
)
def test_config_of_a_subclassed_model_names_its_class(config: dict) -> None:
    with pytest.raises(ConversionError) as info:
        parse_graph(config)
    _assert_refusal(str(info.value), "MyNet")


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "Functional", "config": {"layers": []}},
        {"class_name": "Sequential", "config": []},
        {"class_name": "Model", "config": {"name": "m"}},
        {"class_name": "MyNet", "config": {"layers": [{"class_name": "Dense"}]}},
        ["not", "a", "dict"],
    ],
)
def test_model_classes_are_not_called_subclassed(config: object) -> None:
    assert subclassed_model(config) is None


def test_hostile_class_name_is_bounded_and_printable() -> None:
    why = subclassed_model({"class_name": "A\x00\n" + "x" * 10_000, "config": {}})
    assert why is not None and "\x00" not in why and "\n" not in why and len(why) < 1000


@needs_keras
def test_keras3_subclassed_model_is_refused_by_class(tmp_path: Path) -> None:
    import keras

    class TinyNet(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = TinyNet()
    model(np.zeros((1, 4), np.float32))
    path = tmp_path / "tiny.keras"
    model.save(path)
    with pytest.raises(ConversionError) as info:
        parity.load_keras(path)
    _assert_refusal(str(info.value), "TinyNet")


@needs_keras
def test_tf_keras_subclassed_saved_model_is_refused_by_class(tmp_path: Path) -> None:
    import tf_keras

    class TinyNet2(tf_keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = tf_keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = TinyNet2()
    model(np.zeros((1, 4), np.float32))
    path = tmp_path / "tiny_sm"
    model.save(path, save_format="tf")
    with pytest.raises(ConversionError) as info:
        parity.load_keras(path)
    _assert_refusal(str(info.value), "TinyNet2")
