"""Keras' text preprocessing layers converted (parity.ports.text_preprocessing) against live
TensorFlow/Keras: every id must be TensorFlow's, on DeepMoji's eight benchmark datasets and on
adversarial Unicode; hashes against TensorFlow's own; model files (.keras) converted and run on
strings; hostile vocabulary assets refused by name."""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity.errors import ConversionError
from parity.keras.read import read_model_config
from parity.ports import CONVERTERS
from parity.ports.text_preprocessing import VOCABULARY_KEY, parse_vocabulary_file
from parity.text import tf_hash, tf_strings
from tests.conftest import SHARED_DATA, needs_shared

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Every Unicode whitespace and line break, and characters that look like one.
UNICODE_SPACES = "".join(
    chr(c)
    for c in [
        *(9, 10, 11, 12, 13, 32, 0x1C, 0x1D, 0x1E, 0x1F, 0x85, 0xA0, 0x1680),
        *range(0x2000, 0x200C),
        *(0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x180E, 0x200B, 0xFEFF),
    ]
)
ADVERSARIAL: list[str | bytes] = [
    "",
    " ",
    "e\u0301te\u0301 cafe\u0301 CAFÉ Café",  # combining acute vs precomposed
    "İstanbul ISTANBUL ıi İI",  # noqa: RUF001 (Turkish dotted/dotless I)
    "Straße STRASSE ẞ ß",  # German sharp s
    "ΟΔΥΣΣΕΥΣ οδυσσευς ς Σ",  # Greek final sigma
    "ＦＵＬＬ！ｗｉｄｔｈ，punct。「ok」",  # noqa: RUF001 (full-width punctuation)
    "👨‍👩‍👧 family zwj\u200djoin\u200cnon",  # zero-width joiners
    "שלום עולם مرحبا بالعالم \u202ertl\u202c",  # RTL scripts and overrides
    "👍🏽 👍🏿 thumbs👍🏻up 🏳️‍🌈",  # skin tones, flag sequence
    "nul\x00byte a\x00 \x00",
    "x" * 5000,  # a very long token
    ("word " * 300).strip(),  # a long text
    f"a{UNICODE_SPACES}b{UNICODE_SPACES}c",
    "tab\tnew\nline\rcr\vvt\fff  double  space ",
    "MiXeD CaSe!!! ...dots... (parens) [brackets] {braces} \"quotes\" 'single' `back`",
    "a-b_c.d,e;f:g?h!i@j#k$l%m^n&o*p+q=r<s>t/u\\v|w~x",
    "\u00a0nbsp\u00a0 \u3000ideographic\u3000",
    "Ǆǅǆ ǇǈǉΆΈ Ω Å K",  # titlecase digraphs, Ohm/Angstrom/Kelvin signs
    "\U0001d400\U0001d401 mathematical bold",
    b"invalid \xff\xfe utf8 \xc3 trunc \xe2\x82 \xed\xa0\x80 surrogate \xc0\x80 overlong",
    b"\xf4\x90\x80\x80 beyond \xf8\x88\x80\x80\x80 five",
    "ＡＢＣ ａｂｃ ⅠⅡⅢ ⓐⓑ",  # noqa: RUF001 (full-width and enclosed letters)
]

STANDARDIZE = (None, "lower", "strip_punctuation", "lower_and_strip_punctuation")
SPLITS = ("whitespace", "character", None)
NGRAMS = (None, 2, (1, 3))


@pytest.fixture(scope="module")
def tf():
    tf = pytest.importorskip("tensorflow")
    return tf


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _texts() -> list[str | bytes]:
    texts: list[str | bytes] = []
    if SHARED_DATA.exists():
        for path in sorted(SHARED_DATA.glob("*.jsonl")):
            with open(path, encoding="utf-8") as handle:
                texts += [json.loads(line)["text"] for line in handle]
    return texts + ADVERSARIAL


def _as_tf_input(texts):
    return np.array([t if isinstance(t, bytes) else t.encode() for t in texts], dtype=object)


def _table_tokens(keras_layer) -> list:
    """The tokens of a layer's TensorFlow table by index: get_vocabulary() goes through a numpy
    str array, which drops a token's trailing NUL characters."""
    lookup = getattr(keras_layer, "_lookup_layer", keras_layer)
    keys, values = lookup.lookup_table.export()
    keys, values = keys.numpy().tolist(), values.numpy().tolist()
    if lookup.invert:
        keys, values = values, keys
    ordered = [k for _, k in sorted(zip(values, keys, strict=True))]
    return [k.decode() if isinstance(k, bytes) else k for k in ordered]


