"""TensorFlow's tensor-bundle format (TF checkpoints, a SavedModel's variables/), read without TF.

A bundle is ``PREFIX.index`` plus data shards ``PREFIX.data-0000K-of-0000N``:

- The index is a LevelDB-style sorted table: a 48-byte footer (metaindex and index block
  handles, padding, the magic number), an index block mapping each data block's last key to its
  handle, data blocks of prefix-compressed keys with restart points, and after every block a
  5-byte trailer (compression type, masked crc32c of block + type). Blocks may be
  snappy-compressed; the decoder below is bounded by the block's declared length.
- Key "" holds a BundleHeaderProto (num_shards, endianness, version); every other key is a
  tensor name with a BundleEntryProto (dtype, shape, shard_id, offset, size, crc32c, slices).
- A tensor's bytes are ``size`` bytes at ``offset`` of its shard, checked against the entry's
  masked crc32c. Strings (the object graph) are varint64 lengths, a masked crc32c of the
  lengths, then the bytes.

Protobuf messages are decoded by the small wire-format reader below (no generated code, no
protobuf dependency); every size a file declares is checked before anything is allocated, and
every failure is one ConversionError naming the file and the tensor. Only files inside the
bundle's directory are opened (symlinks leading out of it are refused); nothing is written.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np

from parity.conventions import (
    MAX_FILE_WEIGHT_BYTES,
    MAX_NAME_LIST_LENGTH,
    MAX_TF_INDEX_BYTES,
    MAX_TF_RANK,
    MAX_TF_SHARDS,
    MAX_TF_STRING_BYTES,
    MAX_WEIGHT_BYTES,
)
from parity.errors import ConversionError

#: Suffix of a bundle's index file, and its data shards' name pattern (tensor_bundle.h).
INDEX_SUFFIX = ".index"
SHARD_PATTERN = "{prefix}.data-{shard:05d}-of-{count:05d}"
#: The sorted table's footer: two block handles padded to 40 bytes, then the magic number.
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
HANDLES_SIZE = FOOTER_SIZE - 8
#: Each block is followed by its compression type (1 byte) and masked crc32c (4 bytes).
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1
#: crc32c masking (LevelDB, TF): rotate right by 15 bits and add this constant.
CRC_MASK_DELTA = 0xA282EAD8
#: BundleHeaderProto.Endianness.
LITTLE_ENDIAN, BIG_ENDIAN = 0, 1
#: The header lives under the empty key.
HEADER_KEY = b""

#: tensorflow/core/framework/types.proto DataType -> numpy dtype (native byte order applied on
#: read). Types absent here are refused by name (DT_NAMES).
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
DT_STRING = 7
DT_NAMES = {
    7: "string",
    8: "complex64",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    14: "bfloat16",
    15: "qint16",
    16: "quint16",
    18: "complex128",
    20: "resource",
    21: "variant",
}

# Protobuf wire types.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_VARINT_MAX_BYTES = 10


def mask_crc(crc: int) -> int:
    """LevelDB/TF crc32c masking (stored checksums are masked so data holding its own CRC does
    not checksum to a fixed point)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + CRC_MASK_DELTA) & 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    return google_crc32c.extend(crc, bytes(data)) if crc else google_crc32c.value(bytes(data))


# --- protobuf wire format ---------------------------------------------------------------------


class WireError(ValueError):
    """A malformed protobuf message or table block (the caller names the file and the part)."""


