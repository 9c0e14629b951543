"""The golden cases: which Keras model, which inputs, which dtype. Data, one row per case.

`python -m tests.golden_cases` (keras extra installed) regenerates every golden file under
tests/golden/; the live tests call the same functions and cross-check the committed files.
Model files of "init" cases are written next to their golden .npz; "trained" cases use the
bundled weights/ files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
    #: Builds the Keras model (imports keras lazily); None for trained cases (loaded from file).
    build: Callable[[], object] | None
    #: The Keras model file converted by the tests.
    model_file: Path
    ids: Callable[[], np.ndarray]
    activations: tuple[str, ...] = ()
    #: Extra tags for selecting cases in tests.
    tags: tuple[str, ...] = field(default=())

    @property
    def golden_file(self) -> Path:
        return GOLDEN / f"{self.id}.npz"


def _embedding_dense_init() -> object:
    import keras

    from reference_keras import embedding_dense

    keras.utils.set_random_seed(1)
    return embedding_dense.build(vocab_size=200, seq_len=20, embedding_dim=8, num_classes=3)


def _embedding_dense_ids() -> np.ndarray:
    lengths = [20, 1, 7, 13, 20, 4]
    return ragged_ids(200, lengths, 20, seed=2, pre=[True, True, False, True, False, False])


CASES: list[GoldenCase] = [
    GoldenCase(
        id=f"embedding_dense-init-{floatx}",
        pair="embedding_dense",
        floatx=floatx,
        build=_embedding_dense_init,
        model_file=GOLDEN / f"embedding_dense-init-{floatx}.keras",
        ids=_embedding_dense_ids,
        activations=("embedding",),
    )
    for floatx in ("float32", "float64")
]


def by_id(case_id: str) -> GoldenCase:
    return next(case for case in CASES if case.id == case_id)


def keras_golden(case: GoldenCase, *, write_model: bool) -> dict[str, np.ndarray]:
    """Run Keras on the case; with write_model, build and save the model file first."""
    import keras

    from reference_keras.deepmoji import CUSTOM_OBJECTS
    from reference_keras.golden import keras_side

    keras.config.set_floatx(case.floatx)
    keras.config.set_dtype_policy(case.floatx)
    try:
        if write_model and case.build is not None:
            model = case.build()
            model.save(case.model_file)
        model = keras.models.load_model(
            case.model_file, custom_objects=CUSTOM_OBJECTS, compile=False
        )
        return keras_side(model, case.pair, case.ids(), activations=case.activations)
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")


def main() -> None:
    from reference_keras.golden import write_golden

    GOLDEN.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        write_golden(case.golden_file, keras_golden(case, write_model=True))
        print(f"wrote {case.golden_file.relative_to(REPO)}")


if __name__ == "__main__":
    main()
