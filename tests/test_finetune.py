"""Fine-tuning: PyTorch training of a converted model follows Keras' training, step for step.

Live tests (keras installed) train the same converted model on the same batches in Keras
(reference_keras/finetune.py) and with parity.finetune, dropout off, and compare every batch
loss and the final weights; and resume Keras training from a saved optimizer state. The CLI
test runs without Keras. Longer runs on the benchmark data: reference_keras/finetune_evidence.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity import finetune as ft
from parity import losses, optim
from parity.arch import pair_of
from parity.check.tolerances import tolerance_for
from parity.finetune_state import load_keras_optimizer, read_optimizer_state
from tests.conftest import WEIGHTS, needs_keras

DEEPMOJI = WEIGHTS / "deepmoji_small.keras"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small recurrent steps: one intra-op thread is ~10x faster than two on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def random_task(n: int, seq_len: int, vocab: int, classes: int, seed: int = 0) -> ft.TaskData:
    """Ragged pre-padded ids with repeated tokens (so embedding rows repeat within a batch)."""
    rng = np.random.default_rng(seed)
    ids, targets = {}, {}
    for split in ft.SPLITS:
        x = np.zeros((n, seq_len), dtype=np.int64)
        for row in range(n):
            length = rng.integers(2, seq_len + 1)
            x[row, seq_len - length :] = rng.integers(1, min(vocab, 60), length)
        ids[split] = x
        labels = rng.integers(0, classes, n)
        targets[split] = (
            labels.reshape(-1, 1).astype(np.float64) if classes == 2 else np.eye(classes)[labels]
        )
    return ft.TaskData(ids, targets, "binary" if classes == 2 else "multiclass", classes)


def test_chain_thaw_plan_is_deepmoji_order() -> None:
    layers = ["embedding", "bi_lstm_0", "bi_lstm_1", "attlayer", "softmax"]
    stages = ft.plan(layers, "softmax", "chain-thaw")
    assert [s.name for s in stages] == ["head", *layers[:-1], "all"]
    assert [s.lr for s in stages] == [1e-3] + [1e-4] * 5
    assert stages[-1].layers == tuple(layers)
    assert ft.plan(layers, "softmax", "last") == [ft.Stage("head", ("softmax",), 1e-3)]
    assert ft.plan(layers, "softmax", "full", lr=3e-4)[0].lr == 3e-4


def test_new_head_is_keras_initialized_and_body_kept() -> None:
    model = parity.load(WEIGHTS / "deepmoji_small.safetensors")
    new = ft.with_new_head(model, 7, embed_dropout=0.25, final_dropout=0.5)
    assert new.softmax.out_features == 7 and new.config.final_dropout == 0.5
    assert not new.softmax.bias.detach().any()
    limit = np.sqrt(6 / (new.softmax.in_features + 7))
    assert new.softmax.weight.abs().max() <= limit
    torch.testing.assert_close(new.bi_lstm_1.weight_hh_l0, model.bi_lstm_1.weight_hh_l0)
    assert ft.freeze(new, ["bi_lstm_0"]) and not new.bi_lstm_0.bias_hh_l0.requires_grad


def _compare_runs(keras_stages: list[dict], torch_stages: list[dict], dtype: str) -> float:
    """Batch losses agree. Keras reports them through a float32 metric (its loss tracker is
    built at model creation, in float32) even for a float64 model: float32 bounds for both."""
    tol = tolerance_for(torch.float32, "cpu", "output")
    worst = 0.0
    for k, t in zip(keras_stages, torch_stages, strict=True):
        assert k["stage"] == t["stage"]
        a, b = np.asarray(k["batch_loss"]), np.asarray(t["batch_loss"])
        assert a.shape == b.shape, k["stage"]
        np.testing.assert_allclose(b, a, atol=10 * tol.atol, rtol=10 * tol.rtol, err_msg=k["stage"])
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


@needs_keras
@pytest.mark.parametrize(
    ("method", "dtype"), [("chain-thaw", "float32"), ("full", "float64"), ("last", "float64")]
)
def test_finetuning_follows_keras(method: str, dtype: str, tmp_path: Path) -> None:
    """Same converted start, same batches, dropout off: the same losses, step by step, and the
    same weights at the end (the float32 bound is 10x the output tolerance: many steps)."""
    from reference_keras import finetune as kft

    data = random_task(24, 8, 5000, 3, seed=1)
    kmodel, tmodel = kft.start_pair(kft.load(DEEPMOJI), 3, tmp_path, dtype=dtype, seed=2)
    opts = {"epochs": 2 if method != "chain-thaw" else 1, "batch_size": 8, "patience": 2, "seed": 3}
    krec = kft.finetune(kmodel, data, method, **opts)
    tuned, hist = ft.finetune(tmodel, data, method, new_head=False, progress=False, **opts)
    _compare_runs(krec, hist.stages, dtype)
    # weights: float64 runs agree to float64 precision
    tol = tolerance_for(DTYPES[dtype], "cpu", "output")
    params = dict(tuned.named_parameters())
    kweights = {
        f"{layer.name}/{i}": w for layer in kmodel.layers for i, w in enumerate(layer.get_weights())
    }
    np.testing.assert_allclose(
        params["softmax.weight"].detach().numpy().T,
        kweights["softmax/0"],
        atol=10 * tol.atol,
        rtol=10 * tol.rtol,
    )
    np.testing.assert_allclose(
        params["embedding.weight"].detach().numpy(),
        kweights["embedding/0"],
        atol=10 * tol.atol,
        rtol=10 * tol.rtol,
    )


@needs_keras
def test_dense_embedding_gradients_would_not_follow_keras(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the per-occurrence (IndexedSlices) embedding gradient, training the embedding
    with Adam(clipnorm=1) leaves Keras' path: the comparison above can fail."""
    from reference_keras import finetune as kft

    data = random_task(16, 8, 5000, 2, seed=4)
    kmodel, tmodel = kft.start_pair(kft.load(DEEPMOJI), 2, tmp_path, seed=5)
    opts = {"epochs": 1, "batch_size": 8, "patience": 1, "seed": 6}
    kft.finetune(kmodel, data, "full", **opts)
    keras_embedding = kmodel.get_layer("embedding").get_weights()[0]
    tol = tolerance_for(torch.float32, "cpu", "output")
    tracked, _ = ft.finetune(tmodel, data, "full", new_head=False, progress=False, **opts)
    np.testing.assert_allclose(
        tracked.embedding.weight.detach().numpy(), keras_embedding, atol=tol.atol, rtol=tol.rtol
    )
    monkeypatch.setattr(optim, "track_embeddings", lambda model: [])  # dense gradients only
    dense, _ = ft.finetune(tmodel, data, "full", new_head=False, progress=False, **opts)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(
            dense.embedding.weight.detach().numpy(), keras_embedding, atol=tol.atol, rtol=tol.rtol
        )


