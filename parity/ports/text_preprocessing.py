"""Keras' text and categorical preprocessing layers inside a model: TextVectorization,
StringLookup, IntegerLookup, Hashing. A converted model with one of them takes strings (or raw
integers) and computes TensorFlow's ids exactly, without TensorFlow.

Parity notes:
- The string ops (standardize, split, n-grams) are parity.text.tf_strings, each checked against
  live TensorFlow; the hashes (FarmHash Fingerprint64, SipHash-2-4) are parity.text.tf_hash.
- The vocabulary comes from where Keras keeps it: the config's ``vocabulary`` list when the
  layer was built with one, else the .keras archive's assets/<layer path>/vocabulary.txt
  (TextVectorization: its ``_lookup_layer/vocabulary.txt``, which Keras loads last). It is read
  as the writing Keras' load_assets reads it: UTF-8; Keras 3 splits with str.splitlines (so \\r,
  \\x1c-\\x1e, \\x85, U+2028 and U+2029 end a token too, as they do when Keras reloads the
  file) and drops trailing empty lines, tf_keras splits on newlines only; the special tokens
  (mask, then num_oov_indices OOV tokens) recognised at its start, duplicates refused (Keras
  refuses them too).
- A tf_keras SavedModel keeps the vocabulary in none of those places: its table's keys and
  indices are constants of saved_model.pb, which parity.keras.saved_model_tables reads; the
  indices must be laid out as Keras builds them (vocabulary_from_table).
- Index layout, as Keras' IndexLookup: [mask (int output with a mask token)] + [OOV] *
  num_oov_indices + tokens. The mask token maps to 0 in int output and is dropped otherwise;
  an unknown token maps to the OOV index, or with several OOV indices to
  Fingerprint64(token) mod num_oov_indices (IntegerLookup: token floormod num_oov_indices unless
  oov_method="farmhash", which hashes the decimal string); num_oov_indices=0 refuses an unknown
  token, as Keras raises.
- Output modes: "int" (int64 ids; TextVectorization pads with 0 after the tokens and cuts to
  output_sequence_length, or pads to the batch's longest row), "one_hot", "multi_hot", "count"
  (depth = vocabulary size or max_tokens with pad_to_max_tokens) and "tf_idf" (counts times the
  stored idf_weights). Keras gives the counts as int64, but the next Keras 3 layer casts them to
  its float dtype: here they come out as floats of the model's dtype, the same values.
- Refused by name: custom standardize/split callables (Python code in the file), sparse=True,
  ragged=True, an encoding other than UTF-8, a vocabulary given as a file path outside the model
  or stored nowhere in the file (the reason per format: NO_VOCABULARY_REASONS), a salt that is
  not one or two 64-bit integers, a text with a lone surrogate (no UTF-8 form).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from parity.conventions import MAX_INPUT_LENGTH, MAX_VOCABULARY_TOKENS
from parity.convert.mapping import Row
from parity.errors import ConversionError
from parity.ports.registry import (
    MAX_DECLARED_SIZE,
    Config,
    Emitted,
    Example,
    LayerConverter,
    Shapes,
    no_rows,
    no_weights,
    simple_rows,
)
from parity.text import tf_hash, tf_strings

#: Output modes of the lookup layers (Keras' IndexLookup) and of Hashing.
LOOKUP_OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")
HASHING_OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count")
#: TextVectorization's output modes (no one_hot).
TEXT_OUTPUT_MODES = ("int", "multi_hot", "count", "tf_idf")
#: IntegerLookup's ways of spreading unknown integers over several OOV indices.
OOV_METHODS = ("floormod", "farmhash")
#: Keras' special tokens, by class: (mask_token, oov_token) defaults.
STRING_DEFAULTS = (None, "[UNK]")
INTEGER_DEFAULTS = (None, -1)
#: TextVectorization's lookup: mask "" in int output, none otherwise; OOV "[UNK]".
TEXT_MASK_TOKEN = ""
#: The asset file a lookup layer's vocabulary is saved to (Keras 3 IndexLookup.save_assets).
VOCABULARY_ASSET = "vocabulary.txt"
#: TextVectorization saves the vocabulary twice; Keras loads its lookup layer's copy last.
TEXT_LOOKUP_ASSET_DIR = "_lookup_layer/"
#: Config key the conversion fills with the vocabulary read from the file's assets.
VOCABULARY_KEY = "_vocabulary"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: tf_keras (Keras 2) reads vocabulary files differently from Keras 3 (parse_vocabulary_file).
KERAS2_MAJOR = 2
#: Digits of a decimal integer token a vocabulary file may hold (int64 has at most 20 chars).
MAX_INT_TOKEN_CHARS = 32

Token = bytes | int


# --- the vocabulary, as Keras' set_vocabulary / load_assets take it --------------------------


def parse_vocabulary_file(
    data: bytes, integer: bool, where: str, keras_major: int | None = 3
) -> list[Any]:
    """A vocabulary.txt as the Keras that wrote it reads it back (load_assets): Keras 3 splits
    with str.splitlines and drops trailing empty lines; Keras 2 (tf_keras) splits the text-mode
    read (\r\n and \r become \n) on \n only and keeps every line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConversionError(
            f"{where}: the vocabulary file is not UTF-8 (byte {exc.start}); Keras cannot load it"
        ) from exc
    if keras_major == KERAS2_MAJOR:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    else:
        lines = text.splitlines()
        while lines and lines[-1] == "":
            lines.pop()
    if len(lines) > MAX_VOCABULARY_TOKENS:
        raise ConversionError(
            f"{where}: the vocabulary file has {len(lines):,} lines, over {MAX_VOCABULARY_TOKENS:,}"
        )
    if not integer:
        return lines
    values = []
    for line in lines:
        if len(line) > MAX_INT_TOKEN_CHARS:
            raise ConversionError(f"{where}: vocabulary line {line[:40]!r}... is not an int64")
        try:
            values.append(int(line))
        except ValueError as exc:
            raise ConversionError(
                f"{where}: vocabulary line {line!r} is not an integer (IntegerLookup)"
            ) from exc
    return values


