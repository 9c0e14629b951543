"""A small TensorFlow tensor-bundle writer for tests: valid checkpoints without TensorFlow, and
each field of them corruptible on purpose (tests/test_tf_checkpoint.py's hostile cases).

Written from the format's description (LevelDB table, BundleHeaderProto, BundleEntryProto,
TrackableObjectGraph); tests check that TensorFlow itself reads what it writes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parity.keras.tensor_bundle import (
    DTYPES,
    FOOTER_SIZE,
    HANDLES_SIZE,
    SHARD_PATTERN,
    TABLE_MAGIC,
    crc32c,
    mask_crc,
)

DTYPE_CODES = {dtype.newbyteorder("<"): code for code, dtype in DTYPES.items()}
DT_STRING = 7


def varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def field_fixed32(number: int, value: int) -> bytes:
    return varint(number << 3 | 5) + struct.pack("<I", value)


def shape_proto(shape: Sequence[int]) -> bytes:
    return b"".join(field_bytes(2, field_varint(1, size)) for size in shape)


def object_graph(
    nodes: Sequence[tuple[Sequence[tuple[int, str]], tuple[str, str] | None]],
) -> bytes:
    """TrackableObjectGraph from (children [(node id, local name)], (full name, key) or None)."""
    out = b""
    for children, variable in nodes:
        body = b"".join(
            field_bytes(1, field_varint(1, node) + field_bytes(2, name.encode()))
            for node, name in children
        )
        if variable is not None:
            full_name, key = variable
            body += field_bytes(
                2,
                field_bytes(1, b"VARIABLE_VALUE")
                + field_bytes(2, full_name.encode())
                + field_bytes(3, key.encode()),
            )
        out += field_bytes(1, body)
    return out


def string_tensor(items: Sequence[bytes]) -> tuple[bytes, int]:
    """(bytes, masked crc) of a DT_STRING tensor's bundle encoding."""
    lengths = b"".join(varint(len(item)) for item in items)
    crc = 0
    for item in items:
        crc = crc32c(struct.pack("<I", len(item)), crc)
    length_crc = struct.pack("<I", mask_crc(crc))
    crc = crc32c(length_crc, crc)
    for item in items:
        crc = crc32c(item, crc)
    return lengths + length_crc + b"".join(items), mask_crc(crc)


@dataclass
class Tensor:
    """One tensor to write; the entry fields can be overridden to corrupt them."""

    data: bytes
    dtype_code: int
    shape: tuple[int, ...]
    crc: int
    shard: int = 0
    overrides: dict[str, int] = field(default_factory=dict)
    extra_entry: bytes = b""


def numeric(array: np.ndarray, shard: int = 0) -> Tensor:
    array = np.ascontiguousarray(array)
    little = array.astype(array.dtype.newbyteorder("<"))
    data = little.tobytes()
    return Tensor(data, DTYPE_CODES[little.dtype], array.shape, mask_crc(crc32c(data)), shard)


def strings(items: Sequence[bytes]) -> Tensor:
    data, crc = string_tensor(items)
    return Tensor(data, DT_STRING, (), crc)


def snappy_literals(data: bytes) -> bytes:
    """A valid snappy encoding of ``data`` as literals of at most 60 bytes (no copies)."""
    out = bytearray(varint(len(data)))
    for start in range(0, len(data), 60):
        chunk = data[start : start + 60]
        out.append((len(chunk) - 1) << 2)
        out += chunk
    return bytes(out)


def block(entries: Sequence[tuple[bytes, bytes]], restart_interval: int = 1) -> bytes:
    """One table block's contents: prefix-compressed entries, then the restart points."""
    out, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        previous = key
    if not restarts:
        restarts = [0]
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def handle(offset: int, size: int) -> bytes:
    """A block handle as the index and the footer store it."""
    return varint(offset) + varint(size)


class TableBuilder:
    """A table written block by block, for tables the regular writer never makes (blocks named
    many times, overlapping, huge): add blocks, then finish with the footer."""

    def __init__(self) -> None:
        self.out = bytearray()

    def add(self, contents: bytes, *, snappy: bool = False) -> tuple[int, int]:
        """Append a block (``snappy``: stored as snappy literals) and its trailer; its handle."""
        kind = b"\x00"
        if snappy:
            contents, kind = snappy_literals(contents), b"\x01"
        return self.add_raw(contents, kind)

    def add_raw(self, contents: bytes, kind: bytes = b"\x00") -> tuple[int, int]:
        """Append stored bytes as they are (already compressed, when ``kind`` says so)."""
        offset = len(self.out)
        self.out += contents
        self.out += kind + struct.pack("<I", mask_crc(crc32c(contents + kind)))
        return offset, len(contents)

    def finish(self, meta: tuple[int, int], index: tuple[int, int]) -> bytes:
        """The table's bytes: the blocks, then the footer naming the metaindex and the index."""
        handles = handle(*meta) + handle(*index)
        assert len(handles) <= HANDLES_SIZE and FOOTER_SIZE == HANDLES_SIZE + 8
        footer = handles.ljust(HANDLES_SIZE, b"\0") + struct.pack("<Q", TABLE_MAGIC)
        return bytes(self.out + footer)

    def finish_with_index(self, index: bytes) -> bytes:
        """An empty metaindex, the index block ``index`` (contents), the footer: the bytes."""
        meta = self.add(block([]))
        return self.finish(meta, self.add(index))


