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
every failure is one ConversionError naming the file and the tensor. Work is bounded by counts
as well as sizes: fields per message and per file, blocks per index, bytes checksummed and
decompressed per index; each block is decoded once and each stored tensor read once, however
often the file names it. Only regular files inside the bundle's directory are opened (symlinks
leading out of it are refused, a FIFO never blocks the open); nothing is written.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import google_crc32c
import numpy as np

from parity.conventions import (
    MAX_FILE_WEIGHT_BYTES,
    MAX_NAME_LIST_LENGTH,
    MAX_TF_INDEX_BYTES,
    MAX_TF_INDEX_FIELDS,
    MAX_TF_KEY_BYTES,
    MAX_TF_MESSAGE_FIELDS,
    MAX_TF_RANK,
    MAX_TF_SHARDS,
    MAX_TF_STRING_BYTES,
    MAX_TF_TABLE_BLOCKS,
    MAX_TF_TABLE_DECODED_BYTES,
    MAX_WEIGHT_BYTES,
)
from parity.errors import ConversionError
from parity.files import open_regular

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
#: google_crc32c only takes bytes: larger buffers are checksummed through copies of this size,
#: so a tensor's checksum never holds a second copy of the whole tensor.
CRC_CHUNK_BYTES = 2**20
#: How much of a key an error message shows (keys may be up to MAX_TF_KEY_BYTES).
SHOWN_KEY_BYTES = 80


def mask_crc(crc: int) -> int:
    """LevelDB/TF crc32c masking (stored checksums are masked so data holding its own CRC does
    not checksum to a fixed point)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + CRC_MASK_DELTA) & 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """crc32c of ``data``, continuing from ``crc`` (0: a fresh checksum)."""
    if isinstance(data, bytes) and len(data) <= CRC_CHUNK_BYTES:
        return google_crc32c.extend(crc, data) if crc else google_crc32c.value(data)
    view = memoryview(data)
    for start in range(0, len(view), CRC_CHUNK_BYTES):
        chunk = bytes(view[start : start + CRC_CHUNK_BYTES])
        crc = google_crc32c.extend(crc, chunk) if crc else google_crc32c.value(chunk)
    return crc


def shown(key: bytes) -> str:
    """A key for an error message: its repr, cut short."""
    return repr(key[:SHOWN_KEY_BYTES]) + ("..." if len(key) > SHOWN_KEY_BYTES else "")


# --- protobuf wire format ---------------------------------------------------------------------


class WireError(ValueError):
    """A malformed protobuf message or table block (the caller names the file and the part)."""


@dataclass
class FieldBudget:
    """Protobuf fields left to decode from one file: every message parsed from it charges its
    fields here, so the file's decoding work is bounded however its messages nest or repeat."""

    limit: int
    #: What the fields are decoded from, for the error ("the object graph").
    what: str
    left: int = field(init=False)

    def __post_init__(self) -> None:
        self.left = self.limit


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


def parse_message(
    data: bytes | memoryview,
    max_fields: int = MAX_TF_MESSAGE_FIELDS,
    budget: FieldBudget | None = None,
    keep: Container[int] | None = None,
) -> dict[int, list[int | bytes]]:
    """A protobuf message as field number -> values (varints and fixed ints as int, length-
    delimited fields as bytes), in wire order. Groups are refused. Decoding stops (WireError) at
    the field past ``max_fields`` or past what ``budget`` has left, unknown fields counted too;
    fields outside ``keep`` (None: all) are skipped without being copied."""
    fields: dict[int, list[int | bytes]] = {}
    allowed = max_fields if budget is None else min(max_fields, budget.left)
    pos, end, count = 0, len(data), 0
    while pos < end:
        if count == allowed:
            if budget is not None and budget.left < max_fields:
                raise WireError(f"more than {budget.limit:,} protobuf fields in {budget.what}")
            raise WireError(f"a message with more than {max_fields:,} fields")
        count += 1
        # one-byte varints inline: nearly every key, length and small value is one
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire == _VARINT:
            if pos < end and data[pos] < 0x80:
                value, pos = data[pos], pos + 1
            else:
                value, pos = read_varint(data, pos, end)
        elif wire == _BYTES:
            if pos < end and data[pos] < 0x80:
                length, pos = data[pos], pos + 1
            else:
                length, pos = read_varint(data, pos, end)
            if length > end - pos:
                raise WireError(f"length-delimited field {number} runs past the message")
            start, pos = pos, pos + length
            if keep is not None and number not in keep:
                continue
            value = bytes(data[start:pos])
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
        else:
            raise WireError(f"unsupported wire type {wire} (field {number})")
        if keep is not None and number not in keep:
            continue
        values = fields.get(number)
        if values is None:
            fields[number] = [value]
        else:
            values.append(value)
    if budget is not None:
        budget.left -= count
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


