"""Scoring a corpus inside an engine's batch API (parity/engines.py).

The stateful BatchScorer run by Ray Data's map_batches, on a local two-CPU Ray, must give the
outputs the model gives when run directly on the same texts (every row, in any order Ray
returns them, to the float32 output tolerance); the same callable takes pandas batches and
gives encodings. The Ray test is skipped when the ``ray`` extra is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

import parity
from parity.check.tolerances import tolerance_for
from parity.engines import BatchScorer, score_with_ray
from tests.conftest import WEIGHTS

MODEL = WEIGHTS / "deepmoji_small.safetensors"
VOCAB = WEIGHTS / "vocabulary.json"
TEXTS = [
    "I love this song so much",
    "this is the worst video ever",
    "great job, really well done!",
    "boring and way too long",
    "",
    "what a beautiful voice",
    "I hate it when the sound cuts out",
    "funny :) and sad at the same time",
    "meh",
    "best thing I have seen all week, thank you",
    "no words",
] * 3
OUTPUT = tolerance_for(torch.float32, "cpu", "output")
#: Ray Data's own context warns about its renamed settings on every run.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    """A local Ray with 2 CPUs, stopped after the module."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _direct(output: str) -> np.ndarray:
    """The model run directly on the texts, ids encoded as parity finetune encodes them."""
    model = parity.load(MODEL).eval()
    scorer = BatchScorer(MODEL, VOCAB, output=output, threads=None)
    ids = torch.from_numpy(scorer.encode(TEXTS)).long()
    with torch.no_grad():
        if output == "probs":
            return model(ids).numpy()
        seen: list[torch.Tensor] = []
        handle = model.get_submodule("softmax").register_forward_hook(
            lambda m, inputs, out: seen.append(inputs[0])
        )
        model(ids)
        handle.remove()
        return seen[0].numpy()


def test_batch_scorer_takes_dicts_and_dataframes() -> None:
    """The same callable serves Ray's numpy batches and pandas batches (Spark, Ray pandas)."""
    scorer = BatchScorer(MODEL, VOCAB, batch_size=4)
    rows = np.array(TEXTS[:6], dtype=object)
    out = scorer({"text": rows, "id": np.arange(6)})
    np.testing.assert_allclose(out["probs"], _direct("probs")[:6], atol=OUTPUT.atol, rtol=0)
    assert list(out["id"]) == list(range(6))
    pd = pytest.importorskip("pandas")
    frame = scorer(pd.DataFrame({"text": TEXTS[:6]}))
    np.testing.assert_allclose(np.stack(frame["probs"]), out["probs"], atol=0, rtol=0)


def test_encoding_is_what_the_head_reads() -> None:
    """output="encoding": the features the classifier head takes (DeepMoji: attention-pooled)."""
    scorer = BatchScorer(MODEL, VOCAB, output="encoding", batch_size=8)
    out = scorer({"text": np.array(TEXTS, dtype=object)})
    np.testing.assert_allclose(out["encoding"], _direct("encoding"), atol=OUTPUT.atol, rtol=0)


def test_ray_map_batches_gives_the_direct_outputs(ray_local: object) -> None:
    """Ray Data, 2 actor workers, batches of 8: every row equals the direct run's."""
    import ray.data

    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    scored = score_with_ray(ds, MODEL, VOCAB, workers=2, batch_size=8)
    rows = sorted(scored.take_all(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == list(range(len(TEXTS)))
    got = np.stack([np.asarray(r["probs"]) for r in rows])
    np.testing.assert_allclose(got, _direct("probs"), atol=OUTPUT.atol, rtol=OUTPUT.rtol)