def read_varint(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of a base-128 varint in data[pos:end]."""
    value = shift = 0
    for i in range(_VARINT_MAX_BYTES):
        if pos + i >= end:
            raise WireError("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos + i + 1
        shift += 7
    raise WireError("varint longer than 10 bytes")


def parse_message(data: bytes | memoryview) -> dict[int, list[int | bytes]]:
    """A protobuf message as field number -> values (varints and fixed ints as int, length-
    delimited fields as bytes), in wire order. Groups are refused; unknown fields are kept."""
    fields: dict[int, list[int | bytes]] = {}
    pos, end = 0, len(data)
    while pos < end:
        key, pos = read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire == _VARINT:
            value, pos = read_varint(data, pos, end)
        elif wire == _FIXED64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire == _FIXED32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        elif wire == _BYTES:
            length, pos = read_varint(data, pos, end)
            if length > end - pos:
                raise WireError(f"length-delimited field {number} runs past the message")
            value = bytes(data[pos : pos + length])
            pos += length
        else:
            raise WireError(f"unsupported wire type {wire} (field {number})")
        fields.setdefault(number, []).append(value)
    return fields


def field_int(fields: dict[int, list[int | bytes]], number: int, default: int = 0) -> int:
    """The last value of a scalar integer field (protobuf: the last one wins)."""
    values = fields.get(number)
    if not values:
        return default
    value = values[-1]
    if not isinstance(value, int):
        raise WireError(f"field {number} is not an integer")
    return value


def field_bytes(fields: dict[int, list[int | bytes]], number: int) -> bytes:
    values = fields.get(number)
    if not values:
        return b""
    value = values[-1]
    if not isinstance(value, bytes):
        raise WireError(f"field {number} is not length-delimited")
    return value


def field_messages(fields: dict[int, list[int | bytes]], number: int) -> list[bytes]:
    values = fields.get(number, [])
    if not all(isinstance(v, bytes) for v in values):
        raise WireError(f"field {number} is not a message")
    return [v for v in values if isinstance(v, bytes)]


def field_text(fields: dict[int, list[int | bytes]], number: int) -> str:
    try:
        return field_bytes(fields, number).decode("utf8")
    except UnicodeDecodeError as exc:
        raise WireError(f"field {number} is not UTF-8 text") from exc


def signed64(value: int) -> int:
    """An int32/int64 field decoded from its varint (negative values are 10-byte varints)."""
    return value - (1 << 64) if value >= 1 << 63 else value


# --- snappy (LevelDB table blocks may use it) -------------------------------------------------


def snappy_decompress(data: bytes, limit: int) -> bytes:
    """Decompress one raw snappy block; the declared length is checked against ``limit`` before
    anything is allocated, and every copy is bounded by what was already written."""
    length, pos = read_varint(data, 0, len(data))
    if length > limit:
        raise WireError(f"snappy block declares {length:,} bytes (limit {limit:,})")
    out = bytearray()
    end = len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                if pos + extra > end:
                    raise WireError("truncated snappy literal length")
                size = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            size += 1
            if pos + size > end:
                raise WireError("snappy literal runs past the block")
            out += data[pos : pos + size]
            pos += size
        else:
            if kind == 1:
                if pos >= end:
                    raise WireError("truncated snappy copy")
                size = 4 + ((tag >> 2) & 7)
                offset = ((tag >> 5) << 8) | data[pos]
                pos += 1
            else:
                width = 2 if kind == 2 else 4
                if pos + width > end:
                    raise WireError("truncated snappy copy")
                size = (tag >> 2) + 1
                offset = int.from_bytes(data[pos : pos + width], "little")
                pos += width
            if offset == 0 or offset > len(out):
                raise WireError("snappy copy reaches before the block's start")
            start = len(out) - offset
            if offset >= size:
                out += out[start : start + size]
            else:  # an overlapping copy repeats the last ``offset`` bytes
                out += (out[start:] * (size // offset + 1))[:size]
        if len(out) > length:
            raise WireError("snappy block expands past its declared length")
    if len(out) != length:
        raise WireError(f"snappy block holds {len(out):,} bytes, declares {length:,}")
    return bytes(out)


# --- sorted table (LevelDB format) ------------------------------------------------------------


def _block_handle(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int, int]:
    offset, pos = read_varint(data, pos, end)
    size, pos = read_varint(data, pos, end)
    return offset, size, pos


def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    """One block's contents, after checking its trailer's checksum (and decompressing)."""
    if offset + size + BLOCK_TRAILER_SIZE > len(data) - FOOTER_SIZE:
        raise WireError(f"{what} block at {offset} ({size} bytes) runs past the table")
    contents = data[offset : offset + size]
    kind = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    actual = mask_crc(crc32c(data[offset : offset + size + 1]))
    if stored != actual:
        raise WireError(
            f"{what} block at {offset}: checksum mismatch (stored {stored:#010x}, "
            f"computed {actual:#010x})"
        )
    if kind == SNAPPY_COMPRESSION:
        return snappy_decompress(contents, MAX_TF_INDEX_BYTES)
    if kind != NO_COMPRESSION:
        raise WireError(f"{what} block at {offset}: unknown compression type {kind}")
    return contents


def _block_entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of one block: prefix-compressed keys, restart points at the end."""
    if len(block) < 4:
        raise WireError(f"{what} block too short for its restart count")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if restarts == 0 or limit < 0:
        raise WireError(f"{what} block declares {restarts} restart points in {len(block)} bytes")
    points = set(struct.unpack_from(f"<{restarts}I", block, limit))
    if any(point >= max(limit, 1) for point in points) or 0 not in points:
        raise WireError(f"{what} block has restart points outside its entries")
    pos, key = 0, b""
    while pos < limit:
        start = pos
        shared, pos = read_varint(block, pos, limit)
        unshared, pos = read_varint(block, pos, limit)
        length, pos = read_varint(block, pos, limit)
        if shared > len(key) or (start in points and shared):
            raise WireError(f"{what} block: entry at {start} shares {shared} bytes of its key")
        if unshared + length > limit - pos:
            raise WireError(f"{what} block: entry at {start} runs past the block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def read_table(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a sorted table, in key order; keys must be strictly increasing."""
    if len(data) < FOOTER_SIZE:
        raise WireError(f"{len(data)} bytes, shorter than the table footer ({FOOTER_SIZE})")
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, HANDLES_SIZE)
    if magic != TABLE_MAGIC:
        raise WireError(f"bad table magic number {magic:#018x}")
    _meta_offset, _meta_size, pos = _block_handle(footer, 0, HANDLES_SIZE)
    index_offset, index_size, _ = _block_handle(footer, pos, HANDLES_SIZE)
    _read_block(data, _meta_offset, _meta_size, "metaindex")  # checked, not used
    index = _read_block(data, index_offset, index_size, "index")
    entries: list[tuple[bytes, bytes]] = []
    for separator, handle in _block_entries(index, "index"):
        offset, size, end = _block_handle(handle, 0, len(handle))
        if end != len(handle):
            raise WireError(f"index entry {separator!r}: malformed block handle")
        block = _read_block(data, offset, size, f"data ({separator!r})")
        for key, value in _block_entries(block, f"data ({separator!r})"):
            if entries and key <= entries[-1][0]:
                raise WireError(f"table keys out of order at {key!r}")
            if key > separator:
                raise WireError(f"key {key!r} lies past its block's index key {separator!r}")
            entries.append((key, value))
            if len(entries) > MAX_NAME_LIST_LENGTH + 1:
                raise WireError(f"more than {MAX_NAME_LIST_LENGTH:,} tensors")
    return entries


# --- bundle -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleEntry:
    """One tensor's BundleEntryProto, checked against the limits."""

    name: str
    dtype_code: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    sliced: bool

    @property
    def is_string(self) -> bool:
        return self.dtype_code == DT_STRING


def _shape(data: bytes) -> tuple[int, ...]:
    """A TensorShapeProto: dim = 2 (Dim: size = 1), unknown_rank = 3."""
    fields = parse_message(data)
    if field_int(fields, 3):
        raise WireError("shape of unknown rank")
    dims = field_messages(fields, 2)
    if len(dims) > MAX_TF_RANK:
        raise WireError(f"rank {len(dims)} (limit {MAX_TF_RANK})")
    shape = tuple(signed64(field_int(parse_message(dim), 1)) for dim in dims)
    if any(size < 0 for size in shape):
        raise WireError(f"shape {shape} has negative dimensions")
    return shape


def _entry(name: str, value: bytes) -> BundleEntry:
    fields = parse_message(value)
    return BundleEntry(
        name=name,
        dtype_code=field_int(fields, 1),
        shape=_shape(field_bytes(fields, 2)),
        shard_id=signed64(field_int(fields, 3)),
        offset=signed64(field_int(fields, 4)),
        size=signed64(field_int(fields, 5)),
        crc32c=field_int(fields, 6),
        sliced=bool(fields.get(7)),
    )


def inside(root: Path, path: Path) -> bool:
    """Whether ``path``, with every symlink resolved, lies inside ``root`` (also resolved)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def open_inside(root: Path, path: Path, what: str) -> int:
    """A read-only descriptor of a regular file inside ``root``; ConversionError otherwise."""
    if not inside(root, path):
        raise ConversionError(
            f"{path}: {what} resolves outside {root} (a symlink leading out of the checkpoint's "
            "directory); refusing to read it"
        )
    try:
        # non-blocking: a FIFO planted under a shard's name must not hang the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise ConversionError(f"{path}: {what} is missing") from exc
    except OSError as exc:
        raise ConversionError(f"{path}: cannot open {what} ({exc.strerror})") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConversionError(f"{path}: {what} is not a regular file")
    return fd


def read_capped(root: Path, path: Path, what: str, cap: int) -> bytes:
    """A whole small file (an index, a metadata proto), refused when larger than ``cap``."""
    fd = open_inside(root, path, what)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise ConversionError(f"{path}: {what} is larger than {cap:,} bytes; refusing to read it")
    return data


@dataclass
class TensorBundle:
    """A bundle's index, read and checked; tensors are read on request (read_tensor)."""

    prefix: Path
    #: The directory nothing may be read outside of.
    root: Path
    num_shards: int
    big_endian: bool
    entries: dict[str, BundleEntry]
    budget_left: int = MAX_FILE_WEIGHT_BYTES
    _shard_sizes: dict[int, int] = field(default_factory=dict)

    @property
    def index_path(self) -> Path:
        return Path(f"{self.prefix}{INDEX_SUFFIX}")

    def shard_path(self, shard: int) -> Path:
        return Path(SHARD_PATTERN.format(prefix=self.prefix, shard=shard, count=self.num_shards))

    def _raw(self, entry: BundleEntry) -> bytearray:
        """An entry's bytes from its shard, checked against the shard's size and the crc."""
        shard = self.shard_path(entry.shard_id)
        where = f"tensor {entry.name!r}"
        fd = open_inside(self.root, shard, f"data shard {entry.shard_id} of {where}")
        with os.fdopen(fd, "rb") as handle:
            available = os.fstat(handle.fileno()).st_size
            if entry.offset + entry.size > available:
                raise ConversionError(
                    f"{shard}: {where} lies at bytes {entry.offset:,}.."
                    f"{entry.offset + entry.size:,} but the shard has {available:,} bytes "
                    "(truncated or corrupt checkpoint)"
                )
            buffer = bytearray(entry.size)
            handle.seek(entry.offset)
            got = handle.readinto(buffer)
        if got != entry.size:
            raise ConversionError(f"{shard}: {where} is truncated ({got} of {entry.size} bytes)")
        return buffer

    def _check_crc(self, entry: BundleEntry, actual: int) -> None:
        if mask_crc(actual) != entry.crc32c:
            raise ConversionError(
                f"{self.shard_path(entry.shard_id)}: tensor {entry.name!r} fails its checksum "
                f"(stored {entry.crc32c:#010x}, computed {mask_crc(actual):#010x}): corrupt data"
            )

    def read_tensor(self, name: str) -> np.ndarray:
        """A numeric tensor as a native-order array (checked, checksummed, within the budget)."""
        entry = self.entries[name]
        dtype = DTYPES[entry.dtype_code]
        nbytes = math.prod(entry.shape) * dtype.itemsize
        if nbytes > self.budget_left:
            raise ConversionError(
                f"{self.index_path}: tensor {name!r} ({nbytes:,} bytes) exceeds the checkpoint's "
                f"weight budget ({MAX_FILE_WEIGHT_BYTES:,} bytes in all); refusing to read it"
            )
        self.budget_left -= nbytes
        raw = self._raw(entry)
        self._check_crc(entry, crc32c(raw))
        array = np.frombuffer(raw, dtype=dtype.newbyteorder(">" if self.big_endian else "<"))
        return array.astype(dtype.newbyteorder("="), copy=False).reshape(entry.shape)

    def read_strings(self, name: str) -> list[bytes]:
        """A string tensor's elements (the object graph is one): varint64 lengths, a masked
        crc32c of the lengths (each as a little-endian uint32), then the bytes; the entry's crc
        covers the lengths (as uint32s), the length checksum and the bytes."""
        entry = self.entries[name]
        if not entry.is_string:
            raise ConversionError(f"{self.index_path}: tensor {name!r} is not a string tensor")
        raw = bytes(self._raw(entry))
        count = math.prod(entry.shape)
        if count > MAX_NAME_LIST_LENGTH:
            raise ConversionError(f"{self.index_path}: string tensor {name!r} has {count:,} items")
        lengths, pos, crc = [], 0, 0
        try:
            for _ in range(count):
                length, pos = read_varint(raw, pos, len(raw))
                lengths.append(length)
                crc = crc32c((length & 0xFFFFFFFF).to_bytes(4, "little"), crc)
        except WireError as exc:
            raise ConversionError(
                f"{self.shard_path(entry.shard_id)}: tensor {name!r}: {exc}"
            ) from exc
        if pos + 4 + sum(lengths) != len(raw):
            raise ConversionError(
                f"{self.shard_path(entry.shard_id)}: string tensor {name!r} declares "
                f"{sum(lengths):,} bytes of text in a {len(raw):,}-byte entry"
            )
        (stored,) = struct.unpack_from("<I", raw, pos)
        if stored != mask_crc(crc):
            raise ConversionError(
                f"{self.shard_path(entry.shard_id)}: string tensor {name!r} fails its length "
                "checksum: corrupt data"
            )
        crc = crc32c(raw[pos : pos + 4], crc)
        pos += 4
        items = []
        for length in lengths:
            items.append(raw[pos : pos + length])
            crc = crc32c(raw[pos : pos + length], crc)
            pos += length
        self._check_crc(entry, crc)
        return items


def _check_entry(entry: BundleEntry, num_shards: int, index: Path) -> None:
    """Refuse, by name, entries this reader does not read or that cannot be right."""
    where = f"{index}: tensor {entry.name!r}"
    if entry.sliced:
        raise ConversionError(
            f"{where} is a sliced (partitioned) variable; partitioned variables are not supported"
        )
    if entry.dtype_code not in DTYPES and entry.dtype_code != DT_STRING:
        kind = DT_NAMES.get(entry.dtype_code, f"unknown dtype {entry.dtype_code}")
        raise ConversionError(f"{where} has dtype {kind}, not a Keras weight type")
    if not 0 <= entry.shard_id < num_shards:
        raise ConversionError(f"{where} names shard {entry.shard_id}; the bundle has {num_shards}")
    if entry.offset < 0 or entry.size < 0:
        raise ConversionError(f"{where} has a negative offset or size")
    if entry.is_string:
        if entry.size > MAX_TF_STRING_BYTES:
            raise ConversionError(
                f"{where} is a {entry.size:,}-byte string tensor (limit {MAX_TF_STRING_BYTES:,})"
            )
        return
    nbytes = math.prod(entry.shape) * DTYPES[entry.dtype_code].itemsize
    if nbytes > MAX_WEIGHT_BYTES:
        raise ConversionError(
            f"{where} declares shape {entry.shape} ({nbytes:,} bytes), more than any Keras "
            f"model weight ({MAX_WEIGHT_BYTES:,}); refusing to read it"
        )
    if nbytes != entry.size:
        raise ConversionError(
            f"{where} declares shape {entry.shape} of {DTYPES[entry.dtype_code]} "
            f"({nbytes:,} bytes) but stores {entry.size:,} bytes"
        )


def open_bundle(prefix: Path, root: Path) -> TensorBundle:
    """Read and check a bundle's index (PREFIX.index); the shards are opened when read."""
    index = Path(f"{prefix}{INDEX_SUFFIX}")
    data = read_capped(root, index, "checkpoint index", MAX_TF_INDEX_BYTES)
    try:
        table = read_table(data)
    except WireError as exc:
        raise ConversionError(
            f"{index}: not a readable TensorFlow checkpoint index ({exc})"
        ) from exc
    if not table or table[0][0] != HEADER_KEY:
        raise ConversionError(f"{index}: checkpoint index without its bundle header")
    try:
        header = parse_message(table[0][1])
        num_shards = signed64(field_int(header, 1))
        endianness = field_int(header, 2)
    except WireError as exc:
        raise ConversionError(f"{index}: malformed bundle header ({exc})") from exc
    if not 1 <= num_shards <= MAX_TF_SHARDS:
        raise ConversionError(f"{index}: bundle header declares {num_shards} data shards")
    if endianness not in (LITTLE_ENDIAN, BIG_ENDIAN):
        raise ConversionError(f"{index}: bundle header declares unknown endianness {endianness}")
    entries: dict[str, BundleEntry] = {}
    for key, value in table[1:]:
        try:
            name = key.decode("utf8")
        except UnicodeDecodeError as exc:
            raise ConversionError(f"{index}: tensor name {key!r} is not UTF-8") from exc
        try:
            entry = _entry(name, value)
        except WireError as exc:
            raise ConversionError(f"{index}: tensor {name!r}: malformed entry ({exc})") from exc
        _check_entry(entry, num_shards, index)
        entries[name] = entry
    return TensorBundle(prefix, root, num_shards, endianness == BIG_ENDIAN, entries)


def is_table(path: Path) -> bool:
    """Whether a file ends in the sorted table's magic number (a checkpoint .index)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() < FOOTER_SIZE:
                return False
            handle.seek(-8, os.SEEK_END)
            return struct.unpack("<Q", handle.read(8))[0] == TABLE_MAGIC
    except OSError:
        return False
