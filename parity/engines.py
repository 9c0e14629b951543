"""Score or encode a corpus with a converted model inside a data engine's batch API.

Engines that run user code per batch (Ray Data's ``map_batches``, Spark's
``predict_batch_udf``, a multiprocessing pool) want a callable that is built once per worker and
then called on batches. ``BatchScorer`` is that callable: its constructor loads the model (any
file ``parity finetune`` reads: a parity .safetensors or a Keras file) and the vocabulary once,
so the expensive part is paid per worker, not per batch; a call maps a batch (a dict of numpy
columns, as Ray's ``batch_format="numpy"`` gives, or a pandas DataFrame) with a text column
to the same batch plus the model's probabilities (``"probs"``) or its encoding (``"encoding"``,
the features the classifier head reads: DeepMoji's attention-pooled vector). Texts are encoded
with parity.text exactly as ``parity finetune`` and the reference Keras models feed them.

``score_with_ray`` runs it with Ray Data; the ``ray`` extra installs Ray
(``pip install "keras-parity[ray]"``). Nothing here imports an engine at module import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

#: What a call adds to the batch: the model's output, or the head's input (the encoding).
OUTPUTS = ("probs", "encoding")
#: Tokens per text when the model does not fix its input length (as `parity finetune`).
DEFAULT_MAXLEN = 50


class BatchScorer:
    """A stateful batch callable: model and vocabulary loaded once, then texts -> outputs.

    ``output``: ``"probs"`` (model outputs) or ``"encoding"`` (what the head reads).
    ``threads``: torch intra-op threads in this worker (an engine runs one scorer per core;
    None leaves torch's setting). ``maxlen``: tokens per text when the model does not fix it.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        vocabulary: str | os.PathLike[str] | None = None,
        *,
        column: str = "text",
        output: str = "probs",
        maxlen: int | None = None,
        batch_size: int = 256,
        threads: int | None = 1,
        arch: str | None = None,
        hard_sigmoid: str | None = None,
        config: str | os.PathLike[str] | None = None,
    ) -> None:
        from parity.api import load_model
        from parity.arch import arch_of
        from parity.text import load_vocabulary
        from parity.text.vocab import VOCABULARY_FILE
        from parity.train.loop import head_module

        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model, arch=arch, hard_sigmoid=hard_sigmoid, config=config).eval()
        vocab_path = Path(vocabulary) if vocabulary else Path(model).parent / VOCABULARY_FILE
        self.vocabulary = load_vocabulary(vocab_path)
        self.maxlen = arch_of(self.model).input_length(self.model) or maxlen or DEFAULT_MAXLEN
        self.vocab_size = _embedding_rows(self.model)
        self.column, self.output, self.batch_size = column, output, batch_size
        self._head = head_module(self.model) if output == "encoding" else None

    def encode(self, texts: Any) -> np.ndarray:
        """Texts -> ids (N, maxlen), as the model was fed (parity.text.encode)."""
        from parity.text import encode

        return encode(
            [str(t) for t in texts], self.vocabulary, self.maxlen, vocab_size=self.vocab_size
        )

    @torch.no_grad()
    def run(self, ids: np.ndarray) -> np.ndarray:
        """ids (N, T) -> (N, outputs) probabilities or (N, features) encodings, float32."""
        outs = []
        for start in range(0, len(ids), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(ids[start : start + self.batch_size]))
            outs.append(self._forward(x.long()).float().numpy())
        width = outs[0].shape[1] if outs else 0
        return np.concatenate(outs) if outs else np.zeros((0, width), np.float32)

    def _forward(self, ids: Tensor) -> Tensor:
        if self._head is None:
            return self.model(ids)
        seen: list[Tensor] = []
        handle = self._head.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
        try:
            self.model(ids)
        finally:
            handle.remove()
        return seen[0]

    def __call__(self, batch: Any) -> Any:
        """A batch (dict of numpy columns, or a pandas DataFrame) plus one output column."""
        values = self.run(self.encode(batch[self.column]))
        if isinstance(batch, dict):
            return {**batch, self.output: values}
        out = batch.copy()
        out[self.output] = list(values)
        return out


def _embedding_rows(model: nn.Module) -> int | None:
    """Ids the model's token embedding has (words beyond it become the unknown token)."""
    from parity.train.loop import NotFineTunable, token_embedding

    try:
        return token_embedding(model).num_embeddings
    except NotFineTunable:
        return None


def score_with_ray(
    dataset: Any,
    model: str | os.PathLike[str],
    vocabulary: str | os.PathLike[str] | None = None,
    *,
    workers: int = 1,
    batch_size: int = 256,
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
