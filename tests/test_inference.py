"""parity.inference: the one way a converted text model runs on texts (fine-tuning's predict,
the engines' BatchScorer and the DeepMoji application go through it), and the one default text
length: the model's own when it fixes one, else parity.inference.DEFAULT_TEXT_LENGTH."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity import deepmoji_use
from parity.apps import deepmoji as app
from parity.arch import arch_of
from parity.arch.deepmoji import DeepMoji, DeepMojiConfig
from parity.inference import (
    DEFAULT_TEXT_LENGTH,
    TextFeed,
    encode_for,
    run_ids,
    run_texts,
    text_length,
)
from parity.train import loop

FIXED = Path(__file__).parent / "golden" / "deepmoji64-use.keras"  # Input(shape=(30,))
VOCAB = {w: i for i, w in enumerate(["<pad>", "<unk>", "i", "love", "you", "cooking", "mom"])}
TEXTS = ["i love you", "mom cooking", "you you you love i", ""]


def _unfixed() -> DeepMoji:
    torch.manual_seed(0)
    config = DeepMojiConfig(vocab_size=7, embedding_dim=4, hidden_size=3, num_classes=5)
    return DeepMoji(config).eval()


def test_text_length_is_the_models_else_the_one_default() -> None:
    fixed, free = parity.load_keras(FIXED), _unfixed()
    assert text_length(fixed) == 30 == text_length(fixed, 12)
    assert text_length(free) == DEFAULT_TEXT_LENGTH and text_length(free, 12) == 12
    assert encode_for(free, TEXTS, VOCAB).shape == (len(TEXTS), DEFAULT_TEXT_LENGTH)
    assert encode_for(fixed, TEXTS, VOCAB, TextFeed(maxlen=7)).shape == (len(TEXTS), 7)


def test_one_pass_gives_probs_and_encoding_and_restores_the_mode() -> None:
    model = _unfixed().train()
    got = run_texts(model, TEXTS, VOCAB, outputs=("probs", "encoding"), batch_size=3)
    assert model.training  # eval while running, its own mode after
    ids = torch.from_numpy(encode_for(model, TEXTS, VOCAB)).long()
    with torch.no_grad():
        want = model.eval()(ids)
        # the encoding is what the head reads: the head on it gives the same probabilities
        again = torch.softmax(model.softmax(torch.from_numpy(got["encoding"])), -1)
    np.testing.assert_allclose(got["probs"], want.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(again.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)
    assert got["probs"].dtype == np.float32


def test_no_texts_keeps_the_widths() -> None:
    model = _unfixed()
    got = run_texts(model, [], VOCAB, outputs=("probs", "encoding"))
    assert got["probs"].shape == (0, 5) and got["encoding"].shape == (0, 2 * 2 * 3 + 4)
    with pytest.raises(ValueError, match="outputs"):
        run_ids(model, np.zeros((1, 3), np.int64), outputs=("logits",))


def test_finetune_predict_is_the_same_run_in_float64() -> None:
    model = _unfixed()
    ids = encode_for(model, TEXTS, VOCAB)
    probs = loop.predict(model, ids, batch_size=2)
    assert probs.dtype == np.float64
    np.testing.assert_allclose(probs, run_ids(model, ids)["probs"], rtol=1e-6, atol=1e-7)


def test_token_embedding_and_head_are_the_architectures() -> None:
    model = _unfixed()
    arch = arch_of(model)
    assert arch.token_embedding(model) is model.embedding is loop.token_embedding(model)
    assert arch.head_layer(model) is model.softmax is loop.head_module(model)


def test_the_old_module_is_the_app() -> None:
    assert deepmoji_use.emojize is app.emojize and deepmoji_use.score_file is app.score_file
    assert deepmoji_use.extend_embedding is parity.train.extend_embedding
    assert deepmoji_use.DEFAULT_MAXLEN == DEFAULT_TEXT_LENGTH
    assert set(app.__all__) <= set(deepmoji_use.__all__)
    with pytest.raises(AttributeError):
        deepmoji_use.no_such_name  # noqa: B018
