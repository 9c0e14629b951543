"""parity.deepmoji_use and `parity deepmoji` on a 64-class DeepMoji built by reference_keras.

The model is small (300 words, 16-dim embedding, 2x8 BiLSTMs, 64 classes) with its softmax and
embedding scaled up so the emoji probabilities are far from uniform. tests/golden/deepmoji64-use
.keras is that Keras model; deepmoji64-use.npz holds Keras' probabilities and attention-pooled
features (the layer "attlayer" DeepMoji's feature encoding returns) for TEXTS, and the first 300
words of DeepMoji's vocabulary. Regenerate both with ``python -m tests.test_deepmoji_use``
(needs keras and ../shared); the live test recomputes Keras' numbers and cross-checks them.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity import deepmoji_use as du
from parity.apps.deepmoji import scoring
from parity.cli import main as cli_main
from parity.text import encode
from tests.conftest import needs_keras

GOLDEN = Path(__file__).parent / "golden"
MODEL = GOLDEN / "deepmoji64-use.keras"
NUMBERS = GOLDEN / "deepmoji64-use.npz"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "deepmoji_benchmarks"
SIZES = {"vocab_size": 300, "embedding_dim": 16, "hidden_size": 8, "num_classes": 64}
MAXLEN = 30
TEXTS = [
    "I love mom's cooking",
    "I love how you never reply back..",
    "I love cruising with my homies",
    "I love messing with yo mind!!",
    "I love you and now you're just gone..",
    "This is shit",
    "This is the shit",
    "what a great day :) #happy",
    "so sad right now, can't believe it",
    "@friend you are the BEST!!!! <3",
    "",
]
#: float32 port vs Keras: the project's output tolerances (parity/check/tolerances.py).
ATOL, RTOL = 1e-6, 1e-5


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(NUMBERS) as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="module")
def vocab(golden) -> dict[str, int]:
    return {w: i for i, w in enumerate(golden["vocab_words"].tolist())}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return parity.load_keras(MODEL)


def test_encoding_is_deepmojis(golden, vocab) -> None:
    ids = encode(
        TEXTS, vocab, MAXLEN, vocab_size=SIZES["vocab_size"], padding="post", truncating="post"
    )
    np.testing.assert_array_equal(ids, golden["ids"])


def test_emojize_gives_keras_top_k_and_probabilities(golden, vocab, model) -> None:
    got = du.emojize(model, TEXTS, vocab, k=5)
    want_idx, want_p = du.top_k(golden["probs"], 5)
    for row, idx, p in zip(got, want_idx, want_p, strict=True):
        assert [e for e, _ in row] == [du.EMOJIS[i] for i in idx]
        np.testing.assert_allclose([q for _, q in row], p, atol=ATOL, rtol=RTOL)
    probs = du.predict(model, TEXTS, vocab)
    np.testing.assert_allclose(probs, golden["probs"], atol=ATOL, rtol=RTOL)
    # margins that make the top-5 order a fair test (the empty text: 64 equal probabilities)
    assert np.min(np.diff(np.sort(golden["probs"][:-1])[:, -6:], axis=1)) > 10 * ATOL


def test_features_are_kerass_attention_output(golden, vocab, model) -> None:
    feats = du.encode_texts(model, TEXTS, vocab, batch_size=4)
    assert feats.shape == (len(TEXTS), 2 * 2 * SIZES["hidden_size"] + SIZES["embedding_dim"])
    np.testing.assert_allclose(feats, golden["features"], atol=ATOL, rtol=RTOL)
    # the features are what the classifier reads
    logits = model.softmax(torch.from_numpy(feats))
    np.testing.assert_allclose(torch.softmax(logits, -1).detach(), golden["probs"], atol=1e-6)


def test_no_texts(vocab, model) -> None:
    assert du.emojize(model, [], vocab) == []
    assert du.encode_texts(model, [], vocab).shape == (0, 48)


def test_top_k_order_and_ties() -> None:
    probs = np.array([[0.1, 0.4, 0.1, 0.4], [0.7, 0.1, 0.1, 0.1]])
    idx, p = du.top_k(probs, 3)
    np.testing.assert_array_equal(idx, [[1, 3, 0], [0, 1, 2]])
    np.testing.assert_array_equal(p, [[0.4, 0.4, 0.1], [0.7, 0.1, 0.1]])
    assert du.top_k(probs, 10)[0].shape == (2, 4)


def test_emoji_list_is_deepmojis() -> None:
    assert len(du.EMOJIS) == 64 == len(set(du.EMOJIS))
    assert du.EMOJIS[0] == "\U0001f602" and du.EMOJIS[-1] == "\u2728"
    shared = SHARED / "emoji_unicode.csv"
    if shared.is_file():
        assert du.load_emojis(shared) == du.EMOJIS


def test_wrong_emoji_list_is_refused(vocab, model) -> None:
    with pytest.raises(ValueError, match="64 classes but 3 emoji"):
        du.emojize(model, ["hi"], vocab, emojis=["a", "b", "c"])


def _write_inputs(tmp_path: Path) -> dict[str, Path]:
    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    csv_in = tmp_path / "in.csv"
    with csv_in.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([i, t] for i, t in enumerate(TEXTS))
    return {"txt": txt, "jsonl": jsonl, "csv": csv_in}


@pytest.mark.parametrize("src_kind", ["txt", "jsonl", "csv"])
def test_score_file_streams_in_batches(tmp_path, monkeypatch, golden, vocab, model, src_kind):
    src = _write_inputs(tmp_path)[src_kind]
    seen: list[int] = []
    run = scoring.run

    def spy(m, texts, vocabulary, **options):
        seen.append(len(texts))
        return run(m, texts, vocabulary, **options)

    monkeypatch.setattr(scoring, "run", spy)
    out = tmp_path / "out.jsonl"
    n = du.score_file(model, vocab, src, out, batch_size=4, features=True, progress=False)
    assert n == len(TEXTS) and max(seen) <= 4  # one batch of texts in memory at a time
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    want_idx, want_p = du.top_k(golden["probs"], 5)
    for rec, text, idx, p, f in zip(recs, TEXTS, want_idx, want_p, golden["features"], strict=True):
        assert rec["text"] == text
        assert rec["emojis"] == [du.EMOJIS[i] for i in idx]
        np.testing.assert_allclose(rec["probs"], p, atol=2e-6)
        np.testing.assert_allclose(rec["features"], f, atol=1e-6, rtol=1e-5)


def test_score_file_csv_output(tmp_path, golden, vocab, model) -> None:
    src = _write_inputs(tmp_path)["txt"]
    out = tmp_path / "out.csv"
    du.score_file(model, vocab, src, out, k=3, progress=False)
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == TEXTS
    idx, p = du.top_k(golden["probs"], 3)
    assert [r["emoji_1"] for r in rows] == [du.EMOJIS[i] for i in idx[:, 0]]
    np.testing.assert_allclose([float(r["top_k_total"]) for r in rows], p.sum(1), atol=1e-5)
    with pytest.raises(ValueError, match="must end in"):
        du.score_file(model, vocab, src, tmp_path / "out.xlsx")
    assert not list(tmp_path.glob(".*.tmp"))


def _vocab_file(tmp_path: Path, vocab: dict[str, int]) -> Path:
    path = tmp_path / "vocabulary.json"
    path.write_text(json.dumps(vocab), encoding="utf-8")
    return path


def test_cli_emojize_and_score(tmp_path, capsys, golden, vocab) -> None:
    vpath = _vocab_file(tmp_path, vocab)
    args = ["--model", str(MODEL), "--vocab", str(vpath)]
    assert cli_main(["deepmoji", "emojize", TEXTS[0], TEXTS[5], "--json", *args]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    idx, _ = du.top_k(golden["probs"][[0, 5]], 5)
    assert [rec["emojis"] for rec in lines] == [[du.EMOJIS[i] for i in row] for row in idx]
    src = _write_inputs(tmp_path)["jsonl"]
    out = tmp_path / "scores.csv"
    assert cli_main(["deepmoji", "score", str(src), str(out), "--quiet", *args]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(TEXTS) + 1
    bad = tmp_path / "emoji.csv"
    bad.write_text("\\U0001f602,1f602\n", encoding="utf-8")
    assert cli_main(["deepmoji", "emojize", "hi", "--emojis", str(bad), *args]) == 1
    assert "64 classes but 1 emoji" in capsys.readouterr().err


def test_extend_embedding_keras_init_and_round_trip(tmp_path, model) -> None:
    model = parity.load_keras(MODEL)
    old = model.embedding.weight.detach().clone()
    du.extend_embedding(model, 40, generator=torch.Generator().manual_seed(0))
    new = model.embedding.weight.detach()
    assert new.shape == (340, 16) and model.config.vocab_size == 340
    torch.testing.assert_close(new[:300], old, rtol=0, atol=0)
    assert new[300:].abs().max() <= 0.05 and new[300:].std() > 0.02  # U(-0.05, 0.05)
    parity.save(model, tmp_path / "m.safetensors")
    again = parity.load(tmp_path / "m.safetensors")
    torch.testing.assert_close(again.embedding.weight, model.embedding.weight)
    ids = torch.tensor([[5, 339, 12, 0]])
    torch.testing.assert_close(again(ids), model(ids))
    with pytest.raises(ValueError, match=">= 0"):
        du.extend_embedding(model, -1)


def test_finetune_with_vocabulary_extension_end_to_end(tmp_path, vocab) -> None:
    """`parity finetune --extend-vocab`: new training words get new embedding rows (trained),
    the extended vocabulary is written beside the model, and the saved model loads."""
    rng = np.random.default_rng(0)
    words = ["zorblax", "quintessa", "flumph", "grobnar"]
    lines = []
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        for i in range(n):
            label = int(rng.integers(2))
            text = f"the {words[label * 2 + i % 2]} is {'good' if label else 'bad'}"
            lines.append(json.dumps({"text": text, "label": label, "split": split}))
    data = tmp_path / "task.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    vpath = _vocab_file(tmp_path, vocab)
    out = tmp_path / "out"
    argv = ["finetune", str(MODEL), "--data", str(data), "--vocab", str(vpath), "--method"]
    argv += ["full", "--epochs", "1", "--batch-size", "8", "--extend-vocab", "3"]
    argv += ["--out", str(out), "--quiet", "--maxlen", "10", "--threads", "1"]
    assert cli_main(argv) == 0
    extended = parity.text.load_vocabulary(out / "vocabulary.json")
    added = sorted(w for w in extended if w not in vocab)
    assert len(extended) == len(vocab) + 3 and set(added) <= set(words)
    tuned = parity.load(out / "model.safetensors")
    assert tuned.embedding.num_embeddings == len(vocab) + 3 == tuned.config.vocab_size
    ids = encode([f"the {added[0]}"], extended, 10, vocab_size=tuned.config.vocab_size)
    assert ids.max() >= len(vocab)  # the new word has its own row, not the unknown id
    assert json.loads((out / "metrics.json").read_text())["records"]["train"] == 24


# --- Keras: the golden numbers, recomputed ---------------------------------------------------


def _keras_numbers(keras_model, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import keras

    feats_model = keras.Model(keras_model.inputs, keras_model.get_layer("attlayer").output)
    probs = np.asarray(keras_model.predict_on_batch(ids))
    return probs, np.asarray(feats_model.predict_on_batch(ids))


@needs_keras
@pytest.mark.keras
def test_live_keras_top_k_and_features_match_the_port(golden, vocab, model) -> None:
    import keras

    from reference_keras import deepmoji

    keras_model = keras.models.load_model(
        MODEL, custom_objects=deepmoji.CUSTOM_OBJECTS, compile=False
    )
    probs, feats = _keras_numbers(keras_model, golden["ids"])
    np.testing.assert_allclose(probs, golden["probs"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(feats, golden["features"], atol=ATOL, rtol=RTOL)
    got = du.emojize(model, TEXTS, vocab, k=5)
    assert [[e for e, _ in row] for row in got] == [
        [du.EMOJIS[i] for i in row] for row in du.top_k(probs, 5)[0]
    ]
    np.testing.assert_allclose(du.encode_texts(model, TEXTS, vocab), feats, atol=ATOL, rtol=RTOL)


def make_golden() -> None:
    """Build the Keras model, write MODEL and NUMBERS (needs keras and ../shared)."""
    import keras

    from parity.text import load_vocabulary
    from reference_keras import deepmoji

    keras.utils.set_random_seed(64)
    keras_model = deepmoji.build(**SIZES, seq_len=MAXLEN)
    for layer, scale in (("embedding", 20.0), ("softmax", 25.0)):
        weights = keras_model.get_layer(layer).get_weights()
        keras_model.get_layer(layer).set_weights([weights[0] * scale, *weights[1:]])
    keras_model.save(MODEL)
    full = load_vocabulary(SHARED / "vocabulary.json")
    words = sorted((i, w) for w, i in full.items() if i < SIZES["vocab_size"])
    vocab = {w: i for i, w in words}
    ids = encode(
        TEXTS, vocab, MAXLEN, vocab_size=SIZES["vocab_size"], padding="post", truncating="post"
    )
    probs, feats = _keras_numbers(keras_model, ids)
    np.savez_compressed(
        NUMBERS,
        vocab_words=np.array([w for _, w in words]),
        ids=ids,
        probs=probs,
        features=feats,
        keras_version=np.array(keras.__version__),
    )
    print(f"wrote {MODEL} and {NUMBERS}", file=sys.stderr)


if __name__ == "__main__":
    make_golden()
