"""Batch scoring of files with a converted DeepMoji: top-k emoji (and optionally the features)
for every text of a .txt, .jsonl or .csv file.

``score_file(model, vocabulary, src, dst)``: a .txt (a text a line), .jsonl (a "text" field)
or .csv (a "text" column, else the first) file -> .jsonl or .csv with the top-k emoji (and
optionally the features), streamed: memory stays that of one batch, whatever the file size.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from torch import nn

from parity.apps.deepmoji.emoji import DEFAULT_TOP_K, EMOJIS, FEATURES, check_emojis, top_k
from parity.apps.deepmoji.pipeline import DEFAULT_BATCH_SIZE, run
from parity.errors import ConversionError
from parity.files import atomic_writer, open_regular, reading

#: Input and output formats of score_file, by file suffix.
INPUT_FORMATS = (".txt", ".jsonl", ".csv")
OUTPUT_FORMATS = (".jsonl", ".csv")


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
            from tqdm import tqdm  # optional (the finetune extra): without it, no bar

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
    maxlen: int | None = None,
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
    wanted = ("probs", *FEATURES) if features else ("probs",)
    n = 0
    try:
        with atomic_writer(dst, "scores", text=True, newline="" if csv_out else None) as out:
            writer = _Writer(out, csv_out, k, features)
            writer.header()
            for texts in _chunks(read_texts(src, field), batch_size):
                found = run(
                    model, texts, vocabulary, maxlen=maxlen, batch_size=batch_size, outputs=wanted
                )
                probs, feats = found["probs"], found.get("encoding")
                check_emojis(probs.shape[1], emojis)
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