def _token(value: Any, integer: bool, where: str) -> Token:
    if integer:
        if isinstance(value, np.integer):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConversionError(f"{where}: vocabulary entry {value!r} is not an integer")
        if not INT64_MIN <= value <= INT64_MAX:
            raise ConversionError(f"{where}: vocabulary entry {value} does not fit int64")
        return value
    if not isinstance(value, str):
        raise ConversionError(f"{where}: vocabulary entry {value!r} is not a string")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConversionError(f"{where}: vocabulary entry {value!r} is not UTF-8") from exc


class IndexTable:
    """Keras' IndexLookup without TensorFlow: tokens -> indices (or back, with invert).

    ``vocabulary`` is what set_vocabulary receives: the tokens, optionally preceded by the special
    tokens in Keras' order (mask, then num_oov_indices OOV tokens), which are then skipped."""

    def __init__(
        self,
        vocabulary: Sequence[Any],
        *,
        integer: bool,
        mask_token: Any,
        oov_token: Any,
        num_oov_indices: int,
        output_mode: str = "int",
        max_tokens: int | None = None,
        pad_to_max_tokens: bool = False,
        invert: bool = False,
        oov_method: str = "floormod",
        salt: tuple[int, int] | None = None,
        where: str = "lookup layer",
    ) -> None:
        if output_mode not in LOOKUP_OUTPUT_MODES:
            raise ConversionError(f"{where}: output_mode={output_mode!r} is not supported")
        if not isinstance(num_oov_indices, int) or not 0 <= num_oov_indices <= MAX_DECLARED_SIZE:
            raise ConversionError(f"{where}: num_oov_indices={num_oov_indices!r} is not sane")
        if oov_method not in OOV_METHODS:
            raise ConversionError(f"{where}: oov_method={oov_method!r} is not supported")
        self.integer, self.invert, self.output_mode = integer, invert, output_mode
        self.mask_token, self.oov_token = mask_token, oov_token
        self.num_oov_indices, self.oov_method, self.salt = num_oov_indices, oov_method, salt
        self.oov_start = 1 if mask_token is not None and output_mode == "int" else 0
        self.token_start = self.oov_start + num_oov_indices
        values = list(vocabulary)
        if not values:
            raise ConversionError(f"{where}: the vocabulary is empty (Keras refuses one too)")
        special = [mask_token] * self.oov_start + [oov_token] * num_oov_indices
        tokens = values[self.token_start :] if values[: self.token_start] == special else values
        keys = [_token(t, integer, where) for t in tokens]
        self.mask_key = None if mask_token is None else _token(mask_token, integer, where)
        oov_key = None if oov_token is None else _token(oov_token, integer, where)
        index: dict[Token, int] = {}
        repeated = []
        for i, key in enumerate(keys):
            if key in index:
                repeated.append(key)
            index[key] = self.token_start + i
        if repeated:
            raise ConversionError(
                f"{where}: the vocabulary repeats {len(repeated)} token(s), e.g. "
                f"{repeated[0]!r} (Keras refuses a repeated term)"
            )
        if self.mask_key is not None and self.mask_key in index:
            raise ConversionError(
                f"{where}: the mask token {mask_token!r} appears among the vocabulary's tokens"
            )
        if invert and oov_key is not None and oov_key in index:
            raise ConversionError(
                f"{where}: the OOV token {oov_token!r} appears among the vocabulary's tokens"
            )
        self.size = self.token_start + len(keys)
        if max_tokens is not None and self.size > max_tokens:
            raise ConversionError(
                f"{where}: the vocabulary has {self.size} entries, over max_tokens={max_tokens}"
            )
        self.index = index
        self.tokens = keys
        self.depth = max_tokens if pad_to_max_tokens and max_tokens is not None else self.size

    def vocabulary(self) -> list[Any]:
        """As Keras' get_vocabulary(): special tokens first, then the tokens."""
        special = [self.mask_token] * self.oov_start + [self.oov_token] * self.num_oov_indices
        if self.integer:
            return special + list(self.tokens)
        return special + [t.decode("utf-8") for t in self.tokens]

    def lookup(self, key: Token) -> int | None:
        """The index of one token; None for the mask token outside int output (dropped)."""
        if self.mask_key is not None and key == self.mask_key:
            return 0 if self.output_mode == "int" else None
        found = self.index.get(key)
        if found is not None:
            return found
        if self.num_oov_indices == 0:
            raise ValueError(
                f"token {key!r} is not in the vocabulary and num_oov_indices=0 (Keras raises too)"
            )
        if self.num_oov_indices == 1:
            return self.oov_start
        return self.oov_start + self._oov_bucket(key)

    def _oov_bucket(self, key: Token) -> int:
        n = self.num_oov_indices
        if isinstance(key, int):
            if self.oov_method == "floormod":
                return key % n  # Python's % is floormod, as tf.math.floormod
            key = str(key).encode()  # tf.strings.as_string: the decimal form
        if self.salt is not None:
            return tf_hash.hash_bucket_strong(key, n, self.salt)
        return tf_hash.hash_bucket_fast(key, n)

    def inverse(self, index: int) -> Any:
        """invert=True: index -> token; the mask index -> mask token, unknown -> OOV token."""
        if self.mask_key is not None and index == 0:
            return self.mask_token
        offset = index - self.token_start
        if 0 <= offset < len(self.tokens):
            token = self.tokens[offset]
            return token if self.integer else token.decode("utf-8")
        return self.oov_token


