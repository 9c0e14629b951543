"""DeepMoji as its users use it: emoji for texts, sentence features, batch scoring of files.

- ``emojize(model, texts, vocabulary)``: the top-k of DeepMoji's 64 emoji with probabilities
  (``examples/score_texts_emojis.py``), for a converted 64-class DeepMoji.
- ``encode_texts(model, texts, vocabulary)``: the attention-pooled sentence features, what
  DeepMoji's ``deepmoji_feature_encoding`` model returns (``examples/encode_texts.py``): the
  (N, 2 * 2H + E) = (N, 2304) vector [bi_lstm_1, bi_lstm_0, tanh(embedding)] pooled by the
  attention, which feeds the softmax.
- ``score_file(model, vocabulary, src, dst)``: a .txt (a text a line), .jsonl (a "text" field)
  or .csv (a "text" column, else the first) file -> .jsonl or .csv with the top-k emoji (and
  optionally the features), streamed: memory stays that of one batch, whatever the file size.
- ``extend_embedding(model, n)``: n new embedding rows, initialised as Keras would
  (U(-0.05, 0.05)), for words ``parity.text.extend_vocabulary`` added (DeepMoji's
  ``deepmoji_transfer(extend_embedding=n)``).

Texts are encoded exactly as DeepMoji's ``SentenceTokenizer`` does (``parity.text.encode``,
post-padded and post-truncated to ``maxlen``, DeepMoji's examples' 30 by default).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import Tensor, nn

from parity.conventions import EMBEDDING_UNIFORM_LIMIT
from parity.errors import ConversionError
from parity.files import atomic_writer, open_regular, reading
from parity.text import encode

#: DeepMoji's 64 emoji in the pretrained model's output order (DeepMoji's emoji_unicode.csv).
EMOJIS: tuple[str, ...] = tuple(
    chr(int(cp, 16))
    for cp in (
        "1f602 1f612 1f629 1f62d 1f60d 1f614 1f44c 1f60a 2764 1f60f 1f601 1f3b6 1f633 1f4af "
        "1f634 1f60c 263a 1f64c 1f495 1f611 1f605 1f64f 1f615 1f618 2665 1f610 1f481 1f61e "
        "1f648 1f62b 270c 1f60e 1f621 1f44d 1f622 1f62a 1f60b 1f624 270b 1f637 1f44f 1f440 "
        "1f52b 1f623 1f608 1f613 1f494 2661 1f3a7 1f64a 1f609 1f480 1f616 1f604 1f61c 1f620 "
        "1f645 1f4aa 1f44a 1f49c 1f496 1f499 1f62c 2728"
    ).split()
)
#: DeepMoji's examples encode texts to this many tokens.
DEFAULT_MAXLEN = 30
DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 64
#: Input and output formats of score_file, by file suffix.
INPUT_FORMATS = (".txt", ".jsonl", ".csv")
OUTPUT_FORMATS = (".jsonl", ".csv")


def load_emojis(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """An emoji list in DeepMoji's emoji_unicode.csv layout (``\\U0001f602,1f602`` a line: the
    second column is the code point(s) in hex), or one emoji a line."""
    emojis = []
    with reading(path, "emoji list"), open_regular(path, "emoji list", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            cells = line.split(",")
            try:
                if len(cells) > 1:
                    emojis.append("".join(chr(int(cp, 16)) for cp in cells[1].split()))
                else:
                    emojis.append(cells[0])
            except (ValueError, OverflowError) as exc:
                raise ValueError(f"{path}:{n}: not an emoji line ({exc})") from exc
    return tuple(emojis)


def top_k(probs: np.ndarray, k: int = DEFAULT_TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) probabilities -> (indices, probabilities) of the k largest per row, largest first
    (DeepMoji's ``top_elements``; equal probabilities in class order)."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(ids: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(ids), batch_size):
        yield ids[start : start + batch_size]


def _run(
    model: nn.Module, ids: np.ndarray, batch_size: int, *, features: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities (N, C) and, when asked, the attention-pooled features (N, D)."""
    captured: list[Tensor] = []
    hook = None
    if features:
        attention = getattr(model, "attlayer", None)
        if attention is None:
            raise ValueError("sentence features need a DeepMoji model (no 'attlayer' module)")
        hook = attention.register_forward_hook(lambda _m, _i, out: captured.append(out[0]))
    device, training = _device_of(model), model.training
    probs, feats = [], []
    try:
        model.eval()
        with torch.no_grad():
            for batch in _batches(ids, batch_size):
                x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.int64)).to(device)
                probs.append(model(x).float().cpu().numpy())
                if captured:
                    feats.append(captured.pop().float().cpu().numpy())
    finally:
        model.train(training)
        if hook is not None:
            hook.remove()
    if not probs:
        raise ValueError("no texts to run")
    return np.concatenate(probs), (np.concatenate(feats) if features else None)


