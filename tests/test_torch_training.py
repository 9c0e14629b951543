"""A converted model is a plain PyTorch module: the user's own loop reproduces Keras' training.

Each case builds a Keras model, converts its file, then trains both sides on the same batches:
Keras with ``train_on_batch``, torch with a plain loop over ``model.parameters()`` (torch's SGD,
whose rule is Keras'; parity.optim.Adam, Keras' Adam). Keras' weights after training are read
back through the same conversion and must equal torch's, parameters and buffers (moving
statistics) alike, within the ``trained`` tolerance. Frozen layers (trainable=False, a nested
model included) must stay frozen, and a frozen BatchNormalization must run as that Keras runs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import parity
from parity.check.harness import load_golden
from parity.check.run import check, subject_for
from parity.check.tolerances import tolerance_for
from parity.conventions import (
    FROZEN_BATCH_NORM_BATCH,
    FROZEN_BATCH_NORM_INFERENCE,
    frozen_batch_norm_rule,
)
from parity.keras.read import read_keras_file
from tests.conftest import GOLDEN, needs_keras
from tests.edits import edited_keras, layer_config
from tests.golden_cases import DEEPMOJI_SMALL, ZOO_SIZES, ZOO_SMALL

STEPS = 10
BATCH, LENGTH = 8, 10
SGD_RATE, ADAM_RATE = 0.5, 0.01


@dataclass(frozen=True)
class Case:
    """A Keras model to train: ``build()`` -> (model, its Keras module, file suffix)."""

    build: Callable[[], tuple[Any, Any, str]]
    vocab: int


def _keras3() -> Any:
    import keras

    return keras


def _tf_keras() -> Any:
    import tf_keras

    return tf_keras


def _deepmoji_keras3() -> tuple[Any, Any, str]:
    from reference_keras import deepmoji

    return deepmoji.build(**DEEPMOJI_SMALL), _keras3(), ".keras"


def _deepmoji_frozen_embedding() -> tuple[Any, Any, str]:
    """DeepMoji fine-tuned on a frozen pretrained embedding (the pair, not the generic path)."""
    model, k, suffix = _deepmoji_keras3()
    model.get_layer("embedding").trainable = False
    return model, k, suffix


def _deepmoji_keras2() -> tuple[Any, Any, str]:
    from reference_keras import deepmoji

    return deepmoji.build_keras2(**DEEPMOJI_SMALL), _tf_keras(), ".h5"


def _zoo(name: str, **extra: Any) -> Callable[[], tuple[Any, Any, str]]:
    def build() -> tuple[Any, Any, str]:
        module = importlib.import_module(f"reference_keras.{name}")
        return module.build(**{**ZOO_SMALL, **ZOO_SIZES[name], **extra}), _keras3(), ".keras"

    return build


def _frozen_bn(keras_module: Callable[[], Any], suffix: str) -> Callable[[], tuple[Any, Any, str]]:
    """A frozen pretrained embedding, a frozen nested block holding a BatchNormalization, and a
    trainable BatchNormalization after it."""

    def build() -> tuple[Any, Any, str]:
        k = keras_module()
        layers = k.layers
        ids = k.Input((LENGTH,), dtype="int32")
        x = layers.Embedding(ZOO_SMALL["vocab_size"], 6, name="embedding", trainable=False)(ids)
        x = layers.GlobalAveragePooling1D(name="pool")(x)
        block = k.Sequential(
            [
                k.Input((6,)),
                layers.Dense(7, name="inner_dense"),
                layers.BatchNormalization(name="inner_bn"),
            ],
            name="block",
        )
        block.trainable = False
        x = block(x)
        # no bias before a trainable BatchNormalization: its gradient is zero up to rounding,
        # which Adam would scale up to learning-rate steps on either side
        x = layers.Dense(5, use_bias=False, name="dense")(x)
        x = layers.BatchNormalization(name="bn")(x)
        out = layers.Dense(3, activation="softmax", name="head")(x)
        model = k.Model(ids, out)
        # pretrained-looking statistics, so inference and batch modes differ
        bn = block.layers[-1]
        bn.set_weights([w + 0.5 for w in bn.get_weights()])
        return model, k, suffix

    return build


CASES: dict[str, Case] = {
    "deepmoji-keras3": Case(_deepmoji_keras3, DEEPMOJI_SMALL["vocab_size"]),
    "deepmoji-keras2": Case(_deepmoji_keras2, DEEPMOJI_SMALL["vocab_size"]),
    "deepmoji-frozen_embedding": Case(_deepmoji_frozen_embedding, DEEPMOJI_SMALL["vocab_size"]),
    "stacked_rnn": Case(_zoo("stacked_rnn"), ZOO_SMALL["vocab_size"]),
    "bigru_classifier": Case(_zoo("bigru_classifier"), ZOO_SMALL["vocab_size"]),
    "bigru_classifier-reset_before": Case(
        _zoo("bigru_classifier", reset_after=False), ZOO_SMALL["vocab_size"]
    ),
    "bilstm_classifier": Case(_zoo("bilstm_classifier"), ZOO_SMALL["vocab_size"]),
    "lstm_regressor": Case(_zoo("lstm_regressor"), ZOO_SMALL["vocab_size"]),
    "frozen_bn-keras3": Case(_frozen_bn(_keras3, ".keras"), ZOO_SMALL["vocab_size"]),
    "frozen_bn-tf_keras": Case(_frozen_bn(_tf_keras, ".h5"), ZOO_SMALL["vocab_size"]),
}

#: name -> (Keras optimizer from its module, torch optimizer over the parameters, hooks)
OPTIMIZERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "sgd": (
        lambda k: k.optimizers.SGD(learning_rate=SGD_RATE),
        lambda params: torch.optim.SGD(params, lr=SGD_RATE),
    ),
    "adam": (
        lambda k: k.optimizers.Adam(learning_rate=ADAM_RATE),
        lambda params: parity.optim.Adam(params, learning_rate=ADAM_RATE),
    ),
}


#: optimizer -> the tolerance-table quantity its trained weights are compared with
QUANTITY = {"sgd": "trained", "adam": "trained_adaptive"}


def _batches(vocab: int, out_shape: tuple[int, ...], seed: int) -> list[tuple[np.ndarray, ...]]:
    """Ragged ids (pre- and post-padded rows, zero = padding) and regression targets."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(STEPS):
        ids = rng.integers(1, vocab, (BATCH, LENGTH)).astype("int32")
        for row, length in enumerate(rng.integers(1, LENGTH + 1, BATCH)):
            pad = LENGTH - length
            if row % 2:
                ids[row, length:] = 0
            else:
                ids[row, :pad] = 0
        batches.append((ids, rng.random((BATCH, *out_shape)).astype("float32")))
    return batches


