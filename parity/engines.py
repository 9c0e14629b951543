"""Score or encode a corpus with a converted model inside a data engine's batch API.

Engines that run user code per batch (Ray Data's ``map_batches``, Spark's
``predict_batch_udf``, a multiprocessing pool) want a callable that is built once per worker and
then called on batches. ``BatchScorer`` is that callable: its constructor loads the model (any
file ``parity finetune`` reads: a parity .safetensors or a Keras file) and the vocabulary once,
so the expensive part is paid per worker, not per batch; a call maps a batch (a dict of numpy
columns, as Ray's ``batch_format="numpy"`` gives, or a pandas DataFrame) with a text column
to the same batch plus the model's probabilities (``"probs"``) or its encoding (``"encoding"``,
the features the classifier head reads: DeepMoji's attention-pooled vector). Texts are encoded
with parity.text exactly as ``parity finetune`` and the reference Keras models feed them
(parity.inference, the one way parity runs a model on texts).

``score_with_ray`` runs it with Ray Data; the ``ray`` extra installs Ray
(``pip install "keras-parity[ray]"``). Nothing here imports an engine at module import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parity.api import load_model
from parity.arch import arch_of
from parity.inference import (
    DEFAULT_BATCH_SIZE,
    OUTPUTS,
    TextFeed,
    encode_for,
    run_ids,
    text_length,
)
from parity.text import load_vocabulary
from parity.text.vocab import VOCABULARY_FILE


class BatchScorer:
    """A stateful batch callable: model and vocabulary loaded once, then texts -> outputs.

    ``output``: ``"probs"`` (model outputs) or ``"encoding"`` (what the head reads).
    ``threads``: torch intra-op threads in this worker (an engine runs one scorer per core;
    None leaves torch's setting). ``maxlen``: tokens per text when the model does not fix it
    (default parity.inference.DEFAULT_TEXT_LENGTH).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        vocabulary: str | os.PathLike[str] | None = None,
        *,
        column: str = "text",
        output: str = "probs",
        maxlen: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = 1,
        arch: str | None = None,
        hard_sigmoid: str | None = None,
        config: str | os.PathLike[str] | None = None,
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model, arch=arch, hard_sigmoid=hard_sigmoid, config=config).eval()
        vocab_path = Path(vocabulary) if vocabulary else Path(model).parent / VOCABULARY_FILE
        self.vocabulary = load_vocabulary(vocab_path)
        self.maxlen = text_length(self.model, maxlen)
        self.feed = TextFeed(self.maxlen)
        if output == "encoding":  # a model without a classifier head fails here, not per batch
            arch_of(self.model).head_layer(self.model)
        self.column, self.output, self.batch_size = column, output, batch_size

    def encode(self, texts: Any) -> np.ndarray:
        """Texts -> ids (N, maxlen), as the model was fed (parity.inference.encode_for)."""
        return encode_for(self.model, [str(t) for t in texts], self.vocabulary, self.feed)

    def run(self, ids: np.ndarray) -> np.ndarray:
        """ids (N, T) -> (N, outputs) probabilities or (N, features) encodings, float32."""
        return run_ids(self.model, ids, outputs=(self.output,), batch_size=self.batch_size)[
            self.output
        ]

    def __call__(self, batch: Any) -> Any:
        """A batch (dict of numpy columns, or a pandas DataFrame) plus one output column."""
        values = self.run(self.encode(batch[self.column]))
        if isinstance(batch, dict):
            return {**batch, self.output: values}
        out = batch.copy()
        out[self.output] = list(values)
        return out


def score_with_ray(
    dataset: Any,
    model: str | os.PathLike[str],
    vocabulary: str | os.PathLike[str] | None = None,
    *,
    workers: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    **scorer: Any,
) -> Any:
    """``dataset`` (a ray.data.Dataset with a text column) -> the same rows plus the output
    column, scored by ``workers`` actors (one model copy each, one CPU each). ``scorer``:
    BatchScorer's keyword arguments, and ``scorer_class`` to run a subclass of it."""
    return dataset.map_batches(
        scorer.pop("scorer_class", BatchScorer),
        fn_constructor_args=(str(model), None if vocabulary is None else str(vocabulary)),
        fn_constructor_kwargs={"batch_size": batch_size, **scorer},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray_actor_pool(workers),
        num_cpus=1,
    )


def ray_actor_pool(workers: int) -> Any:
    """A fixed pool of ``workers`` actors (Ray's ``concurrency=`` is deprecated since 2.51)."""
    from ray.data import ActorPoolStrategy

    return ActorPoolStrategy(size=workers)
