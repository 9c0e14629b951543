"""Keras' losses on probabilities, and L2 regularizers as loss terms.

Why: the converted models output probabilities (the Keras models end in sigmoid/softmax), and
Keras' crossentropies on probabilities clip them to [epsilon, 1 - epsilon] (1e-7), so a saturated
prediction costs log(1e-7), not infinity, and passes no gradient. torch's BCELoss clamps the log at
-100 instead and nn.CrossEntropyLoss wants logits.

One Keras subtlety: when the probabilities come straight from a sigmoid/softmax *activation*,
Keras (TensorFlow backend) finds the logits behind them (``_keras_logits``) and uses the
numerically exact logits formula instead of clipping. Pass ``logits=`` to get that: it is what
``model.fit`` does on a model whose last layer is Dense(activation="sigmoid" | "softmax").

Reduction is Keras' default "sum_over_batch_size": mean over the batch; binary crossentropy first
averages over its last axis, as keras.losses.binary_crossentropy does.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from parity.conventions import L2_DEFAULT, LOSS_EPSILON

__all__ = [
    "binary_crossentropy",
    "categorical_crossentropy",
    "l2",
    "l2_penalty",
    "sparse_categorical_crossentropy",
]


def _clip(probs: Tensor) -> Tensor:
    return torch.clamp(probs, LOSS_EPSILON, 1.0 - LOSS_EPSILON)


def binary_crossentropy(
    probs: Tensor | None, target: Tensor, *, logits: Tensor | None = None, reduce: bool = True
) -> Tensor:
    """Keras binary_crossentropy: mean over the last axis, then over the batch (``reduce``).

    From probabilities: -(y log p + (1 - y) log(1 - p)) with p clipped to [1e-7, 1 - 1e-7].
    From ``logits``: max(z, 0) - z y + log(1 + exp(-|z|)) (tf.nn.sigmoid_cross_entropy_with_logits).
    """
    if logits is not None:
        target = target.to(logits.dtype)
        per = torch.clamp(logits, min=0) - logits * target + torch.log1p(torch.exp(-logits.abs()))
    else:
        if probs is None:
            raise ValueError("pass probs or logits")
        target = target.to(probs.dtype)
        p = _clip(probs)
        per = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    per = per.mean(dim=-1)
    return per.mean() if reduce else per


def categorical_crossentropy(
    probs: Tensor | None, target: Tensor, *, logits: Tensor | None = None, reduce: bool = True
) -> Tensor:
    """Keras categorical_crossentropy on one-hot (or soft) targets over the last axis.

    From probabilities: renormalise p to sum 1, clip to [1e-7, 1 - 1e-7], -sum(y log p).
    From ``logits``: -sum(y log_softmax(z)) (tf.nn.softmax_cross_entropy_with_logits).
    """
    if logits is not None:
        per = -(target.to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    else:
        if probs is None:
            raise ValueError("pass probs or logits")
        p = _clip(probs / probs.sum(dim=-1, keepdim=True))
        per = -(target.to(probs.dtype) * torch.log(p)).sum(dim=-1)
    return per.mean() if reduce else per


def sparse_categorical_crossentropy(
    probs: Tensor | None, target: Tensor, *, logits: Tensor | None = None, reduce: bool = True
) -> Tensor:
    """Keras sparse_categorical_crossentropy on integer targets.

    From probabilities: log of p clipped to [1e-7, 1 - 1e-7] (no renormalisation), then used as
    logits of a softmax crossentropy, as Keras' TensorFlow backend does.
    """
    if logits is None and probs is None:
        raise ValueError("pass probs or logits")
    z = logits if logits is not None else torch.log(_clip(probs))
    per = F.cross_entropy(z, target.long().reshape(z.shape[:-1]), reduction="none")
    return per.mean() if reduce else per


def l2(weight: Tensor, factor: float = L2_DEFAULT) -> Tensor:
    """keras.regularizers.L2(factor)(w) = factor * sum(w^2): a loss term, not weight decay.

    Keras casts the factor with ops.cast, i.e. through float32, even for float64 weights."""
    rounded = float(np.float32(factor))
    return torch.tensor(rounded, dtype=weight.dtype, device=weight.device) * torch.sum(
        torch.square(weight)
    )


def l2_penalty(weights: Iterable[Tensor], factor: float = L2_DEFAULT) -> Tensor:
    """Sum of l2(w) over ``weights``, what Keras adds to the loss for each regularised kernel."""
    terms = [l2(w, factor) for w in weights]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()
