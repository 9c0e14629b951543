"""Hostile TensorFlow checkpoints, SavedModels and safetensors files, crafted structure by
structure: each one cost minutes or gigabytes before the readers bounded their work by counts
(entries, fields, children, decoded bytes). Each must now end in seconds with one
ConversionError naming the file, or read correctly; what a file names many times is read once.

The bytes are built with tests/tf_bundles.py; a deadline turns a hang into a failure.
"""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import parity
from parity import api
from parity.conventions import (
    MAX_JSON_BYTES,
    MAX_SAFETENSORS_BYTES,
    MAX_SAFETENSORS_HEADER_BYTES,
    MAX_SAFETENSORS_TENSORS,
    MAX_TF_GRAPH_FIELDS,
    MAX_TF_INDEX_BYTES,
    MAX_TF_INDEX_FIELDS,
    MAX_TF_MESSAGE_FIELDS,
    MAX_TF_OBJECT_FIELDS,
    MAX_TF_OBJECTS,
    MAX_TF_TABLE_BLOCKS,
    MAX_TF_TABLE_DECODED_BYTES,
)
from parity.keras import tensor_bundle, tf_checkpoint
from parity.keras.read import read_keras_file
from tests import tf_bundles
from tests.conftest import WEIGHTS
from tests.edits import deadline
from tests.tf_bundles import (
    TableBuilder,
    Tensor,
    block,
    bundle_entries,
    field_bytes,
    field_varint,
    handle,
    keras_checkpoint,
    numeric,
    strings,
    varint,
    write_bundle,
    write_index,
)

#: A test that runs longer than this is hung: fail it instead of waiting (unbounded, these
#: cases ran for minutes).
DEADLINE_SECONDS = 15
GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
#: A protobuf field number no message here defines (key byte 0x78: field 15, varint).
UNKNOWN_FIELD = field_varint(15, 1)


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    with deadline(DEADLINE_SECONDS):
        yield


def _layers() -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    rng = np.random.default_rng(2)
    return [
        ("embedding", [("embeddings", rng.standard_normal((9, 4)).astype(np.float32))]),
        (
            "dense",
            [
                ("kernel", rng.standard_normal((4, 2)).astype(np.float32)),
                ("bias", rng.standard_normal(2).astype(np.float32)),
            ],
        ),
    ]


def _prefix(tmp: Path) -> Path:
    prefix = tmp / "ckpt" / "w"
    prefix.parent.mkdir(exist_ok=True)
    return prefix


def _refused(path: Path, match: str, read: Callable[[Path], Any] = read_keras_file) -> str:
    """The one ConversionError reading ``path`` raises: it matches and names the file."""
    with pytest.raises(parity.ConversionError, match=match) as caught:
        read(path)
    message = str(caught.value)
    assert str(path) in message or str(path.parent) in message, message
    return message


def _count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Wrap ``owner.name`` so that each call is counted (in the returned one-item list)."""
    original = getattr(owner, name)
    calls = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _weights(prefix: Path) -> dict[str, np.ndarray]:
    return {w.name: w.array for layer in read_keras_file(prefix).layers for w in layer.weights}


# --- the index: blocks, entries, decoded bytes --------------------------------------------------


def _entry_bytes(key: bytes, value: bytes) -> bytes:
    """One block entry sharing nothing with the key before it."""
    return varint(0) + varint(len(key)) + varint(len(value)) + key + value


def _one_restart(entries: bytes) -> bytes:
    """A block's contents: ``entries`` and a single restart point at 0."""
    return entries + struct.pack("<II", 0, 1)