def _converted(keras_layer, cls: str):
    """Our module built as conversion builds it: the layer's config, its vocabulary as Keras
    reports it, and its stored variables (idf_weights)."""
    config = keras_layer.get_config() | {"_class": cls}
    config[VOCABULARY_KEY] = _table_tokens(keras_layer)
    store: dict = {}
    keras_layer.save_own_variables(store)
    shapes = {k: tuple(np.asarray(v).shape) for k, v in store.items()}
    if "idf_weights" in shapes:
        shapes["lookup_idf_weights"] = shapes["idf_weights"]
    module = CONVERTERS[cls].build(config, shapes, {})
    if "idf_weights" in store:
        for name, buffer in module.named_buffers():
            if "idf" in name:
                buffer.copy_(torch.from_numpy(np.asarray(store["idf_weights"])))
    return module


# --- the string ops on their own ---------------------------------------------------------------


def test_lower_and_split_facts_match_tf(tf):
    """tf.strings.lower is ASCII-only; tf.strings.split splits on ASCII whitespace only;
    unicode_split replaces invalid sequences per maximal subpart."""
    samples = [t if isinstance(t, bytes) else t.encode() for t in ADVERSARIAL]
    lowered = tf.strings.lower(samples).numpy().tolist()
    assert lowered == [tf_strings.standardize(s, "lower") for s in samples]
    stripped = tf.strings.regex_replace(
        samples, r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']', ""
    ).numpy()
    assert stripped.tolist() == [tf_strings.standardize(s, "strip_punctuation") for s in samples]
    assert tf.strings.split(samples).to_list() == [tf_strings.split_whitespace(s) for s in samples]
    chars = tf.strings.unicode_split(samples, "UTF-8").to_list()
    assert chars == [tf_strings.split_characters(s) for s in samples]
    # every single code point's whitespace status, not only the listed ones
    probe = [f"a{chr(c)}b".encode() for c in range(0x3001) if not 0xD800 <= c < 0xE000]
    assert tf.strings.split(probe).to_list() == [tf_strings.split_whitespace(s) for s in probe]


def test_fingerprint64_matches_tf_at_every_length(tf):
    rng = np.random.default_rng(0)
    data = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in range(301)]
    data += [b"a" * n for n in range(301)] + ["é".encode() * n for n in range(150)]
    found = tf.fingerprint(tf.constant(data)).numpy()
    expected = [int.from_bytes(bytes(row), "little") for row in found]
    assert [tf_hash.fingerprint64(d) for d in data] == expected
    buckets = tf.strings.to_hash_bucket_fast(data, 1_000_003).numpy().tolist()
    assert [tf_hash.hash_bucket_fast(d, 1_000_003) for d in data] == buckets


@pytest.mark.parametrize("key", [(133, 137), (0, 0), (-1, 2**62 + 3), (2**63 - 1, -(2**63))])
def test_siphash_matches_tf_strong_hash(tf, key):
    rng = np.random.default_rng(1)
    data = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in range(0, 301, 3)]
    found = tf.strings.to_hash_bucket_strong(data, 2**63 - 1, list(key)).numpy().tolist()
    assert [tf_hash.hash_bucket_strong(d, 2**63 - 1, key) for d in data] == found


# --- TextVectorization against live Keras ------------------------------------------------------


def _compare_text_vectorization(keras, texts, adapt_on, **kwargs):
    layer = keras.layers.TextVectorization(**kwargs)
    # A token that is not UTF-8 cannot be in a vocabulary (Keras' get_vocabulary and save fail
    # on one), so invalid bytes are only looked up, never adapted on.
    layer.adapt(_as_tf_input([t for t in adapt_on if isinstance(t, str)]))
    ours = _converted(layer, "TextVectorization")
    # (B, 1), as a model's string Input feeds it (a rank-1 batch breaks split=None in Keras)
    expected = np.asarray(layer(_as_tf_input(texts)[:, None]))
    found = ours(_as_tf_input(texts)[:, None]).numpy()
    assert found.shape == expected.shape
    bad = np.flatnonzero((found != expected).reshape(len(texts), -1).any(axis=1))
    assert bad.size == 0, f"{bad.size} texts differ, first {texts[bad[0]]!r}"


#: Every standardize x split without n-grams; n-grams with the two extreme standardize modes.
GRID = [(st, sp, None) for st in STANDARDIZE for sp in SPLITS] + [
    (st, sp, ng) for st in (None, STANDARDIZE[-1]) for sp in SPLITS for ng in NGRAMS[1:]
]


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize(("standardize", "split", "ngrams"), GRID)
def test_text_vectorization_ids_on_deepmoji_texts(keras, standardize, split, ngrams):
    """Zero differences in ids on all 25,434 benchmark texts plus the adversarial ones, the
    vocabulary adapted on a subset (so OOV tokens occur), capped by max_tokens."""
    texts = _texts()
    _compare_text_vectorization(
        keras,
        texts,
        texts[::13] + ADVERSARIAL,
        standardize=standardize,
        split=split,
        ngrams=ngrams,
        max_tokens=3000,
        output_sequence_length=40,
    )


@pytest.mark.parametrize("mode", ["multi_hot", "count", "tf_idf"])
@pytest.mark.parametrize("pad", [False, True])
def test_text_vectorization_encodings(keras, mode, pad):
    texts = _texts()[::7]
    _compare_text_vectorization(
        keras,
        texts,
        texts[::5],
        output_mode=mode,
        max_tokens=500,
        pad_to_max_tokens=pad,
        ngrams=2,
    )


