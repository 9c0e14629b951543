"""Models used as layers: a Sequential block, a shared (siamese) Functional branch, a model nested
in a nested model, a masked sequence through a nested Sequential, and the transfer-learning
pattern (a Keras application as the base of a small classifier).

Written by Keras 3 and tf-keras, as .keras and legacy .h5 (whose nested models store all
trainable weights before the moving statistics, and whose reads of a nested model count its
construction as call 0), converted with ``parity.load_keras`` and compared with Keras: outputs
and the gradient of every weight.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import parity
from parity.keras.graph import parse_graph
from tests.conftest import needs_keras
from tests.test_applications import _random_batch_norm
from tests.test_generic_layers import _randomise, check_against_keras

WRITERS = ("keras", "tf_keras")
SUFFIXES = (".keras", ".h5")


def _blocks(k: Any) -> tuple[Any, Any, np.ndarray]:
    """An image stem (Conv2D + BatchNormalization) as a Functional model, inside a Sequential
    block, followed by a branch applied twice (shared weights) and a model nested two deep."""
    L = k.layers
    i = k.Input((6, 6, 2))
    h = L.BatchNormalization(name="bn")(L.Conv2D(3, 3, name="conv")(i))
    stem = k.Model(i, L.ReLU(name="relu")(h), name="stem")
    block = k.Sequential(
        [k.Input((6, 6, 2)), stem, L.GlobalAveragePooling2D(name="pool")], name="block"
    )
    j = k.Input((3,))
    branch = k.Model(j, L.Dense(3, activation="tanh", name="b1")(j), name="branch")
    n = k.Input((3,))
    twig = k.Model(n, L.Dense(3, name="t1")(n), name="twig")
    m = k.Input((3,))
    inner = k.Model(m, L.Dense(2, name="deep")(twig(m)), name="outer_branch")
    x = k.Input((6, 6, 2))
    y = block(x)
    z = branch(branch(y))  # the same nested model, called twice
    out = L.Dense(2, name="head")(L.Concatenate(name="cat")([z, inner(y)]))
    data = np.random.default_rng(40).standard_normal((3, 6, 6, 2)).astype("float32")
    return x, out, data


def _masked(k: Any) -> tuple[Any, Any, np.ndarray]:
    """A mask made outside a nested Sequential reaches the LSTM inside it."""
    L = k.layers
    ids = k.Input((5,), dtype="int32")
    emb = L.Embedding(12, 4, mask_zero=True, name="emb")(ids)
    rnn = k.Sequential([k.Input((5, 4)), L.LSTM(3, name="lstm")], name="encoder")
    out = L.Dense(1, name="head")(rnn(emb))
    data = np.array([[3, 4, 5, 0, 0], [0, 0, 7, 8, 9], [1, 2, 3, 4, 5]], dtype="int32")
    return ids, out, data


CASES = {"blocks": _blocks, "masked": _masked}


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_nested_models_match_keras(case: str, writer: str, suffix: str, tmp_path: Path) -> None:
    k = importlib.import_module(writer)
    k.utils.set_random_seed(41)
    inp, out, x = CASES[case](k)
    model = k.Model(inp, out)
    _randomise(model)
    check_against_keras(model, x, tmp_path / f"m{suffix}", torch.float32)


@needs_keras
@pytest.mark.keras
def test_parity_check_runs_on_a_nested_model(tmp_path: Path) -> None:
    """`parity check` compares the gradients of weights inside nested models too."""
    import keras

    from tests.test_cli import run_cli

    keras.utils.set_random_seed(45)
    inp, out, _ = _masked(keras)
    model = keras.Model(inp, out)
    _randomise(model)
    path = tmp_path / "nested.keras"
    model.save(path)
    report = tmp_path / "report.json"
    result = run_cli("check", path, "--json", report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "grad/encoder/lstm/kernel" in report.read_text()


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("writer", WRITERS)
def test_weights_only_file_with_nested_models_takes_config(writer: str, tmp_path: Path) -> None:
    """save_weights of a model with nested models converts with the full model as --config."""
    k = importlib.import_module(writer)
    k.utils.set_random_seed(42)
    inp, out, x = _blocks(k)
    model = k.Model(inp, out)
    _randomise(model)
    weights = tmp_path / ("m.weights.h5" if writer == "keras" else "m_weights.h5")
    model.save_weights(str(weights))
    model.save(str(tmp_path / "m.keras"))
    converted = parity.load_keras(weights, config=tmp_path / "m.keras")
    got = converted(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-5)


@needs_keras
@pytest.mark.keras
@pytest.mark.slow
@pytest.mark.parametrize("writer", WRITERS)
def test_transfer_learning_base_matches_keras(writer: str, tmp_path: Path) -> None:
    """What transfer-learning users publish: MobileNetV2 without its top as the base of a
    Sequential classifier, saved as legacy .h5 (nested BatchNormalization statistics stored
    after every kernel of the base)."""
    k = importlib.import_module(writer)
    k.utils.set_random_seed(43)
    base = k.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
    model = k.Sequential(
        [k.Input((32, 32, 3)), base, k.layers.GlobalAveragePooling2D(), k.layers.Dense(3)]
    )
    _random_batch_norm(base)  # all-random weights through 50 layers overflow float32 gradients
    x = np.random.default_rng(44).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    check_against_keras(model, x, tmp_path / "m.h5", torch.float32)


# --- structure, without Keras -----------------------------------------------------------------


def _functional(layers: list[dict], inputs: list, outputs: list) -> dict:
    return {
        "class_name": "Functional",
        "config": {"layers": layers, "input_layers": inputs, "output_layers": outputs},
    }


def _dense(name: str, *reads: list) -> dict:
    return {
        "class_name": "Dense",
        "name": name,
        "config": {"name": name, "units": 2},
        "inbound_nodes": [[[*r, {}]] for r in reads],
    }


def _input(name: str) -> dict:
    return {"class_name": "InputLayer", "name": name, "config": {"name": name}, "inbound_nodes": []}


def _nested_config(reads_of_inner: list) -> dict:
    """A Keras 2-style functional config using a Sequential without an InputLayer entry (so
    whether its reads count from 0 or 1 is not stated) called twice."""
    inner = {
        "class_name": "Sequential",
        "name": "seq",
        "config": {
            "name": "seq",
            "layers": [{"class_name": "Dense", "config": {"name": "d", "units": 2}}],
        },
        "inbound_nodes": [[["x", 0, 0, {}]], [["x", 0, 0, {}]]],
    }
    layers = [_input("x"), inner, _dense("head", *reads_of_inner)]
    return _functional(layers, [["x", 0, 0]], [["head", i, 0] for i in range(len(reads_of_inner))])


def test_nested_reads_that_fit_two_numberings_are_refused() -> None:
    """Reads [seq, 1] of a Sequential called twice mean call 1 (Keras 3-style numbering) or call
    0 (Keras 2's, counting the construction): refused rather than guessed."""
    with pytest.raises(parity.ConversionError, match="cannot be told"):
        parse_graph(_nested_config([["seq", 1, 0]]))


def test_nested_reads_that_fit_one_numbering_are_followed() -> None:
    graph = parse_graph(_nested_config([["seq", 0, 0], ["seq", 1, 0]]))
    head = next(n for n in graph.nodes if n.name == "head")
    assert [c.args for c in head.calls] == [[["seq/d", 0, 0]], [["seq/d", 1, 0]]]
    assert next(n for n in graph.nodes if n.name == "seq/d").scope == ("seq",)


def test_nested_model_called_with_wrong_arity_is_refused() -> None:
    config = _nested_config([["seq", 0, 0]])
    config["config"]["layers"][1]["inbound_nodes"] = [[["x", 0, 0, {}], ["x", 0, 0, {}]]]
    with pytest.raises(parity.ConversionError, match="called with 2 tensors; it takes 1"):
        parse_graph(config)


def test_nested_read_past_its_calls_is_refused() -> None:
    with pytest.raises(parity.ConversionError, match="nested model 'seq'"):
        parse_graph(_nested_config([["seq", 5, 0]]))


def test_nested_call_blowup_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A nested model called many times multiplies its layers' calls: the total is checked
    before the inlined graph is built."""
    import parity.keras.graph as graph

    monkeypatch.setattr(graph, "MAX_GRAPH_CALLS", 5)
    config = _nested_config([["seq", 0, 0], ["seq", 1, 0]])
    config["config"]["layers"][1]["inbound_nodes"] *= 3
    with pytest.raises(parity.ConversionError, match="inlining the nested models"):
        parse_graph(config)
