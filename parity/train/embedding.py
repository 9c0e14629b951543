"""Growing a converted model's token embedding for the words parity.text.extend_vocabulary added
(DeepMoji's ``deepmoji_transfer(extend_embedding=n)``), as `parity finetune --extend-vocab`
does before training.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from parity.arch import arch_of
from parity.conventions import EMBEDDING_UNIFORM_LIMIT


def extend_embedding(
    model: nn.Module, new_rows: int, *, generator: torch.Generator | None = None
) -> nn.Module:
    """Grow the model's token embedding by ``new_rows`` rows, in place: old rows kept, new
    rows U(-0.05, 0.05) as Keras' Embedding initialises them (DeepMoji builds the bigger
    Keras layer and copies the pretrained rows over its first rows). The model's config
    (``vocab_size``) follows, so ``parity.save``/``parity.load`` round-trip it."""
    if new_rows < 0:
        raise ValueError(f"new_rows must be >= 0, got {new_rows}")
    if new_rows == 0:
        return model
    emb = arch_of(model).token_embedding(model)
    config = getattr(model, "config", None)
    if not (dataclasses.is_dataclass(config) and hasattr(config, "vocab_size")):
        raise ValueError(
            f"cannot extend the vocabulary of a {type(model).__name__}: its config has no "
            "vocab_size (registered pairs such as deepmoji and embedding_dense have one)"
        )
    old = emb.weight.detach()
    rows = torch.empty(new_rows, old.shape[1], dtype=old.dtype, device=old.device)
    torch.nn.init.uniform_(
        rows, -EMBEDDING_UNIFORM_LIMIT, EMBEDDING_UNIFORM_LIMIT, generator=generator
    )
    emb.weight = nn.Parameter(torch.cat([old, rows]), requires_grad=emb.weight.requires_grad)
    emb.num_embeddings = old.shape[0] + new_rows
    model.config = dataclasses.replace(config, vocab_size=emb.num_embeddings)
    return model