def test_text_vectorization_pads_to_batch_longest_without_length(keras):
    texts = [*ADVERSARIAL, "one", "two words"]
    _compare_text_vectorization(keras, texts, texts, max_tokens=50)


def test_text_vectorization_refuses_what_it_cannot_reproduce():
    build = CONVERTERS["TextVectorization"].build
    base = {"_class": "TextVectorization", VOCABULARY_KEY: ["", "[UNK]", "a"]}
    with pytest.raises(ConversionError, match="custom standardize"):
        build(base | {"standardize": "my_fn"}, {}, {})
    with pytest.raises(ConversionError, match="sparse=True"):
        build(base | {"sparse": True, "output_mode": "multi_hot"}, {}, {})
    with pytest.raises(ConversionError, match="ragged=True"):
        build(base | {"ragged": True}, {}, {})
    with pytest.raises(ConversionError, match="only UTF-8"):
        build(base | {"encoding": "latin-1"}, {}, {})
    # sizes the module would allocate (B, size) outputs from
    with pytest.raises(ConversionError, match="output_sequence_length"):
        build(base | {"output_sequence_length": 2**31}, {}, {})
    with pytest.raises(ConversionError, match="max_tokens"):
        build(base | {"max_tokens": 2**30, "pad_to_max_tokens": True}, {}, {})
    with pytest.raises(ConversionError, match="num_bins"):
        CONVERTERS["Hashing"].build({"num_bins": 2**30, "output_mode": "count"}, {}, {})
    with pytest.raises(ConversionError, match="ngrams"):
        build(base | {"ngrams": [1, 10**9]}, {}, {})
    with pytest.raises(ConversionError, match="stores no vocabulary"):
        build({"_class": "TextVectorization", "vocabulary": None}, {}, {})
    with pytest.raises(ConversionError, match="file path"):
        build({"_class": "TextVectorization", "vocabulary": "/etc/vocab.txt"}, {}, {})
    module = build(base | {"standardize": None, "split": "whitespace"}, {}, {})
    with pytest.raises(ValueError, match="surrogate"):
        module(["lone \ud800 surrogate"])


# --- the lookup layers and Hashing against live Keras ------------------------------------------

WORDS = ["the", "cat", "sat", "é", "İ", "", "[UNK]x", "👍🏽", "a b"]
PROBES = np.array(
    [["the"], ["dog"], ["é"], [""], ["zzz"], ["👍🏽"], ["a b"], ["unk"], ["İ"], ["cat"]]
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_oov_indices": 3},
        {"num_oov_indices": 5, "salt": [7, 11]},
        {"mask_token": "[MASK]"},
        {"mask_token": "", "num_oov_indices": 2},
        {"output_mode": "one_hot"},
        {"output_mode": "multi_hot", "num_oov_indices": 2},
        {"output_mode": "count", "mask_token": "zzz", "pad_to_max_tokens": True, "max_tokens": 20},
        {"output_mode": "tf_idf", "idf_weights": [0.5 + i for i in range(8)]},
    ],
)
def test_string_lookup(keras, kwargs):
    vocab = [w for w in WORDS if w not in ("", kwargs.get("mask_token"))][:8]
    layer = keras.layers.StringLookup(vocabulary=vocab, **kwargs)
    expected = np.asarray(layer(PROBES))
    found = _converted(layer, "StringLookup")(PROBES).numpy()
    np.testing.assert_array_equal(found, expected)
    wide = PROBES.reshape(2, 5)
    if kwargs.get("output_mode", "int") in ("int", "multi_hot", "count"):
        np.testing.assert_array_equal(
            _converted(layer, "StringLookup")(wide).numpy(), np.asarray(layer(wide))
        )


def test_string_lookup_invert(keras):
    layer = keras.layers.StringLookup(vocabulary=["a", "b", "c"], invert=True, mask_token="[M]")
    ids = np.array([[0], [1], [2], [3], [4], [9]])
    expected = [v.decode() for v in np.asarray(layer(ids)).ravel()]
    assert list(_converted(layer, "StringLookup")(ids).ravel()) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_oov_indices": 4},
        {"num_oov_indices": 4, "oov_method": "farmhash"},
        {"mask_token": 0},
        {"output_mode": "multi_hot"},
        {"output_mode": "count", "num_oov_indices": 3},
    ],
)
def test_integer_lookup(keras, kwargs):
    layer = keras.layers.IntegerLookup(vocabulary=[12, 7, 3, 100, -5], **kwargs)
    probes = np.array([[12], [7], [0], [-5], [-8], [999], [2**40], [4], [3], [13]])
    expected = np.asarray(layer(probes))
    np.testing.assert_array_equal(_converted(layer, "IntegerLookup")(probes).numpy(), expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_bins": 7},
        {"num_bins": 7, "mask_value": "the"},
        {"num_bins": 5, "salt": 133},
        {"num_bins": 9, "salt": [3, 2**40]},
        {"num_bins": 4, "output_mode": "multi_hot"},
        {"num_bins": 6, "output_mode": "count"},
        {"num_bins": 6, "output_mode": "one_hot"},
    ],
)
def test_hashing_strings(keras, kwargs):
    layer = keras.layers.Hashing(**kwargs)
    module = CONVERTERS["Hashing"].build(layer.get_config() | {"_class": "Hashing"}, {}, {})
    np.testing.assert_array_equal(module(PROBES).numpy(), np.asarray(layer(PROBES)))