def _keras_trainable_size(kmodel: Any) -> int:
    return sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)


def train_both(case_id: str, optimizer: str, tmp_path: Path) -> tuple[torch.nn.Module, Any]:
    """(the converted model trained in a plain torch loop, Keras' trained weights converted)."""
    case = CASES[case_id]
    for seeded in (_keras3, _tf_keras):
        seeded().utils.set_random_seed(len(case_id))
    kmodel, k, suffix = case.build()
    start = tmp_path / f"start{suffix}"
    kmodel.save(str(start))
    model = parity.load_keras(start)
    params = [p for p in model.parameters() if p.requires_grad]
    # one to one: the trainable parameters are exactly Keras' trainable weights
    assert sum(p.numel() for p in params) == _keras_trainable_size(kmodel)
    assert not any(p.requires_grad for p in model.parameters() if p not in set(params))

    make_keras_opt, make_torch_opt = OPTIMIZERS[optimizer]
    kmodel.compile(optimizer=make_keras_opt(k), loss="mse", jit_compile=False)
    opt = make_torch_opt(model.parameters())
    if k.__name__ == "keras":  # Keras 3 on TensorFlow: per-occurrence embedding gradients
        parity.optim.track_embeddings(model)  # (tf.keras treats them as dense, as torch does)
    model.train()
    for ids, y in _batches(case.vocab, tuple(kmodel.output_shape[1:]), seed=len(case_id)):
        kmodel.train_on_batch(ids, y)
        opt.zero_grad()
        out = model(torch.from_numpy(ids.astype("int64")))
        torch.mean((out - torch.from_numpy(y)) ** 2).backward()
        opt.step()
    final = tmp_path / f"final{suffix}"
    kmodel.save(str(final))
    return model, parity.load_keras(final)


@needs_keras
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_plain_torch_loop_reaches_keras_weights(
    case_id: str, optimizer: str, tmp_path: Path
) -> None:
    ours, keras_trained = train_both(case_id, optimizer, tmp_path)
    tol = tolerance_for(torch.float32, "cpu", QUANTITY[optimizer])
    theirs = keras_trained.state_dict()
    problems = []
    for name, value in ours.state_dict().items():
        a, b = value.detach().numpy(), theirs[name].detach().numpy()
        if not np.allclose(a, b, atol=tol.atol, rtol=tol.rtol):
            problems.append(f"{name}: max diff {np.abs(a - b).max():.3g}")
    assert not problems, "; ".join(problems)


# --- no Keras needed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "rule"),
    [
        ("3.15.1", FROZEN_BATCH_NORM_INFERENCE),
        ("2.21.0", FROZEN_BATCH_NORM_INFERENCE),  # tf_keras
        ("2.3.0-tf", FROZEN_BATCH_NORM_INFERENCE),
        ("2.3.1", FROZEN_BATCH_NORM_BATCH),  # the last standalone Keras 2
        ("2.1.6", FROZEN_BATCH_NORM_BATCH),
        ("1.2.2", FROZEN_BATCH_NORM_BATCH),
        (None, FROZEN_BATCH_NORM_INFERENCE),
        ("garbage", FROZEN_BATCH_NORM_INFERENCE),
    ],
)
def test_frozen_batch_norm_rule_by_keras_version(version: str | None, rule: str) -> None:
    assert frozen_batch_norm_rule(version) == rule


