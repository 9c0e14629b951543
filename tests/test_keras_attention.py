"""Keras' attention and image preprocessing layers beyond the live examples: oracles against the
formulas in numpy, call keywords in the parsed graph, refusals by name, the weight order of
every Keras writer, and what augmentation layers do in training.

The live Keras comparisons (outputs and gradients) are in tests/test_generic_layers.py: each
converter's examples, ATTENTION_CASES and IMAGE_PREPROCESSING_CASES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import parity
from parity.arch.generic import CONVERTERS
from parity.keras.graph import _calls
from parity.ports.attention import Attention, MultiHeadAttention
from parity.ports.preprocessing import RandomAugmentation, skip_augmentation_
from tests.conftest import needs_keras

RNG = np.random.default_rng(31)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_attention_equals_its_formula() -> None:
    """Luong attention with a value mask, a query mask and the causal mask, in numpy."""
    q, v = RNG.standard_normal((2, 4, 3)), RNG.standard_normal((2, 5, 3))
    q_mask = np.array([[1, 1, 1, 0], [1, 0, 1, 1]], bool)
    v_mask = np.array([[1, 1, 0, 1, 1], [0, 1, 1, 1, 1]], bool)
    scores = 1.5 * q @ v.transpose(0, 2, 1)
    allowed = v_mask[:, None, :] & np.tri(4, 5, dtype=bool)[None]
    weights = _softmax(np.where(allowed, scores, scores - 1e9))
    expected = (weights @ v) * q_mask[..., None]
    module = Attention(use_scale=True).double()
    with torch.no_grad():
        module.scale.fill_(1.5)
    t = {k: torch.from_numpy(a) for k, a in dict(q=q, v=v, qm=q_mask, vm=v_mask).items()}
    out, got = module(t["q"], t["v"], None, t["qm"], t["vm"], causal=True)
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(got.detach().numpy(), weights, atol=1e-12)


def test_multi_head_attention_equals_its_formula() -> None:
    """Projections per head, softmax(q k / sqrt(key_dim)) over unmasked steps, output
    projection; masked query rows attend uniformly (Keras 3's fused path)."""
    heads, key_dim, value_dim = 2, 3, 4
    q, v = RNG.standard_normal((2, 4, 5)), RNG.standard_normal((2, 6, 7))
    v_mask = np.array([[1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 1]], bool)
    module = MultiHeadAttention(5, 7, 7, heads, key_dim, value_dim, 5).double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(RNG.standard_normal(tuple(p.shape))))
    w = {n: p.detach().numpy() for n, p in module.named_parameters()}
    qh = np.einsum("btd,dnh->btnh", q, w["query.weight"]) + w["query.bias"]
    kh = np.einsum("bsd,dnh->bsnh", v, w["key.weight"]) + w["key.bias"]
    vh = np.einsum("bsd,dnh->bsnh", v, w["value.weight"]) + w["value.bias"]
    logits = np.einsum("btnh,bsnh->bnts", qh, kh) / np.sqrt(key_dim)
    probs = _softmax(np.where(v_mask[:, None, None, :], logits, -1e300))
    context = np.einsum("bnts,bsnh->btnh", probs, vh)
    expected = np.einsum("btnh,nho->bto", context, w["attention_output.weight"])
    expected += w["attention_output.bias"]
    out, _ = module(
        torch.from_numpy(q),
        torch.from_numpy(v),
        value_mask=torch.from_numpy(v_mask),
        mask_style="keras2-robust",  # float64 scale, replaced logits
    )
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-10)


def _tensor(name: str) -> dict[str, Any]:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}


def test_keras3_tensor_keywords_are_read_in_signature_order() -> None:
    """mha(q, key=k, value=v, use_causal_mask=True) reads [q, v, k] and records the option."""
    node = {
        "args": [_tensor("q")],
        "kwargs": {"key": _tensor("k"), "value": _tensor("v"), "use_causal_mask": True},
    }
    (call,) = _calls({"inbound_nodes": [node]}, "mha")
    assert call.args == [["q", 0, 0], ["v", 0, 0], ["k", 0, 0]]
    assert call.options == {"use_causal_mask": True}


def test_keras2_tensor_keywords_are_read_in_signature_order() -> None:
    """tf.keras writes keyword tensors as refs in the first input's kwargs."""
    node = [["q", 0, 0, {"key": ["k", 0, 0], "value": ["v", 0, 0], "use_causal_mask": True}]]
    (call,) = _calls({"inbound_nodes": [node]}, "mha")
    assert call.args == [["q", 0, 0], ["v", 0, 0], ["k", 0, 0]]
    assert call.options == {"use_causal_mask": True}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mask": [None, _tensor("m")]},  # whose mask? refused, never given to the query
        {"query_mask": _tensor("m")},
        {"attention_mask": _tensor("m")},
    ],
)
def test_explicit_attention_masks_are_refused(kwargs: dict[str, Any]) -> None:
    node = {"args": [[_tensor("q"), _tensor("v")]], "kwargs": kwargs}
    with pytest.raises(parity.ConversionError, match="tensor argument"):
        _calls({"inbound_nodes": [node]}, "attention")