def test_hashing_mask_value_matches_bytes_and_str(keras):
    layer = keras.layers.Hashing(num_bins=5, mask_value="the")
    module = CONVERTERS["Hashing"].build(layer.get_config() | {"_class": "Hashing"}, {}, {})
    texts = np.array([[b"the"], [b"cat"], [b"th"]], dtype=object)
    np.testing.assert_array_equal(module(texts).numpy(), np.asarray(layer(texts)))


def test_hashing_integers_and_floats_hash_their_decimal_string(keras):
    layer = keras.layers.Hashing(num_bins=11, mask_value=0)
    module = CONVERTERS["Hashing"].build(layer.get_config() | {"_class": "Hashing"}, {}, {})
    ints = np.array([[0], [1], [-7], [2**40], [123456789]])
    np.testing.assert_array_equal(module(ints).numpy(), np.asarray(layer(ints)))
    floats = np.array([[1.7], [-2.5], [0.0], [3.0]])
    plain = keras.layers.Hashing(num_bins=11)
    module = CONVERTERS["Hashing"].build(plain.get_config() | {"_class": "Hashing"}, {}, {})
    np.testing.assert_array_equal(module(floats).numpy(), np.asarray(plain(floats)))


# --- model files -------------------------------------------------------------------------------


def _text_model(keras, texts, **kwargs):
    tv = keras.layers.TextVectorization(max_tokens=400, output_sequence_length=12, **kwargs)
    tv.adapt(_as_tf_input(texts))
    inp = keras.Input(shape=(1,), dtype="string")
    x = keras.layers.Embedding(400, 8, mask_zero=True)(tv(inp))
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inp, out)


def _sample_texts() -> list[str]:
    texts = [t for t in _texts() if isinstance(t, str)]
    return texts[::97] if len(texts) > 200 else texts * 3


def test_keras3_text_model_file(keras, tmp_path):
    texts = _sample_texts()
    model = _text_model(keras, texts)
    path = tmp_path / "text.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    expected = np.asarray(reloaded(np.array(texts)[:, None]))
    converted = parity.load_keras(path)
    np.testing.assert_allclose(converted(texts).detach().numpy(), expected, atol=1e-6, rtol=0)
    tv = converted.get_submodule(reloaded.layers[1].name)
    assert tv.table.vocabulary() == reloaded.layers[1].get_vocabulary()
    # parity.save keeps the vocabulary in the config metadata
    parity.save(converted, tmp_path / "text.safetensors")
    again = parity.load(tmp_path / "text.safetensors")
    np.testing.assert_allclose(again(texts).detach().numpy(), expected, atol=1e-6, rtol=0)


def test_keras3_model_with_vocabulary_in_config_and_tf_idf(keras, tmp_path):
    vocab = ["the", "cat", "sat", "on", "mat"]
    tv = keras.layers.TextVectorization(
        vocabulary=vocab, output_mode="tf_idf", idf_weights=[1.0, 2.0, 3.0, 4.0, 5.0]
    )
    inp = keras.Input(shape=(1,), dtype="string")
    out = keras.layers.Dense(2)(tv(inp))
    model = keras.Model(inp, out)
    path = tmp_path / "tfidf.keras"
    model.save(path)
    texts = ["the cat sat on the mat", "dog", "", "THE CAT!!"]
    expected = np.asarray(keras.models.load_model(path)(np.array(texts)[:, None]))
    found = parity.load_keras(path)(texts).detach().numpy()
    np.testing.assert_allclose(found, expected, atol=1e-5, rtol=0)


def test_keras3_model_with_string_lookup_integer_lookup_hashing(keras, tmp_path):
    words = keras.Input(shape=(3,), dtype="string")
    numbers = keras.Input(shape=(2,), dtype="int64")
    lookup = keras.layers.StringLookup(num_oov_indices=2)
    lookup.adapt(np.array([["a", "b", "c"], ["a", "d", "e"]]))
    ints = keras.layers.IntegerLookup(vocabulary=[5, 6, 7])
    hashed = keras.layers.Hashing(num_bins=16)(words)
    e1 = keras.layers.Flatten()(keras.layers.Embedding(8, 4)(lookup(words)))
    e2 = keras.layers.Flatten()(keras.layers.Embedding(5, 4)(ints(numbers)))
    e3 = keras.layers.Flatten()(keras.layers.Embedding(16, 4)(hashed))
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([e1, e2, e3]))
    model = keras.Model([words, numbers], out)
    path = tmp_path / "lookups.keras"
    model.save(path)
    w = np.array([["a", "b", "zz"], ["e", "q", "a"], ["", "d", "c"]])
    n = np.array([[5, 9], [7, 6], [0, -1]])
    expected = np.asarray(keras.models.load_model(path)([w, n]))
    found = parity.load_keras(path)(w, torch.from_numpy(n)).detach().numpy()
    np.testing.assert_allclose(found, expected, atol=1e-6, rtol=0)