def _float_probe(module: nn.Module) -> None:
    """A zero-size buffer that follows model.to(dtype): encodings come out in its dtype. Keras
    outputs multi_hot/count/one_hot as int64 but every Keras 3 layer after casts its input to
    its float compute dtype, which is what the next torch layer needs to be given; the values
    are the same counts."""
    module.register_buffer("_float", torch.zeros(0))


def encode_rows(
    rows: Sequence[Sequence[int | None]], output_mode: str, depth: int, idf: Tensor | None
) -> Tensor:
    """Keras' encode_categorical_inputs on rows of indices (None = dropped): (B, depth)."""
    counts = torch.zeros((len(rows), depth), dtype=torch.int64)
    for r, row in enumerate(rows):
        for i in row:
            if i is not None and 0 <= i < depth:  # tf.math.bincount drops out-of-range values
                counts[r, i] += 1
    if output_mode == "multi_hot":
        return (counts > 0).to(torch.int64)
    if output_mode == "tf_idf":
        if idf is None:
            raise ValueError("tf_idf output needs idf_weights")
        return counts.to(idf.dtype) * idf[:depth]
    return counts


# --- inputs ------------------------------------------------------------------------------------


def _rows(inputs: Any) -> tuple[list[list[Any]], int]:
    """Any batch a caller passes (list of str, numpy str/object/int array, torch tensor) as rows
    of values, and the rank it had (1: one value per row, 2: (B, T))."""
    if isinstance(inputs, Tensor):
        inputs = inputs.detach().cpu().numpy()
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 1:
            return [[v] for v in inputs.tolist()], 1
        if inputs.ndim == 2:
            return [list(r) for r in inputs.tolist()], 2
        raise ValueError(f"expected a (B,) or (B, T) batch, got shape {inputs.shape}")
    if isinstance(inputs, str | bytes):
        raise ValueError("expected a batch (a list of texts), got one text")
    rows = list(inputs)
    if all(isinstance(r, list | tuple | np.ndarray) for r in rows) and rows:
        return [list(r) for r in rows], 2
    return [[v] for v in rows], 1


def _text(value: Any) -> bytes:
    if isinstance(value, np.str_ | np.bytes_):
        value = value.item()
    return tf_strings.as_bytes(value)


def _integer(value: Any) -> int:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected an integer input, got {value!r}")
    return int(value)  # a float is cast to int64 as Keras does (truncation toward zero)


# --- the modules -------------------------------------------------------------------------------


