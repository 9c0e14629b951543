"""The golden cases: which Keras model, which inputs, which dtype. Data, one row per case.

`python -m tests.golden_cases` (keras extra installed) regenerates every golden file under
tests/golden/; the live tests call the same functions and cross-check the committed files.
Model files of "init" cases are written next to their golden .npz; "trained" cases use the
bundled weights/ files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parity.arch import ZOO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
WEIGHTS = REPO / "weights"


def ragged_ids(
    vocab_size: int, lengths: list[int], seq_len: int, *, seed: int, pre: list[bool]
) -> np.ndarray:
    """Rows of random real ids (1..vocab-1) with the given lengths, pre- or post-padded."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), seq_len), dtype=np.int32)
    for row, (length, pre_pad) in enumerate(zip(lengths, pre, strict=True)):
        tokens = rng.integers(1, vocab_size, length)
        if pre_pad:
            ids[row, seq_len - length :] = tokens
        else:
            ids[row, :length] = tokens
    return ids


@dataclass(frozen=True)
class GoldenCase:
    id: str
    pair: str
    floatx: str
    #: The Keras model file converted by the tests.
    model_file: Path
    ids: Callable[[], np.ndarray]
    #: Builds and returns the Keras model to save as model_file (imports keras lazily);
    #: None for trained cases, whose file is in weights/.
    build: Callable[[], object] | None = None
    #: The model Keras' numbers come from, given the loaded file (e.g. an attention-returning
    #: twin with the same weights); default: the loaded model itself.
    keras_model: Callable[[object], object] | None = None
    activations: tuple[str, ...] = ()

    @property
    def golden_file(self) -> Path:
        return GOLDEN / f"{self.id}.npz"


# --- embedding_dense --------------------------------------------------------------------------


def _embedding_dense_init() -> object:
    import keras

    from reference_keras import embedding_dense

    keras.utils.set_random_seed(1)
    return embedding_dense.build(vocab_size=200, seq_len=20, embedding_dim=8, num_classes=3)


def _embedding_dense_ids() -> np.ndarray:
    lengths = [20, 1, 7, 13, 20, 4]
    return ragged_ids(200, lengths, 20, seed=2, pre=[True, True, False, True, False, False])


# --- deepmoji ---------------------------------------------------------------------------------

#: Scale applied to Keras-initialised LSTM weights so gate pre-activations reach the hard
#: sigmoid's flat parts (|0.2x| > 0.5), where the Keras 2 and Keras 3 variants differ most.
SATURATING_SCALE = 4.0
DEEPMOJI_SMALL = {"vocab_size": 100, "embedding_dim": 16, "hidden_size": 8, "num_classes": 5}
DEEPMOJI_LENGTHS = [14, 1, 5, 3, 14, 9, 2, 7]
#: The padded length of _deepmoji_ids, which the fixed-length case's Input states.
DEEPMOJI_FIXED_LENGTH = 14
DEEPMOJI_PRE = [True, True, False, False, True, False, True, False]


def _deepmoji_init(
    gate: str, seq_len: int | None = None, saturate: bool = True
) -> Callable[[], object]:
    def build() -> object:
        import keras

        from reference_keras import deepmoji

        keras.utils.set_random_seed(7)
        model = deepmoji.build(**DEEPMOJI_SMALL, gate=gate, seq_len=seq_len)
        for name in ("bi_lstm_0", "bi_lstm_1") if saturate else ():
            layer = model.get_layer(name)
            layer.set_weights([w * SATURATING_SCALE for w in layer.get_weights()])
        return model

    return build


def _deepmoji_ids() -> np.ndarray:
    return ragged_ids(100, DEEPMOJI_LENGTHS, DEEPMOJI_FIXED_LENGTH, seed=8, pre=DEEPMOJI_PRE)


def _with_attention(model: object) -> object:
    """DeepMoji's Keras twin that also outputs the attention weights, same weights."""
    from reference_keras import deepmoji

    sizes = _deepmoji_sizes(model)
    twin = deepmoji.build(**sizes, gate=_deepmoji_gate(model), return_attention=True)
    twin.set_weights(model.get_weights())
    return twin


