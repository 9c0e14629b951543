"""Custom layers: refused by name without a plug-in, converted and checked live with one.

tests/plugin_example.py is a plug-in as a user writes it (their Keras layer, its torch module,
the converter); these tests use it from Python and through ``parity --plugin``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity.plugins import register_layer, unregister_layer
from parity.ports import CONVERTERS
from tests.conftest import needs_keras
from tests.test_cli import run_cli
from tests.test_generic_layers import _randomise, check_against_keras

GOLDEN = Path(__file__).parent / "golden"
PLUGIN = "tests.plugin_example"


@pytest.fixture
def plugin() -> Iterator[object]:
    """The example plug-in, registered for one test only: the converter table is process-wide,
    and a class without examples must not reach the tests that check every converter."""
    import tests.plugin_example as example  # registers the layer on first import

    if example.CLASS not in CONVERTERS:
        example.register()
    yield example
    unregister_layer(example.CLASS)


def _model_file(tmp_path: Path, example: object) -> tuple[Path, object, np.ndarray]:
    """Token ids -> Embedding -> Dense -> the user's ScaledDense, saved as .keras (parity check
    feeds token ids)."""
    import keras

    keras.utils.set_random_seed(50)
    inp = keras.Input((6,), dtype="int32")
    h = keras.layers.Dense(4, name="d")(keras.layers.Embedding(30, 5, name="emb")(inp))
    h = example.keras_class()(3, name="scaled")(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model(inp, keras.layers.Activation("tanh")(h))
    _randomise(model)
    path = tmp_path / "custom.keras"
    model.save(path)
    return path, model, np.random.default_rng(51).integers(1, 30, (3, 6)).astype("int32")


@needs_keras
@pytest.mark.keras
def test_unregistered_custom_layer_is_refused_by_name(plugin, tmp_path: Path) -> None:
    path, _, _ = _model_file(tmp_path, plugin)
    unregister_layer(plugin.CLASS)
    try:
        with pytest.raises(parity.ConversionError) as info:
            parity.load_keras(path)
        message = str(info.value)
        assert message.startswith(f"{path}: unsupported layer(s) scaled (ScaledDense)")
        assert "register_layer" in message
    finally:
        plugin.register()


@needs_keras
@pytest.mark.keras
def test_registered_custom_layer_matches_keras(plugin, tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(52)
    inp = keras.Input((5,))
    h = plugin.keras_class()(3, name="scaled")(keras.layers.Dense(4, name="d")(inp))
    model = keras.Model(inp, h)
    _randomise(model)
    x = np.random.default_rng(53).standard_normal((3, 5)).astype("float32")
    check_against_keras(model, x, tmp_path / "m.keras", torch.float32)


@needs_keras
@pytest.mark.keras
def test_plugin_from_the_command_line_converts_and_checks(plugin, tmp_path: Path) -> None:
    """``parity --plugin MODULE``: convert, then a live check whose Keras side loads the user's
    class from the plug-in (the file names it "my_project>ScaledDense")."""
    path, model, x = _model_file(tmp_path, plugin)
    refused = run_cli("convert", path, tmp_path / "no.safetensors")
    assert refused.returncode == 1 and "ScaledDense" in refused.stderr
    out = tmp_path / "m.safetensors"
    converted = run_cli("--plugin", PLUGIN, "convert", path, out)
    assert converted.returncode == 0, converted.stderr
    got = parity.load(out)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-6)
    checked = run_cli("--plugin", PLUGIN, "check", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    missing = run_cli("--plugin", "no_such_plugin_module", "convert", path, out)
    assert missing.returncode == 1 and "no_such_plugin_module" in missing.stderr


def test_builtin_converter_is_not_replaced_silently(plugin) -> None:
    with pytest.raises(ValueError, match="already converted"):
        register_layer("Dense", plugin.CONVERTER)


@needs_keras
@pytest.mark.keras
def test_lambda_is_refused_never_run(tmp_path: Path) -> None:
    """A Lambda whose bytecode is off the translation whitelist (here a tensor method) is never
    executed: the file is refused naming the layer, the reason and the plug-in route (reading a
    .keras file never unpickles or evaluates anything)."""
    import keras

    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t.__mul__(2.0), name="double")(inp)
    path = tmp_path / "lambda.keras"
    keras.Model(inp, out).save(path)
    with pytest.raises(parity.ConversionError) as info:
        parity.load_keras(path)
    message = str(info.value)
    assert "double (Lambda; bytecode reads .__mul__" in message and "never executed" in message
    assert "register_layer" in message


@needs_keras
@pytest.mark.keras
def test_deepmoji_attention_under_the_users_package_checks_live(tmp_path: Path) -> None:
    """A Keras 3 DeepMoji whose attention layer the user registered under their own package
    ("their_project>AttentionWeightedAverage") converts and passes a live check: the class is
    recognised by its name on both sides."""
    source = GOLDEN / "deepmoji-sigmoid-saturated-float32.keras"
    path = tmp_path / "deepmoji-user.keras"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                assert "parity>AttentionWeightedAverage" in text
                data = text.replace("parity>", "their_project>").encode()
                json.loads(data)
            dst.writestr(item, data)
    parity.load_keras(path)
    checked = run_cli("check", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_keras
@pytest.mark.keras
def test_a_plugin_with_an_emitter_is_ported_standalone(plugin, tmp_path: Path) -> None:
    """parity port writes the plug-in's own class into keras_layers.py: the package computes
    Keras' numbers and runs its own test with parity unimportable."""

    from parity.codegen.port import _load_generated
    from tests.test_port import assert_stands_alone

    path, model, ids = _model_file(tmp_path, plugin)
    result = parity.port(path, tmp_path / "ported")
    assert "class ScaledDense" in (result.out_dir / "keras_layers.py").read_text()
    generated = _load_generated(result.out_dir, result.class_name)
    with torch.no_grad():
        ours = generated(torch.from_numpy(ids.astype(np.int64))).numpy()
    np.testing.assert_allclose(ours, np.asarray(model(ids)), rtol=1e-5, atol=1e-6)
    assert_stands_alone(result.out_dir)