MHA_SHAPES = {
    "query/kernel": (4, 2, 3),
    "key/kernel": (4, 2, 3),
    "value/kernel": (4, 2, 3),
    "attention_output/kernel": (2, 3, 4),
    "query/bias": (2, 3),
    "key/bias": (2, 3),
    "value/bias": (2, 3),
    "attention_output/bias": (4,),
}


@pytest.mark.parametrize(
    ("cls", "config", "match"),
    [
        ("MultiHeadAttention", {"attention_axes": [1, 2]}, "attention_axes"),
        ("MultiHeadAttention", {"use_gate": True}, "use_gate"),
        ("MultiHeadAttention", {"sliding_window": 4}, "sliding_window"),
        ("MultiHeadAttention", {"output_shape": [2, 2]}, "output_shape"),
        ("MultiHeadAttention", {"num_heads": 3}, "num_heads"),
        ("Attention", {"score_mode": "general"}, "score_mode"),
        ("Resizing", {"interpolation": "bicubic"}, "bicubic"),
        ("Resizing", {"interpolation": "area"}, "area"),
        ("Resizing", {"antialias": True}, "antialias"),
        ("Resizing", {"pad_to_aspect_ratio": True}, "pad_to_aspect_ratio"),
        ("Resizing", {"data_format": "channels_first"}, "channels_first"),
        ("CenterCrop", {"data_format": "channels_first"}, "channels_first"),
        ("CenterCrop", {"height": 0}, "height"),
    ],
)
def test_unsupported_options_are_refused_by_name(
    cls: str, config: dict[str, Any], match: str
) -> None:
    base = {"height": 4, "width": 4} if cls in ("Resizing", "CenterCrop") else {}
    shapes = MHA_SHAPES if cls == "MultiHeadAttention" else {}
    with pytest.raises(parity.ConversionError, match=match):
        CONVERTERS[cls].build({**base, **config}, shapes, {})


@needs_keras
def test_augmentation_refuses_training_until_skipped(tmp_path: Path) -> None:
    """Keras augments in training; the converted layers raise there rather than silently do
    nothing, until skip_augmentation_ says the pipeline augments instead."""
    import keras

    inp = keras.Input((6, 5, 3))
    out = keras.layers.RandomFlip()(keras.layers.RandomRotation(0.2)(inp))
    keras.Model(inp, keras.layers.Dense(2)(out)).save(tmp_path / "m.keras")
    model = parity.load_keras(tmp_path / "m.keras")
    x = torch.randn(2, 6, 5, 3)
    expected = model(x)
    model.train()
    with pytest.raises(RuntimeError, match=r"RandomRotation.*skip_augmentation_"):
        model(x)
    assert skip_augmentation_(model) == 2
    torch.testing.assert_close(model(x), expected)
    assert skip_augmentation_(model, "raise") == 2
    with pytest.raises(RuntimeError, match="augments"):
        model(x)


def test_keras2_random_crop_resizes_when_training_is_skipped() -> None:
    """Keras 2's RandomCrop smart-resizes at inference; skipped in training it does the same."""
    module = CONVERTERS["RandomCrop"].build({"height": 4, "width": 3, "_keras_major": 2}, {}, {})
    assert isinstance(module, RandomAugmentation)
    x = torch.randn(2, 8, 6, 3)
    expected = module.eval()(x)
    assert expected.shape == (2, 4, 3, 3)
    skip_augmentation_(module)
    torch.testing.assert_close(module.train()(x), expected)


@needs_keras
def test_multi_head_attention_weights_from_every_writer(tmp_path: Path) -> None:
    """Keras 3 stores the projections as sub-layer groups (query_dense, key_dense, ...), which
    h5py lists alphabetically; its legacy .h5 and tf.keras' .h5 list them by weight_names. All
    must give the same converted model."""
    import keras

    keras.utils.set_random_seed(32)
    q, v = keras.Input((5, 4)), keras.Input((6, 3))
    out = keras.layers.MultiHeadAttention(2, 3, value_dim=5, output_shape=6)(q, v)
    model = keras.Model([q, v], out)
    x = [RNG.standard_normal((2, 5, 4)).astype("float32"), RNG.standard_normal((2, 6, 3))]
    x[1] = x[1].astype("float32")
    expected = np.asarray(model(x))
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        converted = parity.load_keras(tmp_path / name)
        got = converted(*(torch.from_numpy(a) for a in x)).detach().numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)