# --- hostile vocabularies ----------------------------------------------------------------------


def _rewrite(src, dst, replace: dict[str, bytes | None], add: dict[str, bytes] | None = None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in replace:
                if replace[info.filename] is not None:
                    zout.writestr(info.filename, replace[info.filename])
            else:
                zout.writestr(info, zin.read(info))
        for name, data in (add or {}).items():
            zout.writestr(name, data)


@pytest.fixture(scope="module")
def saved_text_model(keras, tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "m.keras"
    _text_model(keras, ["the cat sat", "a dog ate"] * 5).save(path)
    return path


ASSET = "assets/layers/text_vectorization/vocabulary.txt"
LOOKUP_ASSET = "assets/layers/text_vectorization/_lookup_layer/vocabulary.txt"


@pytest.mark.parametrize(
    ("replace", "add", "match"),
    [
        ({ASSET: None, LOOKUP_ASSET: None}, {}, "no vocabulary.*no assets/<layer>/vocabulary"),
        ({ASSET: b"\n[UNK]\na\nb\na", LOOKUP_ASSET: b"\n[UNK]\na\nb\na"}, {}, "repeats"),
        ({ASSET: b"\n[UNK]\n\xff\xfe", LOOKUP_ASSET: b"\n[UNK]\n\xff\xfe"}, {}, "not UTF-8"),
        ({ASSET: b"\n[UNK]\nx"}, {}, "two different vocabularies"),
        ({}, {"assets/../../evil.txt": b"x"}, "path-traversal"),
        ({}, {"assets/layers/x/../../vocabulary.txt": b"x"}, "path-traversal"),
        ({ASSET: b"x" * (64 * 2**20 + 1)}, {}, "asset"),
    ],
)
def test_hostile_vocabulary_assets_are_refused(saved_text_model, tmp_path, replace, add, match):
    bad = tmp_path / "bad.keras"
    _rewrite(saved_text_model, bad, replace, add)
    with pytest.raises(ConversionError, match=match):
        parity.load_keras(bad)


def test_vocabulary_file_reads_as_keras_load_assets():
    """Keras reloads vocabulary.txt with str.splitlines: U+2028 and \\x1c end a token too."""
    data = "\n[UNK]\na\u2028b\nc\x1cd\r\ne\n\n".encode()
    assert parse_vocabulary_file(data, False, "x") == ["", "[UNK]", "a", "b", "c", "d", "e"]
    assert parse_vocabulary_file(b"-1\n5\n+7\n", True, "x") == [-1, 5, 7]
    with pytest.raises(ConversionError, match="not an integer"):
        parse_vocabulary_file(b"-1\nfive\n", True, "x")


# --- other formats: tf_keras SavedModel, legacy .h5, weights files with a companion ------------


@pytest.fixture(scope="module")
def tf_keras():
    return pytest.importorskip("tf_keras")


def _tf_keras_text_model(tf_keras, vocabulary=None, texts=None):
    tv = tf_keras.layers.TextVectorization(
        max_tokens=None if vocabulary else 60, output_sequence_length=8, vocabulary=vocabulary
    )
    if vocabulary is None:
        tv.adapt(texts)
    inp = tf_keras.Input(shape=(1,), dtype="string")
    x = tf_keras.layers.Embedding(60, 4)(tv(inp))
    x = tf_keras.layers.GlobalAveragePooling1D()(x)
    return tf_keras.Model(inp, tf_keras.layers.Dense(2)(x))


TF_KERAS_TEXTS = ["the cat sat on the mat", "A dog, a DOG!", "", "zebra ÉCLAIR éclair"]


def test_tf_keras_saved_model_with_vocabulary_in_config(tf_keras, tmp_path):
    """A tf_keras SavedModel whose TextVectorization was built with vocabulary=[...]: the config
    (keras_metadata.pb) carries it; so does the TF checkpoint's companion."""
    model = _tf_keras_text_model(tf_keras, vocabulary=["the", "cat", "a", "dog", "éclair"])
    saved = tmp_path / "sm"
    model.save(saved, save_format="tf")
    expected = model.predict(np.array(TF_KERAS_TEXTS, dtype=object)[:, None], verbose=0)
    found = parity.load_keras(saved)(TF_KERAS_TEXTS).detach().numpy()
    np.testing.assert_allclose(found, expected, atol=1e-6, rtol=0)
    ckpt = tmp_path / "ckpt" / "weights"
    model.save_weights(str(ckpt), save_format="tf")
    found = parity.load_keras(ckpt, config=saved)(TF_KERAS_TEXTS).detach().numpy()
    np.testing.assert_allclose(found, expected, atol=1e-6, rtol=0)


def test_adapted_tf_keras_saved_model_reads_the_table_from_saved_model_pb(tf_keras, tmp_path):
    """An adapted layer's vocabulary is only in saved_model.pb's graph constants: read there.
    The TF checkpoint alone has none and says where to find it."""
    texts = [t for t in _sample_texts() if t.strip()]
    model = _tf_keras_text_model(tf_keras, texts=texts)
    saved = tmp_path / "sm"
    model.save(saved, save_format="tf")
    batch = np.array(texts + TF_KERAS_TEXTS, dtype=object)[:, None]
    expected = model.predict(batch, verbose=0)
    found = parity.load_keras(saved)(batch).detach().numpy()
    np.testing.assert_allclose(found, expected, atol=1e-6, rtol=0)
    ckpt = tmp_path / "ckpt" / "weights"
    model.save_weights(str(ckpt), save_format="tf")
    config_json = tmp_path / "model.json"
    config_json.write_text(json.dumps(read_model_config(saved)))
    with pytest.raises(ConversionError, match="TF checkpoint stores no vocabulary"):
        parity.load_keras(ckpt, config=config_json)


def test_tf_keras_saved_model_lookup_layers(tf_keras, tmp_path):
    words = tf_keras.Input(shape=(2,), dtype="string")
    numbers = tf_keras.Input(shape=(2,), dtype="int64")
    lookup = tf_keras.layers.StringLookup(num_oov_indices=3, mask_token="[M]")
    lookup.adapt(np.array([["a", "b"], ["c", "a"], ["é", "d"]]))
    ints = tf_keras.layers.IntegerLookup()
    ints.adapt(np.array([[4, 8], [15, 16]]))
    e1 = tf_keras.layers.Flatten()(tf_keras.layers.Embedding(10, 3)(lookup(words)))
    e2 = tf_keras.layers.Flatten()(tf_keras.layers.Embedding(10, 3)(ints(numbers)))
    model = tf_keras.Model(
        [words, numbers], tf_keras.layers.Dense(2)(tf_keras.layers.Concatenate()([e1, e2]))
    )
    saved = tmp_path / "sm"
    model.save(saved, save_format="tf")
    w = np.array([["a", "zz"], ["[M]", "é"], ["d", "qq"]], dtype=object)
    n = np.array([[4, 9], [16, 0], [-3, 15]])
    expected = model.predict([w, n], verbose=0)
    found = parity.load_keras(saved)(w, torch.from_numpy(n)).detach().numpy()
    np.testing.assert_allclose(found, expected, atol=1e-6, rtol=0)


def test_legacy_h5_without_stored_vocabulary_is_refused(keras, tmp_path):
    """Keras 3's legacy .h5 writer keeps the config only (tf_keras cannot write the layer to
    .h5 at all): the vocabulary is nowhere in the file."""
    path = tmp_path / "m.h5"
    _text_model(keras, TF_KERAS_TEXTS).save(path)
    with pytest.raises(ConversionError, match="legacy HDF5 file stores no vocabulary"):
        parity.load_keras(path)


def test_weights_file_takes_the_vocabulary_from_its_keras_companion(keras, tmp_path):
    texts = _sample_texts()
    model = _text_model(keras, texts)
    archive, weights = tmp_path / "m.keras", tmp_path / "m.weights.h5"
    model.save(archive)
    model.save_weights(weights)
    expected = np.asarray(model(np.array(texts)[:, None]))
    found = parity.load_keras(weights, config=archive)(texts).detach().numpy()
    np.testing.assert_allclose(found, expected, atol=1e-6, rtol=0)
    alone = parity.text_preprocessor(archive)
    np.testing.assert_array_equal(
        alone(texts).numpy(), np.asarray(model.layers[1](np.array(texts)[:, None]))
    )


def _port_and_prove(src, out) -> None:
    """parity port writes a package that passes ruff's defaults and its own test (Keras'
    outputs on generated texts), with parity unimportable."""
    from tests.test_port import assert_stands_alone

    parity.port(src, out)
    assert_stands_alone(out)
    golden = np.load(out / "golden.npz")
    assert str(golden["source"]).startswith("keras")  # Keras' own outputs on the texts


def test_port_writes_text_models(keras, tmp_path):
    tv = keras.layers.TextVectorization(max_tokens=300, output_sequence_length=10, ngrams=2)
    tv.adapt(np.array([t for t in _sample_texts() if t.strip()]))
    inp = keras.Input(shape=(1,), dtype="string")
    flat = keras.layers.Flatten()(keras.layers.Embedding(300, 3)(tv(inp)))
    path = tmp_path / "text.keras"
    keras.Model(inp, keras.layers.Dense(2)(flat)).save(path)
    _port_and_prove(path, tmp_path / "text")
    # the lookups model: strings into StringLookup and Hashing, integers into IntegerLookup
    words = keras.Input(shape=(3,), dtype="string")
    numbers = keras.Input(shape=(2,), dtype="int64")
    lookup = keras.layers.StringLookup(vocabulary=["a", "b", "c\u2028d", '"q"'], num_oov_indices=2)
    ints = keras.layers.IntegerLookup(vocabulary=[5, 6, 7], output_mode="multi_hot")
    hashed = keras.layers.Hashing(num_bins=16, salt=[3, 9])(words)
    e1 = keras.layers.Flatten()(keras.layers.Embedding(8, 4)(lookup(words)))
    e3 = keras.layers.Flatten()(keras.layers.Embedding(16, 4)(hashed))
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([e1, ints(numbers), e3]))
    path = tmp_path / "lookups.keras"
    keras.Model([words, numbers], out).save(path)
    _port_and_prove(path, tmp_path / "lookups")


def test_parity_check_feeds_texts_to_a_string_model(saved_text_model, tmp_path, capsys):
    """`parity check` generates texts for a model whose input feeds TextVectorization, live and
    through a golden file (the texts are stored as a numpy unicode array, no pickle)."""
    from parity.cli import main

    assert main(["check", str(saved_text_model)]) == 0
    out = capsys.readouterr().out
    assert "texts (8, 1)" in out and "activation/text_vectorization" in out and "PASS" in out
    golden = tmp_path / "golden.npz"
    assert main(["golden", str(saved_text_model), str(golden)]) == 0
    assert main(["check", str(saved_text_model), "--golden", str(golden)]) == 0
    assert "PASS" in capsys.readouterr().out


def test_hostile_saved_model_tables_are_refused(tf_keras, tmp_path):
    """A truncated or tampered saved_model.pb is a ConversionError naming the layer, never a
    wrong vocabulary."""
    model = _tf_keras_text_model(tf_keras, texts=TF_KERAS_TEXTS)
    saved = tmp_path / "sm"
    model.save(saved, save_format="tf")
    pb = saved / "saved_model.pb"
    data = pb.read_bytes()
    truncated = tmp_path / "truncated"
    shutil.copytree(saved, truncated)
    (truncated / "saved_model.pb").write_bytes(data[: len(data) // 3])
    with pytest.raises(ConversionError, match="text_vectorization"):
        parity.load_keras(truncated)
    renamed = tmp_path / "renamed"
    shutil.copytree(saved, renamed)
    # the table initializer's name changed: the path to the table no longer exists
    (renamed / "saved_model.pb").write_bytes(data.replace(b"_initialize", b"_initializX"))
    with pytest.raises(ConversionError, match="no '_initialize'"):
        parity.load_keras(renamed)


def test_duplicate_asset_member_is_refused(saved_text_model, tmp_path):
    bad = tmp_path / "dup.keras"
    with zipfile.ZipFile(saved_text_model) as zin:
        vocab = zin.read(LOOKUP_ASSET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        _rewrite(saved_text_model, bad, {}, {LOOKUP_ASSET: vocab + b"\nextra"})
    with pytest.raises(ConversionError, match="asset file twice"):
        parity.load_keras(bad)


SEPARATOR_ADAPT = ["a\u2028b c\x1cd plain", "plain"]
SEPARATOR_TEXTS = [*SEPARATOR_ADAPT, "a b c d", "a\u2028b", "c\x1cd"]


@pytest.mark.parametrize("writer", ["keras", "tf_keras"])
def test_vocabulary_file_is_read_back_as_the_writing_keras_reloads_it(writer, tmp_path):
    """Tokens holding U+2028 or \\x1c survive whitespace splitting and are saved as they are;
    Keras 3 reloads vocabulary.txt with str.splitlines (they come back as two tokens), tf_keras
    with split("\\n") (one token). The converted model follows the Keras that wrote the file,
    compared with that Keras' own reloaded model."""
    k = pytest.importorskip(writer)
    tv = k.layers.TextVectorization(output_sequence_length=6, standardize=None)
    tv.adapt(np.array(SEPARATOR_ADAPT, dtype=object))
    inp = k.Input(shape=(1,), dtype="string")
    out = k.layers.Dense(2)(k.layers.Flatten()(k.layers.Embedding(16, 2)(tv(inp))))
    path = tmp_path / "m.keras"
    k.Model(inp, out).save(path)
    batch = np.array(SEPARATOR_TEXTS, dtype=object)[:, None]
    expected = np.asarray(k.models.load_model(path)(batch))
    found = parity.load_keras(path)(batch).detach().numpy()
    np.testing.assert_allclose(found, expected, atol=1e-6, rtol=0)


def test_string_ops_match_tf_on_random_bytes(tf):
    """Random byte strings (mostly invalid UTF-8) and random code points: lower, punctuation,
    whitespace split and character split agree with TensorFlow on every one."""
    rng = np.random.default_rng(5)
    samples = [
        bytes(rng.integers(0, 256, int(n), dtype=np.uint8)) for n in rng.integers(0, 40, 400)
    ]
    pool = [*range(0x20, 0x7F), *range(0xA0, 0x2100), *range(0x3000, 0x3010), 0x1F44D, 0x10FFFF]
    samples += [
        "".join(chr(pool[i]) for i in rng.integers(0, len(pool), int(n))).encode()
        for n in rng.integers(0, 30, 200)
    ]
    assert tf.strings.lower(samples).numpy().tolist() == [
        tf_strings.standardize(s, "lower") for s in samples
    ]
    stripped = tf.strings.regex_replace(samples, r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']', "")
    assert stripped.numpy().tolist() == [
        tf_strings.standardize(s, "strip_punctuation") for s in samples
    ]
    assert tf.strings.split(samples).to_list() == [tf_strings.split_whitespace(s) for s in samples]
    assert tf.strings.unicode_split(samples, "UTF-8").to_list() == [
        tf_strings.split_characters(s) for s in samples
    ]


def test_sequential_and_nested_text_models(keras, tmp_path):
    """TextVectorization as a Sequential's first layer, and inside a Sequential block used as a
    layer (its vocabulary under assets/layers/<block>/layers/<layer>/)."""
    texts = ["the cat sat", "a dog ate the cat", "émigré café"]
    batch = np.array(["the cat", "zz café", "dog", ""])[:, None]
    tv = keras.layers.TextVectorization(max_tokens=30, output_sequence_length=6)
    tv.adapt(texts)
    seq = keras.Sequential(
        [
            keras.Input(shape=(1,), dtype="string"),
            tv,
            keras.layers.Embedding(30, 3),
            keras.layers.Flatten(),
        ]
    )
    inp = keras.Input(shape=(1,), dtype="string")
    nested = keras.Model(inp, keras.layers.Dense(2)(seq(inp)))
    for name, model in (("seq", seq), ("nested", nested)):
        path = tmp_path / f"{name}.keras"
        model.save(path)
        expected = np.asarray(keras.models.load_model(path)(batch))
        found = parity.load_keras(path)(batch).detach().numpy()
        np.testing.assert_allclose(found, expected, atol=1e-6, rtol=0, err_msg=name)


def _template():
    """parity port's standalone keras_layers.py, imported from its template."""
    import importlib.util

    source = Path(parity.__file__).parent / "codegen" / "templates" / "keras_layers.py"
    spec = importlib.util.spec_from_file_location("keras_layers_template", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_ported_text_classes_compute_what_the_converted_ones_do(keras):
    """The standalone copies parity port writes agree with the converted modules (themselves
    checked against TensorFlow above): hashes at every length, TextVectorization on every text
    and config, the lookups and Hashing on words and integers."""
    template = _template()
    rng = np.random.default_rng(3)
    data = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in range(301)]
    assert [template.FarmHash64.fingerprint(d) for d in data] == [
        tf_hash.fingerprint64(d) for d in data
    ]
    key = (2**63 + 11, 5)
    assert [template.SipHash24.hash(key, d) for d in data] == [
        tf_hash.siphash24(key, d) for d in data
    ]
    texts = _as_tf_input(_texts())[:, None]
    for config in GRID[::6]:
        standardize, split, ngrams = config
        layer = keras.layers.TextVectorization(
            standardize=standardize, split=split, ngrams=ngrams, max_tokens=500
        )
        layer.adapt(np.array([t for t in ADVERSARIAL if isinstance(t, str)] * 2))
        ours = _converted(layer, "TextVectorization")
        ported = template.KerasTextVectorization(
            [t.decode() for t in ours.table.tokens],
            ours.standardize,
            ours.split,
            ours.widths,
            ours.output_mode,
            40,
            ours.table.depth,
        )
        ours.output_sequence_length = 40
        assert torch.equal(ported(texts), ours(texts)), config
    words = PROBES
    lookup = _converted(
        keras.layers.StringLookup(vocabulary=WORDS[:5], num_oov_indices=5, salt=[1, 2]),
        "StringLookup",
    )
    t = lookup.table
    ported = template.KerasLookup(
        [k.decode() for k in t.tokens], False, t.mask_token, t.oov_token, t.num_oov_indices,
        t.oov_start, t.invert, t.oov_method, t.salt, t.output_mode, t.depth,
    )  # fmt: skip
    assert torch.equal(ported(words), lookup(words))
    hashing = CONVERTERS["Hashing"].build({"num_bins": 9, "mask_value": "the", "salt": 4}, {}, {})
    ported = template.KerasHashing(9, "the", (4, 4))
    assert torch.equal(ported(words), hashing(words))
    ints = np.array([[5, -7], [2**40, 0]])
    assert torch.equal(template.KerasHashing(9)(ints), CONVERTERS["Hashing"].build(
        {"num_bins": 9}, {}, {})(ints))  # fmt: skip
