"""Metrics as DeepMoji reports them, from predicted probabilities per split.

Accuracy for SS-Youtube and SS-Twitter; F1 for SE0714, Olympic, PsychExp, SCv1, SCv2-GEN and
(our choice: imbalanced, not in the paper) kaggle-insults. F1 is the positive class' F1 at the
decision threshold chosen on the validation split; with several classes it is the average over
classes of that binary F1 ("class average").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: DeepMoji benchmark -> the metric the paper reports for it (kaggle-insults: our choice).
DATASET_METRICS: dict[str, str] = {
    "SS-Youtube": "accuracy",
    "SS-Twitter": "accuracy",
    "SE0714": "f1",
    "Olympic": "f1",
    "PsychExp": "f1",
    "SCv1": "f1",
    "SCv2-GEN": "f1",
    "kaggle-insults": "f1",
}
METRICS = ("accuracy", "f1")
#: Decision thresholds tried on the validation split for F1.
F1_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def f1_binary(y: np.ndarray, pred: np.ndarray) -> float:
    """F1 of the positive class (0 when nothing is predicted positive correctly)."""
    tp = float(np.sum((pred == 1) & (y == 1)))
    fp = float(np.sum((pred == 1) & (y == 0)))
    fn = float(np.sum((pred == 0) & (y == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def tuned_f1(
    p_val: np.ndarray, y_val: np.ndarray, p_test: np.ndarray, y_test: np.ndarray
) -> tuple[float, float]:
    """Binary F1 on test at the threshold that maximises F1 on validation: (f1, threshold)."""
    scores = [f1_binary(y_val, (p_val >= t).astype(int)) for t in F1_THRESHOLDS]
    best = float(F1_THRESHOLDS[int(np.argmax(scores))])
    return f1_binary(y_test, (p_test >= best).astype(int)), best


def accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    """One sigmoid unit: threshold 0.5; several units: argmax."""
    if probs.shape[1] == 1:
        return float(np.mean((probs[:, 0] > 0.5) == (targets[:, 0] > 0.5)))
    return float(np.mean(probs.argmax(1) == targets.argmax(1)))


def class_average_f1(
    p: dict[str, np.ndarray], y: dict[str, np.ndarray]
) -> tuple[float, list[float]]:
    """Average over output columns of the val-tuned binary F1 (one column: the positive class)."""
    per = [
        tuned_f1(p["val"][:, c], y["val"][:, c], p["test"][:, c], y["test"][:, c])[0]
        for c in range(p["test"].shape[1])
    ]
    return float(np.mean(per)), per


def score(metric: str, p: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> dict[str, Any]:
    """The DeepMoji metric on test (and val, for reference), from probabilities per split."""
    if metric == "accuracy":
        return {
            "metric": metric,
            "test": accuracy(p["test"], y["test"]),
            "val": accuracy(p["val"], y["val"]),
        }
    f1, per_class = class_average_f1(p, y)
    return {"metric": metric, "test": f1, "per_class": per_class}


def metric_for(data_path: str | os.PathLike[str], task: str) -> str:
    """DeepMoji's metric for a known benchmark; otherwise F1 for multi-label, else accuracy."""
    return DATASET_METRICS.get(Path(data_path).stem, "f1" if task == "multilabel" else "accuracy")