class TextVectorization(nn.Module):
    """keras.layers.TextVectorization: a batch of texts -> ids (B, T) or (B, depth) encodings.

    forward takes a list of str/bytes, or a numpy array of them shaped (B,) or (B, 1)."""

    def __init__(
        self,
        vocabulary: Sequence[str],
        *,
        standardize: str | None = "lower_and_strip_punctuation",
        split: str | None = "whitespace",
        ngrams: int | Sequence[int] | None = None,
        output_mode: str = "int",
        output_sequence_length: int | None = None,
        max_tokens: int | None = None,
        pad_to_max_tokens: bool = False,
        idf_size: int = 0,
    ) -> None:
        super().__init__()
        if standardize not in tf_strings.STANDARDIZE_MODES:
            raise ConversionError(f"standardize={standardize!r} is not a Keras built-in mode")
        if split not in tf_strings.SPLIT_MODES:
            raise ConversionError(f"split={split!r} is not a Keras built-in mode")
        if output_mode not in TEXT_OUTPUT_MODES:
            raise ConversionError(f"output_mode={output_mode!r} is not supported")
        self.standardize, self.split, self.output_mode = standardize, split, output_mode
        self.widths = tf_strings.ngram_widths(ngrams)
        self.output_sequence_length = output_sequence_length
        self.table = IndexTable(
            vocabulary,
            integer=False,
            mask_token=TEXT_MASK_TOKEN,
            oov_token=STRING_DEFAULTS[1],
            num_oov_indices=1,
            output_mode=output_mode,
            max_tokens=max_tokens,
            pad_to_max_tokens=pad_to_max_tokens,
            where="TextVectorization",
        )
        _float_probe(self)
        if output_mode == "tf_idf":
            # Keras 3 stores the weights twice, the layer's and its inner lookup layer's, and
            # loads the inner one last: that one is used.
            self.register_buffer("idf_weights", torch.zeros(idf_size))
            self.register_buffer("lookup_idf_weights", torch.zeros(idf_size))

    def tokens(self, text: str | bytes) -> list[bytes]:
        """One text's tokens as Keras looks them up (standardized, split, n-grams)."""
        data = tf_strings.standardize(_text(text), self.standardize)
        pieces = tf_strings.split(data, self.split)
        return tf_strings.ngrams(pieces, self.widths) if self.widths else pieces

    def forward(self, texts: Any) -> Tensor:
        rows, rank = _rows(texts)
        if rank == 2 and any(len(r) != 1 for r in rows):
            raise ValueError("TextVectorization takes (B,) or (B, 1) texts")
        ids = [[self.table.lookup(t) for t in self.tokens(r[0])] for r in rows]
        if self.output_mode != "int":
            idf = getattr(self, "lookup_idf_weights", None)
            return encode_rows(ids, self.output_mode, self.table.depth, idf).to(self._float.dtype)
        length = self.output_sequence_length
        if length is None:
            length = max((len(r) for r in ids), default=0)
        out = torch.zeros((len(ids), length), dtype=torch.int64)
        for r, row in enumerate(ids):
            row = row[:length]  # Keras keeps the first tokens and pads after them
            out[r, : len(row)] = torch.tensor(row, dtype=torch.int64)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.table.size} tokens, standardize={self.standardize!r}, split={self.split!r}, "
            f"ngrams={self.widths}, output_mode={self.output_mode!r}, "
            f"output_sequence_length={self.output_sequence_length}"
        )


class Lookup(nn.Module):
    """keras.layers.StringLookup / IntegerLookup on a (B,) or (B, T) batch."""

    def __init__(self, table: IndexTable, idf_size: int = 0) -> None:
        super().__init__()
        self.table = table
        _float_probe(self)
        if table.output_mode == "tf_idf":
            self.register_buffer("idf_weights", torch.zeros(idf_size))

    def forward(self, inputs: Any) -> Tensor | np.ndarray:
        rows, rank = _rows(inputs)
        convert = _integer if self.table.integer else _text
        if self.table.invert:
            out = [[self.table.inverse(_integer(v)) for v in row] for row in rows]
            array = np.array(out, dtype=object)
            return array[:, 0] if rank == 1 else array
        ids = [[self.table.lookup(convert(v)) for v in row] for row in rows]
        out = _encode(ids, rank, self.table.output_mode, self.table.depth, self)
        return out if self.table.output_mode == "int" else out.to(self._float.dtype)

    def extra_repr(self) -> str:
        return f"{self.table.size} entries, output_mode={self.table.output_mode!r}"


def _encode(ids: list[list[int | None]], rank: int, mode: str, depth: int, module: nn.Module):
    if mode == "int":
        out = torch.tensor([[0 if i is None else i for i in r] for r in ids], dtype=torch.int64)
        return out[:, 0] if rank == 1 else out.reshape(len(ids), -1)
    if mode == "one_hot":
        if rank == 2 and any(len(r) != 1 for r in ids):
            flat = [[i] for r in ids for i in r]
            hot = encode_rows(flat, "count", depth, None)
            return hot.reshape(len(ids), -1, depth)
        return encode_rows(ids, "count", depth, None)
    if rank == 1:  # Keras bincounts a rank-1 batch as one sample
        ids = [[i for r in ids for i in r]]
        return encode_rows(ids, mode, depth, getattr(module, "idf_weights", None))[0]
    return encode_rows(ids, mode, depth, getattr(module, "idf_weights", None))