def _deepmoji_sizes(model: object) -> dict[str, int]:
    vocab_size, embedding_dim = model.get_layer("embedding").get_weights()[0].shape
    hidden_size = model.get_layer("bi_lstm_0").forward_layer.units
    units = model.get_layer("softmax").units
    return {
        "vocab_size": vocab_size,
        "embedding_dim": embedding_dim,
        "hidden_size": hidden_size,
        "num_classes": 2 if units == 1 else units,
    }


def _deepmoji_gate(model: object) -> str:
    from reference_keras import deepmoji

    gate = model.get_layer("bi_lstm_0").forward_layer.recurrent_activation
    for name, value in deepmoji.GATES.items():
        if value is gate or getattr(gate, "__name__", None) == value:
            return name
    raise ValueError(f"unknown gate {gate}")


# --- real texts for the trained models ----------------------------------------------------------

SHARED_DATA = REPO.parent / "shared" / "data" / "deepmoji_benchmarks"
REAL_TEXTS = 12


def _real_ids(maxlen: int, vocab_size: int, padding: str) -> Callable[[], np.ndarray]:
    """SS-Youtube test sentences (shortest to longest, so lengths vary), bundled vocabulary."""

    def ids() -> np.ndarray:
        import json

        from parity.text.simple import encode, load_vocabulary

        records = [json.loads(line) for line in (SHARED_DATA / "SS-Youtube.jsonl").open()]
        texts = sorted((r["text"] for r in records if r["split"] == "test"), key=len)
        picked = [texts[i * (len(texts) - 1) // (REAL_TEXTS - 1)] for i in range(REAL_TEXTS)]
        vocabulary = load_vocabulary(WEIGHTS / "vocabulary.json")
        return encode(picked, vocabulary, maxlen, vocab_size=vocab_size, padding=padding)

    return ids


CASES: list[GoldenCase] = [
    *(
        GoldenCase(
            id=f"embedding_dense-init-{floatx}",
            pair="embedding_dense",
            floatx=floatx,
            model_file=GOLDEN / f"embedding_dense-init-{floatx}.keras",
            ids=_embedding_dense_ids,
            build=_embedding_dense_init,
            activations=("embedding",),
        )
        for floatx in ("float32", "float64")
    ),
    GoldenCase(
        id="embedding_dense-trained-real-texts",
        pair="embedding_dense",
        floatx="float32",
        model_file=WEIGHTS / "embedding_dense.keras",
        ids=_real_ids(100, 10000, "pre"),
        activations=("embedding",),
    ),
    *(
        GoldenCase(
            id=f"deepmoji-{gate}-saturated-{floatx}",
            pair="deepmoji",
            floatx=floatx,
            model_file=GOLDEN / f"deepmoji-{gate}-saturated-{floatx}.keras",
            ids=_deepmoji_ids,
            build=_deepmoji_init(gate),
            keras_model=_with_attention,
        )
        for gate, floatx in (
            ("hard_sigmoid_keras2", "float32"),
            ("hard_sigmoid_keras2", "float64"),
            ("hard_sigmoid_keras3", "float32"),
            ("sigmoid", "float32"),
        )
    ),
    # DeepMoji's own model fixes the length (Input(shape=(maxlen,))): checks must feed it that
    GoldenCase(
        id="deepmoji-fixed_length-float32",
        pair="deepmoji",
        floatx="float32",
        model_file=GOLDEN / "deepmoji-fixed_length-float32.keras",
        ids=_deepmoji_ids,
        build=_deepmoji_init("hard_sigmoid_keras2", DEEPMOJI_FIXED_LENGTH, saturate=False),
        keras_model=_with_attention,
    ),
    *(
        GoldenCase(
            id=f"deepmoji-trained-real-texts-{padding}",
            pair="deepmoji",
            floatx="float32",
            model_file=WEIGHTS / "deepmoji_small.keras",
            ids=_real_ids(50, 5000, padding),
            keras_model=_with_attention,
        )
        for padding in ("pre", "post")
    ),
]


def by_id(case_id: str) -> GoldenCase:
    return next(case for case in CASES if case.id == case_id)


def keras_golden(
    case: GoldenCase, *, write_model: bool, ids: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Run Keras on the case (on ``ids`` if given); with write_model, save the model first."""
    import keras

    from parity.check.keras_side import keras_side
    from reference_keras.deepmoji import CUSTOM_OBJECTS

    keras.config.set_floatx(case.floatx)
    keras.config.set_dtype_policy(case.floatx)
    try:
        if write_model and case.build is not None:
            model = case.build()
            model.save(case.model_file)
        model = keras.models.load_model(
            case.model_file, custom_objects=CUSTOM_OBJECTS, compile=False
        )
        if case.keras_model is not None:
            model = case.keras_model(model)
        ids = case.ids() if ids is None else ids
        return keras_side(model, case.pair, ids, activations=case.activations)
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")


def main() -> None:
    from parity.check.keras_side import write_golden

    GOLDEN.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        write_golden(case.golden_file, keras_golden(case, write_model=True))
        print(f"wrote {case.golden_file.relative_to(REPO)}")


# --- the seed model zoo: converted by the generic path -------------------------------

#: Small sizes for every zoo golden model (the builders' other arguments keep their defaults).
ZOO_SMALL = {"vocab_size": 60, "embedding_dim": 6, "num_classes": 3}
ZOO_SIZES = {
    "embedding_mlp": {"hidden": 5},
    "cnn": {"filters": 4, "hidden": 5},
    "cnn_lstm": {"filters": 4, "units": 5},
    "stacked_rnn": {"units": 5},
    "bigru_classifier": {"units": 4},
    "bilstm_classifier": {"units": 4},
    "lstm_regressor": {"units": 5, "num_classes": 0},
}
ZOO_LENGTHS = [16, 1, 5, 9, 16, 3]
ZOO_PRE = [True, True, False, True, False, False]


def _zoo_build(name: str, seed: int, **extra: object) -> Callable[[], object]:
    def build() -> object:
        import importlib

        import keras

        keras.utils.set_random_seed(seed)
        module = importlib.import_module(f"reference_keras.{name}")
        return module.build(**{**ZOO_SMALL, **ZOO_SIZES[name], **extra})

    return build


def _zoo_ids() -> np.ndarray:
    return ragged_ids(60, ZOO_LENGTHS, 16, seed=11, pre=ZOO_PRE)


def _zoo_case(name: str, floatx: str, variant: str = "init", **extra: object) -> GoldenCase:
    case_id = f"{name}-{variant}-{floatx}"
    return GoldenCase(
        id=case_id,
        pair=name,
        floatx=floatx,
        model_file=GOLDEN / f"{case_id}.keras",
        ids=_zoo_ids,
        build=_zoo_build(name, seed=12, **extra),
    )


ZOO_CASES: list[GoldenCase] = [
    *(_zoo_case(name, "float32") for name in ZOO),
    _zoo_case("bigru_classifier", "float32", "reset_before", reset_after=False),
    _zoo_case("bigru_classifier", "float64"),
    _zoo_case("bigru_classifier", "float64", "reset_before", reset_after=False),
    _zoo_case("cnn", "float64"),
    _zoo_case("stacked_rnn", "float64"),
    _zoo_case("lstm_regressor", "float64"),
]
CASES += ZOO_CASES


def main_zoo() -> None:
    """Regenerate the zoo's golden files only (`python -c 'import tests.golden_cases as g;
    g.main_zoo()'`)."""
    from parity.check.keras_side import write_golden

    for case in ZOO_CASES:
        write_golden(case.golden_file, keras_golden(case, write_model=True))
        print(f"wrote {case.golden_file.relative_to(REPO)}")


if __name__ == "__main__":  # after ZOO_CASES, so `make goldens` writes every case
    main()