@dataclass
class _Table:
    """A sorted table's bytes, and the bytes still allowed to be checksummed, decompressed or
    assembled into keys while reading it (MAX_TF_TABLE_DECODED_BYTES): blocks may overlap and
    keys may share long prefixes, so the table's size alone does not bound the work."""

    data: bytes
    left: int = field(init=False)

    def __post_init__(self) -> None:
        self.left = MAX_TF_TABLE_DECODED_BYTES

    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` of work, refusing it (before it is done) past the limit."""
        if nbytes > self.left:
            raise WireError(
                f"{what}: reading the table takes more than {MAX_TF_TABLE_DECODED_BYTES:,} bytes "
                "checksummed, decompressed or assembled into keys"
            )
        self.left -= nbytes

    def block(self, offset: int, size: int, what: str) -> bytes:
        """One block's contents, after checking its trailer's checksum (and decompressing)."""
        data = self.data
        if offset + size + BLOCK_TRAILER_SIZE > len(data) - FOOTER_SIZE:
            raise WireError(f"{what} block at {offset} ({size} bytes) runs past the table")
        self.charge(size, f"{what} block at {offset}")
        contents = data[offset : offset + size]
        kind = data[offset + size]
        (stored,) = struct.unpack_from("<I", data, offset + size + 1)
        actual = mask_crc(crc32c(memoryview(data)[offset : offset + size + 1]))
        if stored != actual:
            raise WireError(
                f"{what} block at {offset}: checksum mismatch (stored {stored:#010x}, "
                f"computed {actual:#010x})"
            )
        if kind == SNAPPY_COMPRESSION:
            declared, _ = read_varint(contents, 0, len(contents))
            self.charge(declared, f"{what} block at {offset}")  # before decompressing
            return snappy_decompress(contents, MAX_TF_INDEX_BYTES)
        if kind != NO_COMPRESSION:
            raise WireError(f"{what} block at {offset}: unknown compression type {kind}")
        return contents


def _block_entries(block: bytes, what: str, table: _Table) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of one block: prefix-compressed keys, restart points at the end (in
    increasing order, each at an entry whose key shares nothing with the one before)."""
    if len(block) < 4:
        raise WireError(f"{what} block too short for its restart count")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if restarts == 0 or limit < 0:
        raise WireError(f"{what} block declares {restarts} restart points in {len(block)} bytes")
    # an array, not Python ints: a crafted block can declare millions of restart points
    points = np.frombuffer(block, dtype="<u4", count=restarts, offset=limit)
    if points[0] != 0 or points[-1] >= max(limit, 1) or np.any(points[1:] <= points[:-1]):
        raise WireError(f"{what} block has restart points outside its entries or out of order")
    pos, key, restart = 0, b"", 1
    while pos < limit:
        start = pos
        at_restart = start == 0
        if restart < restarts and points[restart] <= start:
            if points[restart] != start:
                raise WireError(f"{what} block: restart point {points[restart]} is inside an entry")
            at_restart, restart = True, restart + 1
        shared, pos = read_varint(block, pos, limit)
        unshared, pos = read_varint(block, pos, limit)
        length, pos = read_varint(block, pos, limit)
        if shared > len(key) or (at_restart and shared):
            raise WireError(f"{what} block: entry at {start} shares {shared} bytes of its key")
        if unshared + length > limit - pos:
            raise WireError(f"{what} block: entry at {start} runs past the block")
        if shared + unshared > MAX_TF_KEY_BYTES:
            raise WireError(
                f"{what} block: entry at {start} has a {shared + unshared:,}-byte key (limit "
                f"{MAX_TF_KEY_BYTES:,})"
            )
        table.charge(shared + unshared, f"{what} block: entry at {start}")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def read_table(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a sorted table, in key order; keys must be strictly increasing.
    Each data block is decoded once: the index may name at most MAX_TF_TABLE_BLOCKS blocks, and
    a block it names again is refused (or, when empty, skipped)."""
    if len(data) < FOOTER_SIZE:
        raise WireError(f"{len(data)} bytes, shorter than the table footer ({FOOTER_SIZE})")
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, HANDLES_SIZE)
    if magic != TABLE_MAGIC:
        raise WireError(f"bad table magic number {magic:#018x}")
    table = _Table(data)
    _meta_offset, _meta_size, pos = _block_handle(footer, 0, HANDLES_SIZE)
    index_offset, index_size, _ = _block_handle(footer, pos, HANDLES_SIZE)
    table.block(_meta_offset, _meta_size, "metaindex")  # checked, not used
    index = table.block(index_offset, index_size, "index")
    entries: list[tuple[bytes, bytes]] = []
    #: The data blocks read so far, by handle: how many entries each held.
    held: dict[tuple[int, int], int] = {}
    for number, (separator, handle) in enumerate(_block_entries(index, "index", table)):
        if number >= MAX_TF_TABLE_BLOCKS:
            raise WireError(f"the index names more than {MAX_TF_TABLE_BLOCKS:,} data blocks")
        offset, size, end = _block_handle(handle, 0, len(handle))
        if end != len(handle):
            raise WireError(f"index entry {shown(separator)}: malformed block handle")
        if (offset, size) in held:
            if held[offset, size]:
                raise WireError(f"the index names the data block at {offset} twice")
            continue  # an empty block named again adds nothing
        what = f"data ({shown(separator)})"
        block = table.block(offset, size, what)
        count = len(entries)
        for key, value in _block_entries(block, what, table):
            if entries and key <= entries[-1][0]:
                raise WireError(f"table keys out of order at {shown(key)}")
            if key > separator:
                raise WireError(
                    f"key {shown(key)} lies past its block's index key {shown(separator)}"
                )
            entries.append((key, value))
            if len(entries) > MAX_NAME_LIST_LENGTH + 1:
                raise WireError(f"more than {MAX_NAME_LIST_LENGTH:,} tensors")
        held[offset, size] = len(entries) - count
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


def _shape(data: bytes, budget: FieldBudget) -> tuple[int, ...]:
    """A TensorShapeProto: dim = 2 (Dim: size = 1), unknown_rank = 3."""
    fields = parse_message(data, budget=budget)
    if field_int(fields, 3):
        raise WireError("shape of unknown rank")
    dims = field_messages(fields, 2)
    if len(dims) > MAX_TF_RANK:
        raise WireError(f"rank {len(dims)} (limit {MAX_TF_RANK})")
    shape = tuple(signed64(field_int(parse_message(dim, budget=budget), 1)) for dim in dims)
    if any(size < 0 for size in shape):
        raise WireError(f"shape {shape} has negative dimensions")
    return shape


def _entry(name: str, value: bytes, budget: FieldBudget) -> BundleEntry:
    fields = parse_message(value, budget=budget)
    return BundleEntry(
        name=name,
        dtype_code=field_int(fields, 1),
        shape=_shape(field_bytes(fields, 2), budget),
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


def open_inside(root: Path, path: Path, what: str) -> IO[bytes]:
    """A regular file inside ``root``, open for reading; ConversionError otherwise (the one way
    this module and tf_checkpoint open a file: parity.files.open_regular refuses a FIFO or a
    device by name, never waiting on it)."""
    if not inside(root, path):
        raise ConversionError(
            f"{path}: {what} resolves outside {root} (a symlink leading out of the checkpoint's "
            "directory); refusing to read it"
        )
    try:
        return open_regular(path, what)
    except FileNotFoundError as exc:
        raise ConversionError(f"{path}: {what} is missing") from exc


def read_capped(root: Path, path: Path, what: str, cap: int) -> bytes:
    """A whole small file (an index, a metadata proto), refused when larger than ``cap``."""
    with open_inside(root, path, what) as handle:
        # read(n) allocates n bytes up front: ask for what the file holds, one past the cap
        data = handle.read(min(os.fstat(handle.fileno()).st_size, cap) + 1)
    if len(data) > cap:
        raise ConversionError(f"{path}: {what} is larger than {cap:,} bytes; refusing to read it")
    return data


@dataclass
class TensorBundle:
    """A bundle's index, read and checked; tensors are read on request (read_tensor), each
    stored tensor once: names aliasing the same bytes share one array and one budget charge."""

    prefix: Path
    #: The directory nothing may be read outside of.
    root: Path
    num_shards: int
    big_endian: bool
    entries: dict[str, BundleEntry]
    budget_left: int = MAX_FILE_WEIGHT_BYTES
    #: (shard, offset, size, dtype) -> (flat native-order array, crc32c of its stored bytes).
    _read: dict[tuple[int, int, int, int], tuple[np.ndarray, int]] = field(default_factory=dict)

    @property
    def index_path(self) -> Path:
        return Path(f"{self.prefix}{INDEX_SUFFIX}")

    def shard_path(self, shard: int) -> Path:
        return Path(SHARD_PATTERN.format(prefix=self.prefix, shard=shard, count=self.num_shards))

    def _raw(self, entry: BundleEntry) -> bytearray:
        """An entry's bytes from its shard, checked against the shard's size and the crc."""
        shard = self.shard_path(entry.shard_id)
        where = f"tensor {entry.name!r}"
        with open_inside(self.root, shard, f"data shard {entry.shard_id} of {where}") as handle:
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
        """A numeric tensor as a native-order array (checked, checksummed, within the budget).

        The bytes at one (shard, offset, size) are read, checksummed and charged to the budget
        once, whichever names point there: every name reading them as the same dtype gets a view
        of the same array (TF writes each variable once; only a crafted file aliases them)."""
        entry = self.entries[name]
        dtype = DTYPES[entry.dtype_code]
        location = (entry.shard_id, entry.offset, entry.size, entry.dtype_code)
        cached = self._read.get(location)
        if cached is None:
            nbytes = math.prod(entry.shape) * dtype.itemsize
            if nbytes > self.budget_left:
                raise ConversionError(
                    f"{self.index_path}: tensor {name!r} ({nbytes:,} bytes) exceeds the "
                    f"checkpoint's weight budget ({MAX_FILE_WEIGHT_BYTES:,} bytes in all); "
                    "refusing to read it"
                )
            self.budget_left -= nbytes
            raw = self._raw(entry)
            stored = np.frombuffer(raw, dtype=dtype.newbyteorder(">" if self.big_endian else "<"))
            array = stored.astype(dtype.newbyteorder("="), copy=False)
            cached = self._read[location] = (array, crc32c(raw))
        self._check_crc(entry, cached[1])
        return cached[0].reshape(entry.shape)

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
    budget = FieldBudget(MAX_TF_INDEX_FIELDS, "the index")
    try:
        header = parse_message(table[0][1], budget=budget)
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
            raise ConversionError(f"{index}: tensor name {shown(key)} is not UTF-8") from exc
        try:
            entry = _entry(name, value, budget)
        except WireError as exc:
            raise ConversionError(f"{index}: tensor {name!r}: malformed entry ({exc})") from exc
        _check_entry(entry, num_shards, index)
        entries[name] = entry
    return TensorBundle(prefix, root, num_shards, endianness == BIG_ENDIAN, entries)


def is_table(path: Path) -> bool:
    """Whether a regular file ends in the sorted table's magic number (a checkpoint .index)."""
    try:
        with open_regular(path, "checkpoint index") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() < FOOTER_SIZE:
                return False
            handle.seek(-8, os.SEEK_END)
            return struct.unpack("<Q", handle.read(8))[0] == TABLE_MAGIC
    except (ConversionError, OSError):
        return False