def _same(value: Any, mask: Any) -> bool:
    """Whether an input equals the mask value, texts compared as the bytes TensorFlow holds."""
    if isinstance(value, str | bytes) and isinstance(mask, str | bytes):
        return tf_strings.as_bytes(value) == tf_strings.as_bytes(mask)
    return value == mask


class Hashing(nn.Module):
    """keras.layers.Hashing: FarmHash Fingerprint64 (or SipHash with a salt) mod num_bins."""

    def __init__(
        self,
        num_bins: int,
        mask_value: Any = None,
        salt: tuple[int, int] | None = None,
        output_mode: str = "int",
    ) -> None:
        super().__init__()
        if output_mode not in HASHING_OUTPUT_MODES:
            raise ConversionError(f"Hashing output_mode={output_mode!r} is not supported")
        self.num_bins, self.mask_value, self.salt = num_bins, mask_value, salt
        self.output_mode = output_mode
        _float_probe(self)

    def bin(self, value: Any) -> int:
        bins = self.num_bins
        masked = self.mask_value is not None and bins > 1
        if isinstance(value, np.generic):
            value = value.item()
        if masked and _same(value, self.mask_value):
            return 0
        if isinstance(value, float):
            value = int(value)  # Keras casts floats to int64 first
        data = str(value).encode() if isinstance(value, int) else _text(value)
        n = bins - 1 if masked else bins
        if self.salt is not None:
            found = tf_hash.hash_bucket_strong(data, n, self.salt)
        else:
            found = tf_hash.hash_bucket_fast(data, n)
        return found + 1 if masked else found

    def forward(self, inputs: Any) -> Tensor:
        rows, rank = _rows(inputs)
        ids = [[self.bin(v) for v in row] for row in rows]
        out = _encode(ids, rank, self.output_mode, self.num_bins, self)
        return out if self.output_mode == "int" else out.to(self._float.dtype)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, mask_value={self.mask_value!r}, salt={self.salt}"


# --- from a Keras config -----------------------------------------------------------------------


#: The string encodings the lookup layers may be configured with that read texts as UTF-8.
UTF8_NAMES = (None, "utf-8", "UTF-8", "utf8")


def _refuse_common(config: Config, cls: str) -> None:
    if config.get("encoding") not in UTF8_NAMES:
        raise ConversionError(f"{cls} encoding={config.get('encoding')!r}: only UTF-8 is supported")
    if config.get("sparse"):
        raise ConversionError(f"{cls} with sparse=True (sparse tensor outputs) is not supported")
    if config.get("ragged"):
        raise ConversionError(f"{cls} with ragged=True (ragged outputs) is not supported")


def _size(config: Config, key: str, limit: int = MAX_DECLARED_SIZE) -> int | None:
    """A size the config declares, refused past ``limit``: the module allocates (B, size)
    outputs from it, so a hostile config must not declare billions."""
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
        raise ConversionError(f"config declares {key}={value!r}, not a sane size (1..{limit:,})")
    return value


def config_vocabulary(config: Config, cls: str) -> list[Any]:
    """The vocabulary a layer's config holds (list), or the one conversion read from its assets."""
    found = config.get(VOCABULARY_KEY)
    if found is None:
        found = config.get("vocabulary")
    if isinstance(found, str):
        raise ConversionError(
            f"{cls}: the vocabulary is a file path ({found[:80]!r}) outside the model file; "
            "pass the layer a vocabulary list and re-save, or save as .keras (it stores the "
            "vocabulary in its assets)"
        )
    if not isinstance(found, list):
        raise ConversionError(
            f"{cls}: the file stores no vocabulary for this layer (a legacy .h5 keeps none, "
            "and neither does a config without assets); re-save the model as .keras, which "
            "keeps the vocabulary in its assets, or build the layer with vocabulary=[...]"
        )
    if len(found) > MAX_VOCABULARY_TOKENS:
        raise ConversionError(f"{cls}: vocabulary of {len(found):,} tokens is too large")
    return found


def _salt(config: Config) -> tuple[int, int] | None:
    salt = config.get("salt")
    if salt is None:
        return None
    if isinstance(salt, int) and not isinstance(salt, bool):
        salt = [salt, salt]
    if (
        not isinstance(salt, list | tuple)
        or len(salt) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in salt)
        or not all(INT64_MIN <= s <= INT64_MAX for s in salt)
    ):
        raise ConversionError(f"salt={salt!r} is not one or two 64-bit integers")
    return int(salt[0]), int(salt[1])


def _idf_weights(config: Config) -> tuple[str, ...]:
    return ("idf_weights",) if config.get("output_mode") == "tf_idf" else ()


def _text_idf_weights(config: Config) -> tuple[str, ...]:
    """TextVectorization saves its idf_weights, then its inner StringLookup's (the same)."""
    return ("idf_weights", "lookup_idf_weights") if config.get("output_mode") == "tf_idf" else ()