def _ids(texts: Sequence[str], vocabulary: Mapping[str, int], maxlen: int, model: nn.Module):
    vocab_size = _embedding(model).num_embeddings
    return encode(
        texts, vocabulary, maxlen, vocab_size=vocab_size, padding="post", truncating="post"
    )


def predict(
    model: nn.Module,
    texts: str | Sequence[str],
    vocabulary: Mapping[str, int],
    *,
    maxlen: int = DEFAULT_MAXLEN,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Texts -> the model's probabilities (N, C), texts encoded as DeepMoji does."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        return np.zeros((0, model.softmax.out_features), np.float32)
    return _run(model, _ids(texts, vocabulary, maxlen, model), batch_size, features=False)[0]


def emojize(
    model: nn.Module,
    texts: str | Sequence[str],
    vocabulary: Mapping[str, int],
    *,
    k: int = DEFAULT_TOP_K,
    maxlen: int = DEFAULT_MAXLEN,
    emojis: Sequence[str] = EMOJIS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[list[tuple[str, float]]]:
    """Per text, the k most likely emoji with their probabilities, most likely first."""
    probs = predict(model, texts, vocabulary, maxlen=maxlen, batch_size=batch_size)
    _check_emojis(probs.shape[1], emojis)
    order, top = top_k(probs, k)
    return [
        [(emojis[i], float(p)) for i, p in zip(row, prow, strict=True)]
        for row, prow in zip(order, top, strict=True)
    ]


def encode_texts(
    model: nn.Module,
    texts: str | Sequence[str],
    vocabulary: Mapping[str, int],
    *,
    maxlen: int = DEFAULT_MAXLEN,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Texts -> DeepMoji's sentence features (N, attention width: 2304 for the full model),
    float32: the attention-weighted average that feeds the classifier."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        return np.zeros((0, model.attlayer.weight.shape[0]), np.float32)
    ids = _ids(texts, vocabulary, maxlen, model)
    feats = _run(model, ids, batch_size, features=True)[1]
    assert feats is not None
    return feats


def _check_emojis(num_classes: int, emojis: Sequence[str]) -> None:
    if num_classes != len(emojis):
        raise ValueError(
            f"the model has {num_classes} classes but {len(emojis)} emoji are named: "
            "use DeepMoji's 64-class model or pass its own emoji list"
        )


# --- files ------------------------------------------------------------------------------------


def _suffix(path: str | os.PathLike[str], allowed: tuple[str, ...], what: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{path}: {what} must end in {', '.join(allowed)}")
    return suffix


def read_texts(path: str | os.PathLike[str], field: str = "text") -> Iterator[str]:
    """Stream texts: .txt one a line (blank lines kept as empty texts), .jsonl the ``field`` of
    each record (or a bare string), .csv the ``field`` column (else the first column)."""
    suffix = _suffix(path, INPUT_FORMATS, "input")
    newline = "" if suffix == ".csv" else None
    with (
        reading(path, "input"),
        open_regular(path, "input", encoding="utf-8", newline=newline) as f,
    ):
        if suffix == ".txt":
            for line in f:
                yield line.rstrip("\r\n")
        elif suffix == ".jsonl":
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                rec = json.loads(line)
                if not isinstance(rec, (str, dict)):
                    raise ValueError(f"{path}:{n}: a record is {type(rec).__name__}, not an object")
                text = rec if isinstance(rec, str) else rec.get(field)
                if not isinstance(text, str):
                    raise ValueError(f"{path}:{n}: no string {field!r} in the record")
                yield text
        else:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None:
                return
            column = header.index(field) if field in header else 0
            if field not in header:  # no header naming the column: the first row is a text
                yield header[column]
            for row in rows:
                yield row[column] if len(row) > column else ""


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress(total: int | None, enabled: bool | None) -> Any:
    """A tqdm bar (on a terminal unless ``enabled``), or a stand-in doing nothing."""
    if enabled is not False:
        try:
            from tqdm import tqdm

            return tqdm(total=total, unit="text", disable=None if enabled is None else False)
        except ImportError:
            pass
    return _NoBar()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


@dataclasses.dataclass
class _Writer:
    """Rows out as JSONL or CSV; one line per text."""

    out: TextIO
    csv_out: bool
    k: int
    features: bool

    def header(self) -> None:
        if self.csv_out:
            cols = ["text", "top_k_total"]
            cols += [f"emoji_{i}" for i in range(1, self.k + 1)]
            cols += [f"prob_{i}" for i in range(1, self.k + 1)]
            csv.writer(self.out).writerow(cols + (["features"] if self.features else []))

    def rows(self, texts, order, top, emojis, feats) -> None:
        for i, text in enumerate(texts):
            names = [emojis[j] for j in order[i]]
            probs = [round(float(p), 6) for p in top[i]]
            if self.csv_out:
                row = [text, round(float(top[i].sum()), 6), *names, *probs]
                if feats is not None:
                    row.append(" ".join(f"{v:.7g}" for v in feats[i]))
                csv.writer(self.out).writerow(row)
            else:
                rec: dict[str, Any] = {"text": text, "emojis": names, "probs": probs}
                if feats is not None:
                    rec["features"] = [float(f"{v:.7g}") for v in feats[i]]
                self.out.write(json.dumps(rec, ensure_ascii=False) + "\n")


def score_file(
    model: nn.Module,
    vocabulary: Mapping[str, int],
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    k: int = DEFAULT_TOP_K,
    maxlen: int = DEFAULT_MAXLEN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    emojis: Sequence[str] = EMOJIS,
    features: bool = False,
    field: str = "text",
    progress: bool | None = None,
) -> int:
    """Score every text of ``src`` into ``dst`` (.jsonl: {"text", "emojis", "probs"[,
    "features"]} a line; .csv: text, top_k_total, emoji_1..k, prob_1..k[, features]), one
    batch in memory at a time; written to a temporary file and moved into place at the end.
    ``progress``: None = a bar on a terminal only. Returns the number of texts."""
    csv_out = _suffix(dst, OUTPUT_FORMATS, "output") == ".csv"
    _suffix(src, INPUT_FORMATS, "input")
    total = _count_lines(src)
    bar = _progress(total, progress)
    n = 0
    try:
        with atomic_writer(dst, "scores", text=True, newline="" if csv_out else None) as out:
            writer = _Writer(out, csv_out, k, features)
            writer.header()
            for texts in _chunks(read_texts(src, field), batch_size):
                ids = _ids(texts, vocabulary, maxlen, model)
                probs, feats = _run(model, ids, batch_size, features=features)
                _check_emojis(probs.shape[1], emojis)
                order, top = top_k(probs, k)
                writer.rows(texts, order, top, emojis, feats)
                n += len(texts)
                bar.update(len(texts))
    finally:
        bar.close()
    return n


def _count_lines(path: str | os.PathLike[str]) -> int | None:
    """Lines in a file (the progress bar's total; CSV quoting may make it approximate)."""
    try:
        with open_regular(path) as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except (OSError, ConversionError):
        return None  # read_texts names the problem


# --- vocabulary extension ---------------------------------------------------------------------


def _embedding(model: nn.Module) -> nn.Embedding:
    """The embedding token ids go into: ``model.embedding`` (the pairs), else the first one."""
    found = getattr(model, "embedding", None)
    if isinstance(found, nn.Embedding):
        return found
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return module
    raise ValueError("the model has no nn.Embedding to take token ids")


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
    emb = _embedding(model)
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