def _embedding_dense_keras(
    tmp_path: Path, suffix: str, steps_before: int, steps_after: int
) -> tuple:
    """Train Keras' embedding_dense with Adam a few steps, save (with optimizer), continue.
    ``suffix`` "-tf_keras.h5" writes with tf_keras (Keras 2) instead of Keras 3."""
    import keras

    from reference_keras import embedding_dense

    sizes = {"vocab_size": 300, "seq_len": 10, "embedding_dim": 4, "num_classes": 3}
    keras.utils.set_random_seed(7)
    if suffix.startswith("-tf_keras"):
        import tf_keras

        model = embedding_dense.build_keras2(**sizes)
        adam = tf_keras.optimizers.Adam(learning_rate=0.01)
    else:
        model = embedding_dense.build(**sizes)
        adam = keras.optimizers.Adam(learning_rate=0.01)
    model.compile(optimizer=adam, loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(8)
    batches = [
        (rng.integers(0, 40, (16, 10)).astype("int32"), rng.integers(0, 3, 16).astype("int32"))
        for _ in range(steps_before + steps_after)
    ]
    for x, y in batches[:steps_before]:
        model.train_on_batch(x, y)
    path = tmp_path / f"resume{suffix}"
    model.save(path)
    for x, y in batches[steps_before:]:
        model.train_on_batch(x, y)
    return path, batches[steps_before:], model.get_weights()


@needs_keras
@pytest.mark.parametrize("suffix", [".keras", ".h5", "-tf_keras.h5"])
def test_resume_from_keras_optimizer_state(suffix: str, tmp_path: Path) -> None:
    """Convert a mid-training Keras file, import its Adam state, continue: Keras' weights."""
    path, rest, final = _embedding_dense_keras(tmp_path, suffix, 4, 3)
    state = read_optimizer_state(path)
    assert state.class_name == "Adam" and state.iterations == 4
    model = parity.load_keras(path)
    opt = load_keras_optimizer(path, model)
    assert opt.iterations == 4
    fresh = optim.Adam(
        [p.detach().clone().requires_grad_() for p in model.parameters()], learning_rate=0.01
    )
    assert fresh.iterations == 0
    tap = ft.LogitsTap(model.dense)
    if not suffix.startswith("-tf_keras"):  # tf_keras' Adam treats the embedding as dense
        optim.track_embeddings(model)
    model.train()
    for x, y in rest:
        opt.zero_grad()
        probs = model(torch.from_numpy(x).long())
        losses.sparse_categorical_crossentropy(
            probs, torch.from_numpy(y), logits=tap.value
        ).backward()
        opt.step()
    tol = tolerance_for(torch.float32, "cpu", "output")
    ours = [model.embedding.weight, model.dense.weight.T, model.dense.bias]
    for o, k in zip(ours, final, strict=True):
        np.testing.assert_allclose(o.detach().numpy(), k, atol=tol.atol, rtol=tol.rtol)


def test_cli_finetune_writes_model_metrics_and_plot(tmp_path: Path) -> None:
    """`parity finetune` end to end on a tiny JSONL (no Keras needed)."""
    from parity.cli import main

    rng = np.random.default_rng(0)
    words = ["good", "bad", "love", "hate", "fun", "sad", "great", "awful"]
    data = tmp_path / "tiny.jsonl"
    with data.open("w") as f:
        for split, n in (("train", 24), ("val", 8), ("test", 8)):
            for _ in range(n):
                label = int(rng.integers(0, 2))
                text = " ".join(rng.choice(words[label::2], 4))
                f.write(json.dumps({"text": text, "label": label, "split": split}) + "\n")
    out = tmp_path / "out"
    code = main(
        [
            "finetune",
            str(WEIGHTS / "deepmoji_small.safetensors"),
            "--data",
            str(data),
            "--method",
            "chain-thaw",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--maxlen",
            "8",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["metric"] == "accuracy" and 0 <= report["test"] <= 1
    assert [s["stage"] for s in report["stages"]["model"]] == [
        "head",
        "embedding",
        "bi_lstm_0",
        "bi_lstm_1",
        "attlayer",
        "all",
    ]
    assert (out / "curve.png").stat().st_size > 1000
    model = parity.load(out / "model.safetensors")
    assert pair_of(model).name == "deepmoji"


def test_f1_threshold_is_chosen_on_validation() -> None:
    p_val = np.array([0.1, 0.2, 0.7, 0.8])
    y_val = np.array([0, 0, 1, 1])
    f1, threshold = ft.tuned_f1(p_val, y_val, np.array([0.15, 0.9]), np.array([0, 1]))
    assert 0.2 < threshold <= 0.7 and f1 == 1.0