# --- the file's dtype ---------------------------------------------------------------------------

FLOAT64_CASES = [
    "embedding_dense-init-float64",
    "deepmoji-hard_sigmoid_keras2-saturated-float64",
    "stacked_rnn-init-float64",
    "bigru_classifier-reset_before-float64",
]


@pytest.mark.parametrize("case_id", FLOAT64_CASES)
def test_float64_file_computes_in_float64(case_id: str) -> None:
    """No dtype given: a float64 Keras model converts to float64 and matches Keras' golden
    numbers (outputs and gradients) at the float64 tolerance."""
    model = parity.load_keras(GOLDEN / f"{case_id}.keras")
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert {b.dtype for b in model.buffers() if b.is_floating_point()} <= {torch.float64}
    subject, _ = subject_for(model, read_keras_file(GOLDEN / f"{case_id}.keras"))
    report = check(subject, load_golden(GOLDEN / f"{case_id}.npz"), dtype=torch.float64)
    assert report.passed, report


def _with_policy(tmp_path: Path, policies: dict[int, str]) -> Path:
    """The float32 stacked_rnn golden file with layer i's dtype policy replaced."""

    def set_policies(config: dict) -> None:
        for index, name in policies.items():
            layer_config(config, index)["dtype"] = {
                "module": "keras",
                "class_name": "DTypePolicy",
                "config": {"name": name},
                "registered_name": None,
            }

    source = GOLDEN / "stacked_rnn-init-float32.keras"
    return edited_keras(source, tmp_path / "policy.keras", set_policies)


@pytest.mark.parametrize(
    "policy", ["mixed_float16", "float16", "mixed_bfloat16", "int8_from_float32", "float8_e4m3"]
)
def test_half_precision_policy_is_refused_by_name(policy: str, tmp_path: Path) -> None:
    path = _with_policy(tmp_path, {2: policy})
    with pytest.raises(parity.ConversionError, match=f"{policy}.*dtype="):
        parity.load_keras(path)
    model = parity.load_keras(path, dtype=torch.float32)  # the caller's explicit choice
    assert next(model.parameters()).dtype == torch.float32


def test_layers_in_different_precisions_are_refused(tmp_path: Path) -> None:
    path = _with_policy(tmp_path, {1: "float64"})
    with pytest.raises(parity.ConversionError, match="different precisions"):
        parity.load_keras(path)


# --- frozen layers without Keras ----------------------------------------------------------------


def test_layer_saved_frozen_converts_frozen_through_save_and_load(tmp_path: Path) -> None:
    """A layer saved with trainable=False (edited into the config, as a transfer-learning base
    is saved) converts with requires_grad=False, and parity.save / load keep it so. (Training
    with frozen layers and BatchNormalization is checked live against Keras above.)"""

    def freeze_first_rnn(config: dict) -> None:
        layer_config(config, 2)["trainable"] = False

    source = GOLDEN / "stacked_rnn-init-float32.keras"
    path = edited_keras(source, tmp_path / "frozen.keras", freeze_first_rnn)
    model = parity.load_keras(path)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith("rnn_0.")}
    parity.save(model, tmp_path / "m.safetensors")
    again = parity.load(tmp_path / "m.safetensors")
    assert {n for n, p in again.named_parameters() if not p.requires_grad} == frozen


@needs_keras
def test_frozen_batch_norm_follows_the_rule_of_the_files_keras_and_unfreezing(
    tmp_path: Path,
) -> None:
    """model.train() on a frozen BatchNormalization: inference mode under Keras 3's rule; batch
    statistics with the moving ones kept under standalone Keras 2's; and once its layer is
    unfrozen (fine-tuning), a BatchNormalization that trains as any other."""
    kmodel, _, suffix = CASES["frozen_bn-keras3"].build()
    path = tmp_path / f"m{suffix}"
    kmodel.save(str(path))
    model = parity.load_keras(path)
    block_bn = model.block_inner_bn
    assert not block_bn.weight.requires_grad
    model.train()
    assert not block_bn.training and model.bn.training  # Keras 3: frozen -> inference
    model.config.frozen_batch_norm = FROZEN_BATCH_NORM_BATCH
    model.train()
    assert block_bn.training and not block_bn.update_statistics  # standalone Keras 2
    block_bn.requires_grad_(True)  # unfrozen
    model.train()
    assert block_bn.training and block_bn.update_statistics
    model.config.frozen_batch_norm = FROZEN_BATCH_NORM_INFERENCE
    model.train()
    assert block_bn.training and block_bn.update_statistics