def test_index_naming_one_empty_block_millions_of_times_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8M index entries (48 MB) all naming one empty data block: refused once past the block
    count any real table has, the empty block decoded once."""
    blocks = _count_calls(monkeypatch, tensor_bundle._Table, "block")
    builder = TableBuilder()
    empty = handle(*builder.add(block([])))
    index = _one_restart(_entry_bytes(b"\xff", empty) * 8_000_000)
    assert len(index) < MAX_TF_INDEX_BYTES
    prefix = _prefix(tmp_path)
    write_index(prefix, builder.finish_with_index(index), [b""])
    _refused(prefix, f"more than {MAX_TF_TABLE_BLOCKS:,} data blocks")
    assert blocks[0] == 3  # metaindex, index, the empty block


def test_empty_block_named_many_times_reads_correctly_decoding_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tensors = keras_checkpoint(_layers())
    entries, shards = bundle_entries(tensors)
    builder = TableBuilder()
    data = [(entries[-1][0], handle(*builder.add(block(entries))))]
    empty = (entries[-1][0], handle(*builder.add(block([]))))
    prefix = _prefix(tmp_path)
    write_index(prefix, builder.finish_with_index(block(data + [empty] * 50_000)), shards)
    blocks = _count_calls(monkeypatch, tensor_bundle._Table, "block")
    weights = _weights(prefix)
    assert blocks[0] == 4  # metaindex, index, the data block, the empty block
    layers = dict(_layers())
    np.testing.assert_array_equal(weights["dense/kernel:0"], layers["dense"][0][1])
    np.testing.assert_array_equal(weights["embedding/embeddings:0"], layers["embedding"][0][1])


def test_snappy_block_named_40_times_is_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries, shards = bundle_entries(keras_checkpoint(_layers()))
    # every entry in one snappy data block, one of them carrying 4 MB (an unknown field)
    big = list(entries)
    big[-1] = (big[-1][0], big[-1][1] + field_bytes(15, b"\1" * 4 * 2**20))
    builder = TableBuilder()
    named = (big[-1][0], handle(*builder.add(block(big), snappy=True)))
    prefix = _prefix(tmp_path)
    write_index(prefix, builder.finish_with_index(block([named] * 40)), shards)
    decoded = _count_calls(monkeypatch, tensor_bundle, "snappy_decompress")
    _refused(prefix, "names the data block at 0 twice")
    assert decoded[0] == 1
    # an empty snappy block named 40 times beside the real one: read correctly, decoded once
    builder = TableBuilder()
    data = (entries[-1][0], handle(*builder.add(block(entries), snappy=True)))
    empty = (entries[-1][0], handle(*builder.add(block([]), snappy=True)))
    write_index(prefix, builder.finish_with_index(block([data] + [empty] * 40)), shards)
    decoded[0] = 0
    assert "dense/bias:0" in _weights(prefix)
    assert decoded[0] == 2


def _overlapping_blocks(count: int, span: int) -> bytes:
    """A table whose index names ``count`` distinct, valid data blocks that all cover the same
    ``span`` bytes (each block's value holds the blocks and trailers before it): a small file
    that costs ``count * span`` bytes of checksumming."""
    header_size, gap = 8, 13  # entry header slot; restart array (8) + trailer (5) per block
    starts = [header_size * k for k in range(count)]
    ends = [span + gap * k for k in range(count)]
    data = bytearray(ends[-1] + 5)
    keys = [bytes([0x41 + k // 26, 0x41 + k % 26]) for k in range(count)]  # increasing
    for start, end, key in zip(starts, ends, keys, strict=True):
        head = varint(0) + varint(len(key))
        value_start = start + len(head) + 3 + len(key)  # a 3-byte value length
        value = end - 8 - value_start
        assert 2**14 <= value < 2**21 and len(key) <= header_size - 5
        data[start:value_start] = head + varint(value) + key
        data[end - 8 : end] = struct.pack("<II", 0, 1)
    index = []
    for start, end, key in zip(starts, ends, keys, strict=True):  # in order: each covers the last
        crc = tensor_bundle.mask_crc(tensor_bundle.crc32c(bytes(data[start:end]) + b"\0"))
        data[end : end + 5] = b"\0" + struct.pack("<I", crc)
        index.append((key, handle(start, end - start)))
    builder = TableBuilder()
    builder.out += data
    return builder.finish_with_index(block(index))


def test_overlapping_blocks_are_charged_to_the_decoded_byte_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty valid blocks over the same 300 KB: each block's checksum is work, counted against
    MAX_TF_TABLE_DECODED_BYTES (lowered here to 1 MiB to keep the file small) and refused
    before it is done, not after."""
    prefix = _prefix(tmp_path)
    write_index(prefix, _overlapping_blocks(40, 300_000), [b""])
    crcs = _count_calls(monkeypatch, tensor_bundle, "crc32c")
    monkeypatch.setattr(tensor_bundle, "MAX_TF_TABLE_DECODED_BYTES", 2**20)
    _refused(prefix, "more than 1,048,576 bytes checksummed, decompressed or assembled")
    assert crcs[0] == 2 + 3  # metaindex, index, then the three blocks the budget allows
    # the structure itself is valid: under the real limit, the read ends at the missing header
    monkeypatch.setattr(tensor_bundle, "MAX_TF_TABLE_DECODED_BYTES", MAX_TF_TABLE_DECODED_BYTES)
    _refused(prefix, "without its bundle header")


def test_keys_sharing_a_long_prefix_are_bounded_by_the_decoded_byte_budget(
    tmp_path: Path,
) -> None:
    """100k keys of 60 KB each, every one sharing all but 3 bytes with the one before: 660 KB
    of block that would assemble 6 GB of keys. Refused at MAX_TF_TABLE_DECODED_BYTES."""
    prefix_bytes = 60 * 2**10
    first = b"k" * prefix_bytes + (0).to_bytes(3, "big")
    entries = bytearray(_entry_bytes(first, b""))
    for number in range(1, 100_000):
        entries += varint(prefix_bytes) + varint(3) + varint(0) + number.to_bytes(3, "big")
    builder = TableBuilder()
    separator = b"k" * prefix_bytes + (100_000).to_bytes(3, "big")
    data = handle(*builder.add(_one_restart(bytes(entries))))
    prefix = _prefix(tmp_path)
    write_index(prefix, builder.finish_with_index(block([(separator, data)])), [b""])
    tracemalloc.start()
    try:
        _refused(prefix, f"more than {MAX_TF_TABLE_DECODED_BYTES:,} bytes")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MAX_TF_TABLE_DECODED_BYTES


def test_bundle_header_with_25_million_fields_is_refused(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path)
    write_bundle(prefix, keras_checkpoint(_layers()), header=field_varint(1, 1) * 25_000_000)
    _refused(prefix, f"malformed bundle header .*more than {MAX_TF_MESSAGE_FIELDS:,} fields")


def test_entries_share_one_field_budget(tmp_path: Path) -> None:
    """600 entries of 4,000 fields each: every message is within its own bound, the index as a
    whole is not."""
    tensors = keras_checkpoint(_layers())
    for number in range(600):
        extra = numeric(np.zeros(1, np.float32))
        extra.extra_entry = UNKNOWN_FIELD * 4000
        tensors[f"extra/{number:04d}"] = extra
    prefix = _prefix(tmp_path)
    write_bundle(prefix, tensors, block_entries=64)
    assert 600 * 4000 > MAX_TF_INDEX_FIELDS and 4000 < MAX_TF_MESSAGE_FIELDS
    _refused(prefix, f"more than {MAX_TF_INDEX_FIELDS:,} protobuf fields in the index")


# --- the object graph and keras_metadata.pb -----------------------------------------------------


def _with_graph(tmp: Path, graph: bytes, **extra: Tensor) -> Path:
    tensors = keras_checkpoint(_layers())
    tensors[GRAPH_KEY] = strings([graph])
    tensors.update(extra)
    prefix = _prefix(tmp)
    write_bundle(prefix, tensors)
    return prefix


def _reference(node: int, name: bytes) -> bytes:
    return field_bytes(1, field_varint(1, node) + field_bytes(2, name))


def test_object_graph_root_with_6_million_children_is_refused(tmp_path: Path) -> None:
    root = _reference(1, b"x") * 6_000_000
    prefix = _with_graph(tmp_path, field_bytes(1, root) + field_bytes(1, b""))
    _refused(prefix, f"object graph is malformed .*more than {MAX_TF_OBJECT_FIELDS:,} fields")


def test_object_graph_shares_one_field_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five objects of 100k children each: each within its own bound, the graph as a whole is
    not (the graph's bound lowered to 2**20 here: the real one takes seconds to reach)."""
    monkeypatch.setattr(tf_checkpoint, "MAX_TF_GRAPH_FIELDS", 2**20)
    node = field_bytes(1, _reference(0, b"") * 100_000)
    assert 5 * 100_000 * 3 > 2**20 and 100_000 < MAX_TF_OBJECT_FIELDS <= MAX_TF_GRAPH_FIELDS
    prefix = _with_graph(tmp_path, node * 5)
    _refused(prefix, "more than 1,048,576 protobuf fields in the object graph")


def test_layers_sharing_one_big_object_cannot_multiply_the_walk(tmp_path: Path) -> None:
    """5,000 layers each holding the same object of 5,000 children: 25M steps if each layer's
    walk started afresh; all walks together are bounded."""
    layers, leaves = 5000, 5000
    hub = layers + 1
    nodes: list[tuple[list[tuple[int, str]], tuple[str, str] | None]] = [
        ([(1 + i, f"layer-{i}") for i in range(layers)], None)
    ]
    nodes += [([(hub, "cell")], None) for _ in range(layers)]
    nodes.append(([(hub + 1 + j, f"x{j}") for j in range(leaves)], None))
    nodes += [([], None) for _ in range(leaves)]
    prefix = _with_graph(tmp_path, tf_bundles.object_graph(nodes))
    _refused(prefix, f"more than {MAX_TF_GRAPH_FIELDS:,} steps")


def _saved_model(tmp: Path) -> Path:
    saved = tmp / "saved"
    (saved / "variables").mkdir(parents=True)
    write_bundle(saved / "variables" / "variables", keras_checkpoint(_layers()))
    (saved / "saved_model.pb").write_bytes(b"")
    return saved


def test_keras_metadata_with_30_million_unknown_fields_is_refused(tmp_path: Path) -> None:
    saved = _saved_model(tmp_path)
    metadata = UNKNOWN_FIELD * 30_000_000
    assert len(metadata) <= MAX_TF_INDEX_BYTES
    (saved / "keras_metadata.pb").write_bytes(metadata)
    message = _refused(saved, f"malformed Keras metadata .*more than {MAX_TF_OBJECTS:,} fields")
    assert "keras_metadata.pb" in message


# --- tensors: each stored tensor read once --------------------------------------------------------


def _offset_of(tensors: dict[str, Tensor], name: str) -> int:
    """Where bundle_entries puts ``name``'s bytes in shard 0 (tensors go in name order)."""
    before = [t for n, t in tensors.items() if n.encode() < name.encode() and t.shard == 0]
    return sum(len(t.data) for t in before)


def _with_aliases(tmp: Path, keys: list[str], stored: Tensor, aliases: dict[str, Tensor]) -> Path:
    """A checkpoint whose one layer's variable i is stored under keys[i]: ``stored`` under
    keys[0], the ``aliases`` (no bytes of their own) pointing at its bytes."""
    tensors = keras_checkpoint(_layers())
    tensors[GRAPH_KEY] = strings([_aliasing_graph(len(keys), keys)])
    tensors[keys[0]] = stored
    tensors.update(aliases)
    offset = _offset_of(tensors, keys[0])
    for alias in aliases.values():
        alias.overrides.setdefault("offset", offset)
    prefix = _prefix(tmp)
    write_bundle(prefix, tensors)
    return prefix


def _alias(of: Tensor, **overrides: int) -> Tensor:
    """A tensor entry with no bytes of its own, declaring ``of``'s size and checksum."""
    fields = {"size": len(of.data), "crc32c": of.crc, **overrides}
    return Tensor(b"", of.dtype_code, of.shape, of.crc, overrides=fields)


def _aliasing_graph(count: int, keys: list[str]) -> bytes:
    """A model whose one layer holds ``count`` variables, variable i stored under keys[i]."""
    nodes: list[tuple[list[tuple[int, str]], tuple[str, str] | None]] = [
        ([(1, "layer-0"), (1, "layer_with_weights-0")], None),
        ([(2 + i, f"k{i}") for i in range(count)], None),
    ]
    nodes += [([], (f"dense/k{i}", keys[i])) for i in range(count)]
    return tf_bundles.object_graph(nodes)


@pytest.mark.parametrize("alias", ["one key", "one location"])
def test_tensor_aliased_by_256_variables_is_read_once(
    alias: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 8 MB tensor named by 256 variables (through one key, or through 256 keys at the same
    shard offset) is read, checksummed and charged once: not 2 GB."""
    array = np.arange(2 * 2**20, dtype=np.float32)
    stored = numeric(array)
    if alias == "one key":
        keys = ["shared"] * 256
        prefix = _with_aliases(tmp_path, keys, stored, {})
    else:
        keys = [f"alias/{i:03d}" for i in range(256)]
        prefix = _with_aliases(tmp_path, keys, stored, {key: _alias(stored) for key in keys[1:]})
    reads = _count_calls(monkeypatch, tensor_bundle.TensorBundle, "_raw")
    tracemalloc.start()
    try:
        kfile = read_keras_file(prefix)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (layer,) = kfile.layers
    assert len(layer.weights) == 256
    assert reads[0] == 2  # the object graph, then the one stored tensor
    assert peak < 4 * array.nbytes, f"peak {peak:,} bytes"
    np.testing.assert_array_equal(layer.weights[0].array, array)
    first = layer.weights[0].array
    assert all(np.may_share_memory(w.array, first) for w in layer.weights)
    assert all(w.array.shape == array.shape for w in layer.weights)


def test_aliases_with_a_bad_checksum_are_still_refused(tmp_path: Path) -> None:
    """A cached read still checks every name's own checksum."""
    stored = numeric(np.arange(16, dtype=np.float32))
    prefix = _with_aliases(
        tmp_path, ["a", "b"], stored, {"b": _alias(stored, crc32c=stored.crc ^ 1)}
    )
    _refused(prefix, "tensor 'b' fails its checksum")


# --- FIFOs: refused by name, never waited on --------------------------------------------------


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_in_place_of_checkpoint_files_are_refused_without_blocking(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path)
    write_bundle(prefix, keras_checkpoint(_layers()))
    index = Path(f"{prefix}.index")
    _fifo(index)
    for path in (prefix, prefix.parent, index):
        _refused(path, "checkpoint index is not a regular file")
    assert not tensor_bundle.is_table(index)
    saved = _saved_model(tmp_path)
    _fifo(saved / "keras_metadata.pb")
    _refused(saved, "Keras metadata is not a regular file")
    (saved / "keras_metadata.pb").unlink()
    _fifo(saved / "variables" / "variables.index")
    _refused(saved, "checkpoint index is not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_as_a_safetensors_file_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    os.mkfifo(path)
    _refused(path, "safetensors file is not a regular file", parity.load)


# --- safetensors: the header checked before any tensor is read ----------------------------------


def _safetensors(path: Path, header: dict[str, Any] | str, data: bytes = b"") -> Path:
    text = header if isinstance(header, str) else json.dumps(header)
    encoded = text.encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return path


@pytest.fixture
def no_tensor_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that gets as far as opening the tensors."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("safe_open reached: tensors read before the header was checked")

    monkeypatch.setattr(api, "safe_open", refuse)


def _zero_size_tensors(count: int) -> str:
    metadata = {"format": "keras-parity", "arch": "generic", "config": "{}"}
    entry = '{"dtype":"F32","shape":[0],"data_offsets":[0,0]}'
    body = ",".join(f'"{number}":{entry}' for number in range(count))
    return '{"__metadata__":' + json.dumps(metadata) + "," + body + "}"


def test_safetensors_with_a_million_and_a_half_empty_tensors_is_refused(
    tmp_path: Path, no_tensor_reads: None
) -> None:
    path = _safetensors(tmp_path / "m.safetensors", _zero_size_tensors(1_500_000))
    assert path.stat().st_size > MAX_SAFETENSORS_HEADER_BYTES
    _refused(path, "safetensors header of .* bytes \\(limit", parity.load)


def test_safetensors_tensor_count_is_bounded_while_parsing(
    tmp_path: Path, no_tensor_reads: None
) -> None:
    count = MAX_SAFETENSORS_TENSORS + 100_000
    path = _safetensors(tmp_path / "m.safetensors", _zero_size_tensors(count))
    assert MAX_JSON_BYTES < path.stat().st_size < MAX_SAFETENSORS_HEADER_BYTES
    _refused(path, f"more than {MAX_SAFETENSORS_TENSORS + 2:,} objects", parity.load)


def test_safetensors_declared_sizes_are_checked_first(
    tmp_path: Path, no_tensor_reads: None
) -> None:
    path = tmp_path / "m.safetensors"
    gib = 2**30
    spec = {"dtype": "U8", "shape": [gib], "data_offsets": [0, gib]}
    header = json.dumps({f"t{n}": spec for n in range(MAX_SAFETENSORS_BYTES // gib + 1)})
    _safetensors(path, header)
    with path.open("r+b") as handle_:
        handle_.truncate(path.stat().st_size + gib)  # sparse: no disk used
    _refused(path, "bytes in all \\(limit", parity.load)
    cases = {
        "outside the file": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "needs 16 bytes, its offsets hold 8": {
            "dtype": "F32",
            "shape": [4],
            "data_offsets": [0, 8],
        },
        "unknown dtype": {"dtype": "F7", "shape": [1], "data_offsets": [0, 1]},
        "no shape of rank": {"dtype": "U8", "shape": [1] * 40, "data_offsets": [0, 1]},
        "has shape \\[-1\\]": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]},
    }
    for message, spec in cases.items():
        _safetensors(path, {"t": spec}, b"\0" * 8)
        _refused(path, message, parity.load)


def test_safetensors_names_and_shapes_are_checked_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = WEIGHTS / "embedding_dense.safetensors"
    assert parity.load(source) is not None  # the real file loads
    with safe_open(str(source), framework="pt") as handle_:
        metadata = handle_.metadata()
        tensors = {key: handle_.get_tensor(key) for key in handle_.keys()}
    renamed = dict(tensors)
    first = sorted(renamed)[0]
    renamed["renamed"] = renamed.pop(first)
    bad = tmp_path / "bad.safetensors"
    save_file(renamed, str(bad), metadata=metadata)
    reads = _count_calls(monkeypatch, api, "safe_open")
    _refused(bad, f"weights do not fit .*missing {first}; unexpected renamed", parity.load)
    assert reads[0] == 0
    reshaped = dict(tensors)
    reshaped[first] = reshaped[first].reshape(-1)[:-1].clone()
    save_file(reshaped, str(bad), metadata=metadata)
    _refused(bad, f"weights do not fit .*{first} has shape", parity.load)
    assert reads[0] == 0
