"""Fine-tuning data: DeepMoji benchmark JSONL -> encoded splits (ids and targets).

A record is {"text", "label", "split"}; label is an int (binary or multi-class) or a list (one-hot
multi-class, or multi-hot multi-label). Texts are encoded with parity.text, as the reference Keras
models were fed (Keras' pad_sequences defaults: pre-padding, pre-truncation).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from parity.conventions import MAX_FINETUNE_CLASSES, MAX_MULTILABEL_CLASSES
from parity.files import open_regular, reading
from parity.text import encode

SPLITS = ("train", "val", "test")
#: Record fields every JSONL line needs.
FIELDS = frozenset({"text", "label", "split"})


@dataclass
class TaskData:
    """Encoded splits: ids (N, T) int64 and targets (N, C) float, C = the head's outputs."""

    ids: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    task: str  # "binary" | "multiclass" | "multilabel"
    num_classes: int

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, targets) of one split."""
        return self.ids[name], self.targets[name]


def _label_problem(label: Any, first: Any) -> str | None:
    """Why ``label`` is not a class id or a 0/1 list shaped like the first record's, if so."""
    if isinstance(first, list):
        if not 0 < len(first) <= MAX_MULTILABEL_CLASSES:
            return f"a 0/1 label list must have 1 to {MAX_MULTILABEL_CLASSES} classes"
        ok = isinstance(label, list) and len(label) == len(first)
        ok = ok and all(v in (0, 1) and not isinstance(v, (bool, float)) for v in label)
        return None if ok else f"label {label!r} is not a 0/1 list of length {len(first)}"
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        return f"label {label!r} is not a class id (an int >= 0)"
    if label >= MAX_FINETUNE_CLASSES:
        return f"label {label} is over {MAX_FINETUNE_CLASSES - 1:,}, the largest class id taken"
    return None


def read_jsonl(path: str | os.PathLike[str]) -> dict[str, tuple[list[str], list[Any]]]:
    """DeepMoji benchmark JSONL ({"text", "label", "split"} a line) -> {split: (texts, labels)}.
    A label is a class id or, in every record alike, a 0/1 list (one-hot or multi-hot)."""
    splits: dict[str, tuple[list[str], list[Any]]] = {}
    first: Any = None
    with reading(path, "data file"), open_regular(path, "data file", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from exc
            if not isinstance(rec, dict) or not FIELDS <= set(rec):
                raise ValueError(f"{path}:{n}: a record needs text, label and split")
            if not isinstance(rec["split"], str):
                raise ValueError(f"{path}:{n}: split {rec['split']!r} is not a string")
            first = rec["label"] if first is None else first
            problem = _label_problem(rec["label"], first)
            if problem or not isinstance(rec["text"], str):
                raise ValueError(f"{path}:{n}: {problem or 'text is not a string'}")
            texts, labels = splits.setdefault(rec["split"], ([], []))
            texts.append(rec["text"])
            labels.append(rec["label"])
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} split")
    return splits


def _task_of(labels: list[Any]) -> tuple[str, int]:
    if isinstance(labels[0], list):
        arr = np.asarray(labels)
        never = np.flatnonzero(arr.sum(0) == 0)
        if never.size:  # a class no record has: nothing to learn, a model trained for nothing
            shown = ", ".join(str(i) for i in never[:10]) + (", ..." if never.size > 10 else "")
            raise ValueError(
                f"{never.size} of {arr.shape[1]} label classes are 1 in no record (class {shown})"
            )
        return ("multiclass" if (arr.sum(1) == 1).all() else "multilabel"), arr.shape[1]
    n = int(max(labels)) + 1
    return ("binary" if n <= 2 else "multiclass"), max(n, 2)


def _targets(labels: list[Any], task: str, num_classes: int) -> np.ndarray:
    if task == "binary":
        return np.asarray(labels, dtype=np.float64).reshape(-1, 1)
    if isinstance(labels[0], list):
        return np.asarray(labels, dtype=np.float64)
    return np.eye(num_classes)[np.asarray(labels, dtype=np.int64)]


def encode_dataset(
    splits: dict[str, tuple[list[str], list[Any]]],
    vocabulary: dict[str, int],
    maxlen: int,
    vocab_size: int | None = None,
) -> TaskData:
    """Texts -> ids (parity.text.encode: Keras pad_sequences defaults), labels -> targets.
    ``vocab_size``: ids the model's embedding has; words beyond it become the unknown token."""
    task, num_classes = _task_of([label for s in SPLITS for label in splits[s][1]])
    ids = {s: encode(splits[s][0], vocabulary, maxlen, vocab_size=vocab_size) for s in SPLITS}
    targets = {s: _targets(splits[s][1], task, num_classes) for s in SPLITS}
    return TaskData({s: v.astype(np.int64) for s, v in ids.items()}, targets, task, num_classes)


def binary_view(data: TaskData, column: int) -> TaskData:
    """One class of a multi-label task as a binary task (DeepMoji's class-average tuning)."""
    targets = {s: t[:, column : column + 1] for s, t in data.targets.items()}
    return TaskData(data.ids, targets, "binary", 2)