def _build_text_vectorization(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    _refuse_common(config, "TextVectorization")
    for key in ("standardize", "split"):
        value = config.get(key)
        if value is not None and value not in (
            tf_strings.STANDARDIZE_MODES if key == "standardize" else tf_strings.SPLIT_MODES
        ):
            raise ConversionError(
                f"TextVectorization {key}={value!r}: a custom {key} function is Python code "
                "saved with the model and is never run here; only Keras' built-in modes convert"
            )
    try:
        return TextVectorization(
            config_vocabulary(config, "TextVectorization"),
            standardize=config.get("standardize", "lower_and_strip_punctuation"),
            split=config.get("split", "whitespace"),
            ngrams=config.get("ngrams"),
            output_mode=config.get("output_mode", "int"),
            output_sequence_length=_size(config, "output_sequence_length", MAX_INPUT_LENGTH),
            max_tokens=_size(config, "max_tokens", MAX_VOCABULARY_TOKENS),
            pad_to_max_tokens=bool(config.get("pad_to_max_tokens", False)),
            idf_size=shapes.get("idf_weights", (0,))[0],
        )
    except ConversionError:
        raise
    except ValueError as exc:
        raise ConversionError(f"TextVectorization: {exc}") from exc


def _lookup_builder(integer: bool):
    cls = "IntegerLookup" if integer else "StringLookup"
    defaults = INTEGER_DEFAULTS if integer else STRING_DEFAULTS

    def build(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
        _refuse_common(config, cls)
        dtype = config.get("vocabulary_dtype", "int64" if integer else "string")
        if dtype not in (("int64", "int32") if integer else ("string",)):
            raise ConversionError(f"{cls} vocabulary_dtype={dtype!r} is not supported")
        num_oov = config.get("num_oov_indices", 1)
        table = IndexTable(
            config_vocabulary(config, cls),
            integer=integer,
            mask_token=config.get("mask_token", defaults[0]),
            oov_token=config.get("oov_token", defaults[1]),
            num_oov_indices=num_oov,
            output_mode=config.get("output_mode", "int"),
            max_tokens=_size(config, "max_tokens", MAX_VOCABULARY_TOKENS),
            pad_to_max_tokens=bool(config.get("pad_to_max_tokens", False)),
            invert=bool(config.get("invert", False)),
            oov_method=config.get("oov_method", "floormod"),
            salt=_salt(config),
            where=cls,
        )
        return Lookup(table, shapes.get("idf_weights", (0,))[0])

    return build


def _build_hashing(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    _refuse_common(config, "Hashing")
    mode = config.get("output_mode", "int")
    # int output only takes the remainder; encodings allocate (B, num_bins)
    num_bins = _size(
        config, "num_bins", MAX_DECLARED_SIZE if mode == "int" else MAX_VOCABULARY_TOKENS
    )
    if num_bins is None:
        raise ConversionError("Hashing config has no num_bins")
    return Hashing(num_bins, config.get("mask_value"), _salt(config), mode)


# --- parity port: the code for keras_layers.py's standalone copies ------------------------------

#: What the generated text layers need from keras_layers.py.
TEXT_HELPERS = ("FarmHash64", "SipHash24", "TextTable", "TextEncoding")


def _code(value: Any) -> str:
    """A config value as Python source in the generated code's style: double-quoted strings
    with escapes for what is not printable, lists and tuples of them, other literals as repr."""
    if isinstance(value, str):
        # ruff's quote preference: single quotes when that avoids escaping double ones
        quote = "'" if '"' in value and "'" not in value else '"'
        out = []
        for ch in value:
            if ch in quote + "\\":
                out.append("\\" + ch)
            elif ch.isprintable():
                out.append(ch)
            else:
                code = ord(ch)
                out.append(
                    f"\\x{code:02x}"
                    if code < 0x100
                    else f"\\u{code:04x}"
                    if code < 0x10000
                    else f"\\U{code:08x}"
                )
        return quote + "".join(out) + quote
    if isinstance(value, list):
        return "[" + ", ".join(_code(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_code(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _table_args(table: IndexTable) -> list[Any]:
    tokens = list(table.tokens) if table.integer else [t.decode("utf-8") for t in table.tokens]
    return [
        tokens,
        table.integer,
        table.mask_token,
        table.oov_token,
        table.num_oov_indices,
        table.oov_start,
        table.invert,
        table.oov_method,
        table.salt,
    ]


def _idf_size(module: nn.Module) -> int:
    idf = getattr(module, "idf_weights", None)
    return 0 if idf is None else int(idf.shape[0])


def _emit_text_vectorization(module: nn.Module, config: Config, masked: tuple[bool, ...]):
    tokens = [t.decode("utf-8") for t in module.table.tokens]
    args = [
        tokens,
        module.standardize,
        module.split,
        module.widths,
        module.output_mode,
        module.output_sequence_length,
        module.table.depth,
        _idf_size(module),
    ]
    constructor = f"KerasTextVectorization({', '.join(_code(a) for a in args)})"
    helpers = ("KerasTextVectorization", *TEXT_HELPERS)
    return Emitted(constructor, ("{out0} = {self}({x0})",), ("None",), helpers)


def _emit_lookup(module: nn.Module, config: Config, masked: tuple[bool, ...]):
    table = module.table
    args = [*_table_args(table), table.output_mode, table.depth, _idf_size(module)]
    constructor = f"KerasLookup({', '.join(_code(a) for a in args)})"
    helpers = ("KerasLookup", *TEXT_HELPERS)
    return Emitted(constructor, ("{out0} = {self}({x0})",), ("None",), helpers)


def _emit_hashing(module: nn.Module, config: Config, masked: tuple[bool, ...]):
    args = [module.num_bins, module.mask_value, module.salt, module.output_mode]
    constructor = f"KerasHashing({', '.join(_code(a) for a in args)})"
    helpers = ("KerasHashing", *TEXT_HELPERS)
    return Emitted(constructor, ("{out0} = {self}({x0})",), ("None",), helpers)


def _rows_with_probe(rows: Callable[[str, str, Config], list[Row]] = no_rows):
    """The class's rows plus the dtype probe's (a constant: no Keras weight)."""

    def with_probe(layer: str, path: str, config: Config) -> list[Row]:
        return [*rows(layer, path, config), (None, f"{path}._float", "zeros")]

    return with_probe


def call_preprocess(module: nn.Module, config: Config, xs: list[Any], masks: Any):
    """The layer's module on its raw input (strings or integers); no mask comes out."""
    return [module(xs[0])], [None]


# --- vocabulary from the file's assets --------------------------------------------------------


#: Why a file of this format has no vocabulary for an adapted layer (by KerasFile.format).
NO_VOCABULARY_REASONS = {
    "legacy-h5-model": "a legacy HDF5 file stores no vocabulary for an adapted layer",
    "legacy-h5-weights": "a weights-only file stores no vocabulary",
    "weights.h5": "a weights-only file stores no vocabulary",
    "tf-checkpoint": (
        "a TF checkpoint stores no vocabulary (pass config= the tf_keras SavedModel or .keras "
        "it came with: their saved_model.pb or assets hold it)"
    ),
    "keras": "the archive has no assets/<layer>/vocabulary.txt for it",
    "tf-saved-model": (
        "the layer is inside a nested model, whose table parity does not look up in "
        "saved_model.pb (only the top-level layers')"
    ),
}


def _special_tokens(config: Config, cls: str) -> list[Any]:
    """The mask and OOV tokens that precede the vocabulary's tokens, as Keras lays them out."""
    mode = config.get("output_mode", "int")
    if cls == "TextVectorization":
        mask, oov, num_oov = TEXT_MASK_TOKEN, STRING_DEFAULTS[1], 1
    else:
        defaults = INTEGER_DEFAULTS if cls == "IntegerLookup" else STRING_DEFAULTS
        mask = config.get("mask_token", defaults[0])
        oov = config.get("oov_token", defaults[1])
        num_oov = config.get("num_oov_indices", 1)
        if not isinstance(num_oov, int) or not 0 <= num_oov <= MAX_DECLARED_SIZE:
            raise ConversionError(f"{cls}: num_oov_indices={num_oov!r} is not sane")
    return [mask] * (mask is not None and mode == "int") + [oov] * num_oov


def vocabulary_from_table(
    config: Config, keys: Sequence[Any], values: Sequence[int], cls: str, where: str
) -> Config:
    """Config additions: the vocabulary of a table read from a SavedModel (keys and the indices
    they map to), checked to be the layout Keras builds: indices token_start, token_start + 1..."""
    if config.get("invert"):
        raise ConversionError(f"{where}: invert=True tables are not read from a SavedModel")
    special = _special_tokens(config, cls)
    order = sorted(range(len(values)), key=values.__getitem__)
    if [values[i] for i in order] != list(range(len(special), len(special) + len(values))):
        raise ConversionError(
            f"{where}: the table's indices are not {len(special)}, {len(special) + 1}, ...: "
            "not the layout Keras builds for this config"
        )
    tokens = []
    for i in order:
        key = keys[i]
        if isinstance(key, bytes):
            try:
                key = key.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConversionError(
                    f"{where}: vocabulary token {key[:40]!r} is not UTF-8"
                ) from exc
        tokens.append(key)
    return {VOCABULARY_KEY: special + tokens}


def vocabulary_from_assets(
    config: Config,
    assets: Mapping[str, bytes],
    directory: str,
    cls: str,
    where: str,
    fmt: str,
    table: Callable[[], tuple[list[Any], list[int]]] | None = None,
    keras_major: int | None = 3,
) -> Config:
    """Config additions: the vocabulary a Keras 3 archive stores for this layer in its assets
    (only when the config holds none, as Keras' load_assets does), or the table of a SavedModel
    (``table`` reads it). A layer with a vocabulary in none of these places is refused here,
    saying why for the file's format."""
    if config.get("vocabulary") is not None:
        return {}
    if table is not None:
        keys, values = table()
        return vocabulary_from_table(config, keys, values, cls, where)
    integer = cls == "IntegerLookup"
    candidates = [directory + VOCABULARY_ASSET]
    if cls == "TextVectorization":  # Keras loads the inner lookup layer's copy last
        candidates.insert(0, directory + TEXT_LOOKUP_ASSET_DIR + VOCABULARY_ASSET)
    found = [assets[c] for c in candidates if c in assets]
    if not found:
        reason = NO_VOCABULARY_REASONS.get(fmt, f"a {fmt} file stores no vocabulary")
        raise ConversionError(
            f"{where}: no vocabulary: its config holds none and {reason}. Re-save the model "
            "with Keras 3 as .keras (its assets keep the vocabulary), or rebuild the layer with "
            "vocabulary=[...] so that its config carries it"
        )
    if any(data != found[0] for data in found[1:]):
        raise ConversionError(
            f"{where}: the archive holds two different vocabularies for this layer "
            f"({', '.join(candidates)}); refusing to guess"
        )
    name = f"{where}: {candidates[0]}"
    return {VOCABULARY_KEY: parse_vocabulary_file(found[0], integer, name, keras_major)}


#: The examples' vocabulary and Keras' defaults (Keras' from_config needs them spelled out).
VOCABULARY = ["the", "cat", "sat", "on", "mat", "caf\u00e9", "stra\u00dfe"]
TEXT_DEFAULTS = {
    "standardize": "lower_and_strip_punctuation",
    "split": "whitespace",
    "ngrams": None,
}


def _text_example(**config: Any) -> Example:
    return Example({**TEXT_DEFAULTS, "vocabulary": VOCABULARY, **config}, "texts")


CONVERTERS: dict[str, LayerConverter] = {
    "TextVectorization": LayerConverter(
        _text_idf_weights,
        _build_text_vectorization,
        _rows_with_probe(
            simple_rows(
                _text_idf_weights,
                ("idf_weights", "idf_weights", "identity"),
                ("lookup_idf_weights", "lookup_idf_weights", "identity"),
            )
        ),
        call_preprocess,
        emit=_emit_text_vectorization,
        examples=(
            Example(
                {**TEXT_DEFAULTS, "vocabulary": VOCABULARY, "output_sequence_length": 6}, "texts"
            ),
            Example(
                {
                    "vocabulary": ["t", "h", "e", "a", "t h", "h e", "\u00e9"],
                    "split": "character",
                    "standardize": "lower",
                    "ngrams": [1, 2],
                    "output_sequence_length": 9,
                },
                "texts",
            ),
            Example(
                {**TEXT_DEFAULTS, "vocabulary": VOCABULARY, "output_mode": "multi_hot"}, "texts"
            ),
            # tf_idf (two stored idf copies for one Keras variable) is tested by
            # tests/test_text_vectorization.py on a saved model
            _text_example(output_mode="count", pad_to_max_tokens=True, max_tokens=12),
        ),
    ),
    "StringLookup": LayerConverter(
        _idf_weights,
        _lookup_builder(integer=False),
        _rows_with_probe(simple_rows(_idf_weights, ("idf_weights", "idf_weights", "identity"))),
        call_preprocess,
        emit=_emit_lookup,
        examples=(
            Example({"vocabulary": ["cat", "the", "caf\u00e9"], "num_oov_indices": 3}, "texts"),
            Example({"vocabulary": ["cat", "the"], "output_mode": "count"}, "texts"),
        ),
    ),
    "IntegerLookup": LayerConverter(
        _idf_weights,
        _lookup_builder(integer=True),
        _rows_with_probe(simple_rows(_idf_weights, ("idf_weights", "idf_weights", "identity"))),
        call_preprocess,
        emit=_emit_lookup,
        examples=(
            Example({"vocabulary": [1, 2, 3, 5, 8], "num_oov_indices": 2}, "integers"),
            Example({"vocabulary": [8, 2], "mask_token": 0}, "integers"),
        ),
    ),
    "Hashing": LayerConverter(
        no_weights,
        _build_hashing,
        _rows_with_probe(),
        call_preprocess,
        emit=_emit_hashing,
        examples=(
            Example({"num_bins": 16}, "texts"),
            Example({"num_bins": 16, "salt": 7, "mask_value": 0}, "integers"),
            Example({"num_bins": 5, "output_mode": "multi_hot"}, "integers"),
        ),
    ),
}

#: Classes whose vocabulary may live in a .keras archive's assets.
ASSET_CLASSES = ("TextVectorization", "StringLookup", "IntegerLookup")

#: The converted preprocessing modules (parity.text_preprocessor returns one of them).
PREPROCESSOR_TYPES = (TextVectorization, Lookup, Hashing)