def table(
    entries: Sequence[tuple[bytes, bytes]],
    *,
    block_entries: int = 3,
    restart_interval: int = 2,
    edit_block: Callable[[int, bytes], bytes] | None = None,
    snappy: bool = False,
) -> bytes:
    """A LevelDB-format table: data blocks of ``block_entries`` entries, an index, a footer
    (``snappy``: every block stored as snappy literals, compression type 1)."""
    builder = TableBuilder()

    def write(contents: bytes, number: int) -> tuple[int, int]:
        if edit_block is not None:
            contents = edit_block(number, contents)
        return builder.add(contents, snappy=snappy)

    index = []
    chunks = [entries[i : i + block_entries] for i in range(0, len(entries), block_entries)]
    for number, chunk in enumerate(chunks):
        index.append((chunk[-1][0], handle(*write(block(chunk, restart_interval), number))))
    meta = write(block([]), -1)
    return builder.finish(meta, write(block(index), -2))


def write_bundle(
    prefix: Path,
    tensors: dict[str, Tensor],
    *,
    num_shards: int = 1,
    header: bytes | None = None,
    **table_options: object,
) -> None:
    """Write PREFIX.index and its shards (tensors go to their shard in name order)."""
    entries, shards = bundle_entries(tensors, num_shards=num_shards, header=header)
    index = table(entries, **table_options)  # type: ignore[arg-type]
    write_index(prefix, index, shards)


def write_index(prefix: Path, index: bytes, shards: Sequence[bytes]) -> None:
    """Write PREFIX.index (a table's bytes) and the data shards."""
    Path(f"{prefix}.index").write_bytes(index)
    for number, data in enumerate(shards):
        path = SHARD_PATTERN.format(prefix=prefix, shard=number, count=len(shards))
        Path(path).write_bytes(data)


def bundle_entries(
    tensors: dict[str, Tensor], *, num_shards: int = 1, header: bytes | None = None
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """The index's (key, value) entries in key order, the header's first, and the shards'
    bytes of a bundle holding ``tensors`` (each appended to its shard in name order)."""
    shards = [bytearray() for _ in range(num_shards)]
    entries = []
    for name in sorted(tensors, key=lambda n: n.encode()):
        tensor = tensors[name]
        data = shards[tensor.shard]
        fields = {
            "dtype": tensor.dtype_code,
            "shard_id": tensor.shard,
            "offset": len(data),
            "size": len(tensor.data),
            "crc32c": tensor.crc,
            **tensor.overrides,
        }
        data.extend(tensor.data)
        entry = (
            field_varint(1, fields["dtype"])
            + field_bytes(2, shape_proto(tensor.shape))
            + (field_varint(3, fields["shard_id"]) if fields["shard_id"] else b"")
            + (field_varint(4, fields["offset"]) if fields["offset"] else b"")
            + field_varint(5, fields["size"])
            + field_fixed32(6, fields["crc32c"])
            + tensor.extra_entry
        )
        entries.append((name.encode(), entry))
    if header is None:
        header = field_varint(1, num_shards) + field_bytes(3, field_varint(1, 1))
    return [(b"", header), *entries], [bytes(data) for data in shards]


def keras_checkpoint(
    layers: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]],
    *,
    shards: int = 1,
) -> dict[str, Tensor]:
    """Tensors of a tf.keras-style object-based checkpoint of a model whose ``layers`` are
    (layer name, [(attribute, array)]), as ``model.save_weights`` lays them out."""
    nodes: list[tuple[list[tuple[int, str]], tuple[str, str] | None]] = [([], None)]
    tensors: dict[str, Tensor] = {}
    weighted = 0
    for number, (layer, weights) in enumerate(layers):
        layer_node = len(nodes)
        nodes.append(([], None))
        nodes[0][0].append((layer_node, f"layer-{number}"))
        alias = f"layer_with_weights-{weighted}"
        if weights:
            nodes[0][0].append((layer_node, alias))
            weighted += 1
        for i, (attribute, array) in enumerate(weights):
            key = f"{alias}/{attribute}/.ATTRIBUTES/VARIABLE_VALUE"
            nodes[layer_node][0].append((len(nodes), attribute))
            nodes.append(([], (f"{layer}/{attribute}", key)))
            tensors[key] = numeric(array, shard=i % shards)
    tensors["_CHECKPOINTABLE_OBJECT_GRAPH"] = strings([object_graph(nodes)])
    return tensors
