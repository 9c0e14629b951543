"""Fine-tuning: PyTorch training of a converted model follows Keras' training, step for step,
and `parity finetune` works on every converted model that takes token ids.

Live tests (keras installed) train the same converted model on the same batches in Keras
(reference_keras/finetune.py) and with parity.train, dropout off, and compare every batch
loss and the final weights; and resume Keras training from a saved optimizer state. The
registry-driven tests run `parity finetune` (last, full, chain-thaw) on every seed-zoo model that
takes token ids (converted generically from its golden .keras file) and on the bundled models,
without Keras; other file formats are written with live Keras. Longer runs on the benchmark
data: reference_keras/finetune_evidence.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity import losses, optim
from parity import train as ft
from parity.api import load_model
from parity.arch import ZOO, arch_of
from parity.check.tolerances import tolerance_for
from parity.cli import main
from parity.keras.optimizer_state import read_optimizer_state
from parity.train.resume import load_keras_optimizer
from tests.conftest import GOLDEN, REPO, SHARED_DATA, WEIGHTS, needs_keras

DEEPMOJI = WEIGHTS / "deepmoji_small.keras"
VOCAB = WEIGHTS / "vocabulary.json"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small recurrent steps: one intra-op thread is ~10x faster than two on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Records per split of the tiny tasks: a few batches, fast on two cores.
TINY = {"train": 24, "val": 8, "test": 8}
WORDS = ["good", "bad", "love", "hate", "fun", "sad", "great", "awful"]


def synthetic_lines(seed: int = 0) -> list[str]:
    """A binary JSONL task of TINY size: positive and negative words."""
    rng = np.random.default_rng(seed)
    lines = []
    for split, n in TINY.items():
        for _ in range(n):
            label = int(rng.integers(0, 2))
            text = " ".join(rng.choice(WORDS[label::2], 4))
            lines.append(json.dumps({"text": text, "label": label, "split": split}) + "\n")
    return lines


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
    tap = ft.LogitsTap(ft.head_module(model))
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
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(synthetic_lines()), encoding="utf-8")
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
    assert arch_of(model).name == "deepmoji"


def test_f1_threshold_is_chosen_on_validation() -> None:
    p_val = np.array([0.1, 0.2, 0.7, 0.8])
    y_val = np.array([0, 0, 1, 1])
    f1, threshold = ft.tuned_f1(p_val, y_val, np.array([0.15, 0.9]), np.array([0, 1]))
    assert 0.2 < threshold <= 0.7 and f1 == 1.0


# --- any converted model that takes token ids --------------------------------------------------

#: The bundled models (registered pairs), fine-tuned beside the zoo.
BUNDLED = {"deepmoji": DEEPMOJI, "embedding_dense": WEIGHTS / "embedding_dense.keras"}


def takes_token_ids(name: str) -> bool:
    """A zoo model whose first weighted layer is an Embedding reads token ids."""
    return ZOO[name].keras_layers[0][1] == "Embedding"


#: Every seed-zoo model that takes token ids (its golden file, converted generically) and the
#: bundled models: name -> Keras file.
MODELS = {
    **{name: GOLDEN / f"{name}-init-float32.keras" for name in ZOO if takes_token_ids(name)},
    **BUNDLED,
}
METHODS_TESTED = ("last", "full", "chain-thaw")
#: The real benchmark a few dozen lines are taken from (accuracy is its metric).
BENCHMARK = "SS-Youtube"
#: The zoo model run as a user runs it, in a subprocess and from other file formats.
ZOO_EXAMPLE = "bilstm_classifier"


@pytest.fixture(scope="module")
def tiny_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first TINY records per split of a real benchmark (../shared), else synthetic ones."""
    source = SHARED_DATA / f"{BENCHMARK}.jsonl"
    lines = []
    if source.is_file():
        left = dict(TINY)
        with source.open(encoding="utf-8") as f:
            for line in f:
                split = json.loads(line)["split"]
                if left.get(split, 0) > 0:
                    left[split] -= 1
                    lines.append(line)
    else:
        lines = synthetic_lines()
    path = tmp_path_factory.mktemp("data") / f"{BENCHMARK}.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def finetune_args(model: Path, data: Path, out: Path, method: str, *extra: str) -> list[str]:
    return [
        "finetune",
        str(model),
        "--data",
        str(data),
        "--vocab",
        str(VOCAB),
        "--method",
        method,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--maxlen",
        "12",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_every_model_has_a_file() -> None:
    """A zoo entry joins the matrix below by its registry entry alone; its golden model file
    must exist."""
    missing = [str(path) for path in MODELS.values() if not path.is_file()]
    assert not missing, f"no model file (python -m tests.golden_cases writes them): {missing}"


@pytest.mark.parametrize("method", METHODS_TESTED)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_finetune_any_model(
    name: str, method: str, tiny_jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`parity finetune` on each model: exit 0, no traceback, outputs written; the new head
    trained, the body unchanged in `last`, the mapping's fixed parameters constant."""
    out = tmp_path / "out"
    code = main(finetune_args(MODELS[name], tiny_jsonl, out, method))
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    report = json.loads((out / "metrics.json").read_text())
    assert (out / "curve.png").stat().st_size > 1000
    assert report["metric"] == "accuracy" and 0 <= report["test"] <= 1
    start = load_model(MODELS[name])
    arch = arch_of(start)
    torch.manual_seed(report["options"]["seed"])  # the head `finetune` started from
    fresh = ft.with_new_head(start, report["num_classes"])
    head = arch.head(start)
    planned = ft.plan(arch.layer_groups(fresh), head, method)
    assert [s["stage"] for s in report["stages"]["model"]] == [s.name for s in planned]
    tuned = parity.load(out / "model.safetensors")
    assert arch_of(tuned).name == arch.name
    before, after = fresh.state_dict(), tuned.state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith(f"{head}.") for k in changed), "the head did not train"
    fixed = {t for k, t, _ in arch.mapping(fresh) if k is None}  # constants Keras does not have
    assert not changed & fixed, f"constants moved: {changed & fixed}"
    body = {k for k in changed if not k.startswith(f"{head}.")}
    if method == "last":
        assert not body, f"frozen layers changed: {body}"
    else:
        assert body, "the body did not train"


def test_python_api_leaves_the_model_alone(tiny_jsonl: Path) -> None:
    """finetune() trains a copy with a new head; the converted model is not touched."""
    model = parity.load_keras(MODELS[ZOO_EXAMPLE])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vocab = parity.text.load_vocabulary(VOCAB)
    embedding = ft.token_embedding(model)
    data = ft.encode_dataset(ft.read_jsonl(tiny_jsonl), vocab, 12, embedding.num_embeddings)
    tuned, history = ft.finetune(model, data, "last", epochs=1, batch_size=8, progress=False)
    assert tuned is not model and len(history.stages) == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert ft.predict(tuned, data.ids["test"]).shape == (len(data.ids["test"]), 1)


def test_cli_in_a_subprocess(tiny_jsonl: Path, tmp_path: Path) -> None:
    """The command as a user runs it, on a generically converted zoo model."""
    out = tmp_path / "out"
    args = finetune_args(MODELS[ZOO_EXAMPLE], tiny_jsonl, out, "last")
    proc = subprocess.run(
        [sys.executable, "-m", "parity", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "test accuracy" in proc.stdout
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "metrics.json", "curve.png"}


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_cli_errors_are_one_line(
    tiny_jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = MODELS[ZOO_EXAMPLE]
    bad_data = tmp_path / "bad.jsonl"
    bad_data.write_text('{"text": "no label"}\n', encoding="utf-8")
    err = _one_line_error(capsys, main(finetune_args(model, bad_data, tmp_path / "o", "last")))
    assert "text, label and split" in err
    code = main([*finetune_args(model, tiny_jsonl, tmp_path / "o", "last")[:2], "--data", "x"])
    assert "vocabulary.json" in _one_line_error(capsys, code)


def _keras_sequential(tmp_path: Path, name: str, layers: list) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(layers, name=name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return path


@needs_keras
def test_models_that_cannot_be_fine_tuned_get_one_line(
    tiny_jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No Embedding input, no Dense head: `parity finetune` says which, in one line."""
    import keras

    numeric = _keras_sequential(
        tmp_path, "numeric", [keras.Input((12,)), keras.layers.Dense(1, activation="sigmoid")]
    )
    code = main(finetune_args(numeric, tiny_jsonl, tmp_path / "o", "last"))
    assert "does not take token ids" in _one_line_error(capsys, code)
    headless = _keras_sequential(
        tmp_path,
        "headless",
        [
            keras.Input((12,), dtype="int32"),
            keras.layers.Embedding(60, 4),
            keras.layers.GlobalAveragePooling1D(),
        ],
    )
    code = main(finetune_args(headless, tiny_jsonl, tmp_path / "o", "last"))
    assert "no classifier head" in _one_line_error(capsys, code)


@needs_keras
def test_frozen_batch_normalization_keeps_its_statistics(tiny_jsonl: Path, tmp_path: Path) -> None:
    """As in Keras (a BatchNormalization with trainable=False runs in inference mode), a
    frozen BatchNormalization neither uses nor updates batch statistics in `last`."""
    import keras

    path = _keras_sequential(
        tmp_path,
        "with_bn",
        [
            keras.Input((12,), dtype="int32"),
            keras.layers.Embedding(60, 4, name="embedding"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1, activation="sigmoid", name="output"),
        ],
    )
    model = parity.load_keras(path)
    data = ft.encode_dataset(ft.read_jsonl(tiny_jsonl), parity.text.load_vocabulary(VOCAB), 12, 60)
    tuned, _ = ft.finetune(model, data, "last", epochs=1, batch_size=8, progress=False)
    for key, value in model.norm.state_dict().items():
        torch.testing.assert_close(tuned.norm.state_dict()[key], value, rtol=0, atol=0)


def _write_format(fmt: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """The zoo example written as ``fmt`` with live Keras: (model file, extra CLI arguments)."""
    import importlib

    import keras

    from tests.golden_cases import ZOO_SIZES, ZOO_SMALL

    module = importlib.import_module(f"reference_keras.{ZOO_EXAMPLE}")
    sizes = {**ZOO_SMALL, **ZOO_SIZES[ZOO_EXAMPLE]}
    keras.utils.set_random_seed(3)
    if fmt == "tf_keras.h5":
        path = tmp_path / "zoo-tf_keras.h5"
        module.build_keras2(**sizes).save(path)
        return path, []
    model = module.build(**sizes)
    if fmt == "keras3.h5":
        path = tmp_path / "zoo.h5"
        model.save(path)
        return path, []
    companion = tmp_path / "zoo.keras"
    model.save(companion)
    path = tmp_path / "zoo.weights.h5"
    model.save_weights(path)
    return path, ["--config", str(companion)]


@pytest.mark.parametrize(
    "fmt",
    [
        "safetensors",
        pytest.param("keras3.h5", marks=needs_keras),
        pytest.param("tf_keras.h5", marks=needs_keras),
        pytest.param("weights.h5", marks=needs_keras),
    ],
)
def test_finetune_from_every_format(
    fmt: str, tiny_jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A parity.save file, legacy .h5 from Keras 3 and tf_keras, .weights.h5 with --config."""
    if fmt == "safetensors":
        path, extra = tmp_path / "zoo.safetensors", []
        parity.save(parity.load_keras(MODELS[ZOO_EXAMPLE]), path)
    else:
        path, extra = _write_format(fmt, tmp_path)
    out = tmp_path / "out"
    code = main(finetune_args(path, tiny_jsonl, out, "last", *extra))
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert arch_of(parity.load(out / "model.safetensors")).name == "generic"


def _zoo_keras(tmp_path: Path, steps_before: int, steps_after: int) -> tuple:
    """Train the zoo example (3 classes) a few steps with Keras 3's Adam, save with the
    optimizer, continue."""
    import importlib

    import keras

    from tests.golden_cases import ZOO_SIZES, ZOO_SMALL

    module = importlib.import_module(f"reference_keras.{ZOO_EXAMPLE}")
    keras.utils.set_random_seed(9)
    model = module.build(**{**ZOO_SMALL, **ZOO_SIZES[ZOO_EXAMPLE]})
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy"
    )
    rng = np.random.default_rng(10)
    batches = [
        (rng.integers(1, 60, (8, 10)).astype("int32"), rng.integers(0, 3, 8).astype("int32"))
        for _ in range(steps_before + steps_after)
    ]
    for x, y in batches[:steps_before]:
        model.train_on_batch(x, y)
    path = tmp_path / "resume.keras"
    model.save(path)
    for x, y in batches[steps_before:]:
        model.train_on_batch(x, y)
    return path, batches[steps_before:], model


@needs_keras
def test_resume_a_generic_model_from_keras_optimizer_state(tmp_path: Path) -> None:
    """The optimizer state maps through the generic model's mapping table (bidirectional LSTMs:
    forward then backward, bias_hh left out): continuing in torch reaches Keras' weights. (The
    legacy .h5 layouts are the pair tests' above: the file reader is shared.)"""
    path, rest, kmodel = _zoo_keras(tmp_path, 3, 3)
    model = parity.load_keras(path)
    opt = load_keras_optimizer(path, model)
    assert opt.iterations == 3
    tap = ft.LogitsTap(ft.head_module(model))
    optim.track_embeddings(model)  # Keras 3 on TensorFlow: per-occurrence embedding gradients
    model.train()
    for x, y in rest:
        opt.zero_grad()
        probs = model(torch.from_numpy(x).long())
        losses.sparse_categorical_crossentropy(
            probs, torch.from_numpy(y), logits=tap.value
        ).backward()
        opt.step()
    final = tmp_path / "final.keras"
    kmodel.save(final)  # Keras' weights after training, converted by the same mapping
    keras_final = dict(parity.load_keras(final).named_parameters())
    tol = tolerance_for(torch.float32, "cpu", "gradient")
    for name, p in model.named_parameters():
        np.testing.assert_allclose(
            p.detach().numpy(), keras_final[name].detach().numpy(), atol=tol.atol, rtol=tol.rtol
        )
    fixed = {t for k, t, _ in arch_of(model).mapping(model) if k is None}
    buffers = dict(model.named_buffers())
    assert fixed and fixed <= buffers.keys() and not any(buffers[n].any() for n in fixed)
