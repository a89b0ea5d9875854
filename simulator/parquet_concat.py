"""Parquet files of one schema joined into one file by copying their encoded row groups (no decoding, no
re-encoding) and writing one footer that lists them all: the bytes a single writer would have written for the same
row groups (checked in tests against pyarrow's own).

The footer is Thrift's compact protocol (parquet.thrift's FileMetaData); only what moves with a row group changes:
its file offsets, its ordinal and the total row count.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional

MAGIC = b"PAR1"

# compact protocol types (Thrift's TCompactProtocol)
STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)
# parquet.thrift field ids
FILE_NUM_ROWS, FILE_ROW_GROUPS, FILE_KEY_VALUES = 3, 4, 5
RG_COLUMNS, RG_FILE_OFFSET, RG_ORDINAL = 1, 5, 7
CC_FILE_OFFSET, CC_META, CC_OFFSET_INDEX, CC_COLUMN_INDEX = 2, 3, 4, 6
CM_DATA_PAGE, CM_INDEX_PAGE, CM_DICTIONARY_PAGE, CM_BLOOM = 9, 10, 11, 14


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if b < 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def value(self, kind: int):
        if kind in (TRUE, FALSE):  # inside a list a bool is a byte of its own
            return self.byte() == TRUE
        if kind == BYTE:
            return self.byte()
        if kind in (I16, I32, I64):
            return self.zigzag()
        if kind == DOUBLE:
            self.pos += 8
            return self.data[self.pos - 8:self.pos]
        if kind == BINARY:
            n = self.varint()
            self.pos += n
            return self.data[self.pos - n:self.pos]
        if kind in (LIST, SET):
            head = self.byte()
            n, elem = head >> 4, head & 0x0F
            if n == 15:
                n = self.varint()
            return (elem, [self.value(elem) for _ in range(n)])
        if kind == MAP:
            n = self.varint()
            kinds = self.byte() if n else 0
            return (kinds, [(self.value(kinds >> 4), self.value(kinds & 0x0F)) for _ in range(n)])
        if kind == STRUCT:
            return self.struct()
        raise ValueError(f"unknown Thrift compact type {kind}")

    def struct(self) -> list:
        """[field id, type, value] of each field in the order written."""
        fields, last = [], 0
        while True:
            head = self.byte()
            if head == STOP:
                return fields
            kind, delta = head & 0x0F, head >> 4
            fid = last + delta if delta else self.zigzag()
            value = (kind == TRUE) if kind in (TRUE, FALSE) else self.value(kind)
            fields.append([fid, kind, value])
            last = fid


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _zigzag(v: int) -> bytes:
    return _varint((v << 1) ^ (v >> 63))


def _value(kind: int, v) -> bytes:
    if kind in (TRUE, FALSE):
        return bytes([TRUE if v else FALSE])
    if kind == BYTE:
        return bytes([v])
    if kind in (I16, I32, I64):
        return _zigzag(v)
    if kind == DOUBLE:
        return v
    if kind == BINARY:
        return _varint(len(v)) + v
    if kind in (LIST, SET):
        elem, items = v
        head = bytes([(len(items) << 4) | elem]) if len(items) < 15 else bytes([0xF0 | elem]) + _varint(len(items))
        return head + b"".join(_value(elem, x) for x in items)
    if kind == MAP:
        kinds, items = v
        if not items:
            return b"\x00"
        return _varint(len(items)) + bytes([kinds]) + b"".join(_value(kinds >> 4, a) + _value(kinds & 0x0F, b)
                                                              for a, b in items)
    if kind == STRUCT:
        return v if isinstance(v, Encoded) else _struct(v)
    raise ValueError(f"unknown Thrift compact type {kind}")


def _struct(fields: list) -> bytes:
    out, last = bytearray(), 0
    for fid, kind, v in fields:
        wire = (TRUE if v else FALSE) if kind in (TRUE, FALSE) else kind
        delta = fid - last
        out += bytes([(delta << 4) | wire]) if 0 < delta <= 15 else bytes([wire]) + _zigzag(fid)
        if kind not in (TRUE, FALSE):
            out += _value(kind, v)
        last = fid
    out.append(STOP)
    return bytes(out)


def _field(fields: list, fid: int) -> Optional[list]:
    return next((f for f in fields if f[0] == fid), None)


def _list_field(fields: list, fid: int) -> list:
    """A struct's list field `fid`, added (empty, in field order) where it has none."""
    found = _field(fields, fid)
    if found is None:
        found = [fid, LIST, (STRUCT, [])]
        fields.append(found)
        fields.sort(key=lambda f: f[0])
    return found


def _footer(meta: list) -> bytes:
    """FileMetaData as a file ends: the struct, its length and the magic."""
    footer = _struct(meta)
    return footer + struct.pack("<i", len(footer)) + MAGIC


def read_footer(path: Path) -> tuple[list, int]:
    """A Parquet file's FileMetaData (decoded fields) and where its footer starts."""
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
        if tail[4:] != MAGIC:
            raise ValueError(f"{path}: not a Parquet file (no PAR1 at its end)")
        (length,) = struct.unpack("<i", tail[:4])
        end = f.tell() - 8
        f.seek(end - length)
        return _Reader(f.read(length)).struct(), end - length


def set_key_value(path: Path, key: bytes, value: bytes) -> None:
    """Rewrite a Parquet file's footer in place with its key-value metadata `key` set to `value` (added where it has
    none); the pages stay as they are."""
    meta, start = read_footer(path)
    pairs = _list_field(meta, FILE_KEY_VALUES)
    entry = next((kv for kv in pairs[2][1] if _field(kv, 1)[2] == key), None)
    if entry is None:
        pairs[2][1].append([[1, BINARY, key], [2, BINARY, value]])
    else:
        entry[:] = [[1, BINARY, key], [2, BINARY, value]]
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(_footer(meta))
        f.truncate()


def _shift(fields: list, ids: tuple[int, ...], by: int) -> None:
    for f in fields:
        if f[0] in ids and f[2]:  # 0: not set by the writer (a column chunk's file_offset), stays 0
            f[2] += by


def _moved_row_group(rg: list, by: int, ordinal: int) -> list:
    """A row group's metadata with its pages `by` bytes further on and its place in the file."""
    for cc in _field(rg, RG_COLUMNS)[2][1]:  # no page indexes: _joinable refuses them
        _shift(cc, (CC_FILE_OFFSET,), by)
        _shift(_field(cc, CC_META)[2], (CM_DATA_PAGE, CM_INDEX_PAGE, CM_DICTIONARY_PAGE, CM_BLOOM), by)
    _shift(rg, (RG_FILE_OFFSET,), by)
    if _field(rg, RG_ORDINAL) is not None:
        _field(rg, RG_ORDINAL)[2] = ordinal
    return rg


def _joinable(first: list, meta: list) -> bool:
    """True if a file's footer `meta` can join one whose first file's is `first`: the same schema and key-value
    metadata, and no page index of its own."""
    if [f for f in meta if f[0] not in (FILE_NUM_ROWS, FILE_ROW_GROUPS)] != \
            [f for f in first if f[0] not in (FILE_NUM_ROWS, FILE_ROW_GROUPS)]:
        return False
    return not any(_field(cc, CC_OFFSET_INDEX) or _field(cc, CC_COLUMN_INDEX)
                   for rg in (_field(meta, FILE_ROW_GROUPS) or [0, 0, (STRUCT, [])])[2][1]
                   for cc in _field(rg, RG_COLUMNS)[2][1])


class Encoded(bytes):
    """A Thrift value already in compact-protocol bytes (a row group encoded when it was joined), written as it is."""


class ParquetJoin:
    """Row groups of Parquet files of one schema appended, file by file, to `dst` (a new file open for binary writing),
    then one footer that lists them all: the bytes one writer gives for the same row groups. A file joins as soon as
    it is complete, so a sweep joins its points while later ones still run; each row group's metadata is encoded as
    it joins."""

    def __init__(self, dst) -> None:
        self.dst = dst
        self.first: Optional[list] = None  # the first file's FileMetaData: its schema and metadata are the file's
        self.groups: list[Encoded] = []
        self.rows = 0
        dst.write(MAGIC)

    def add(self, path: Path) -> bool:
        """Copy `path`'s row groups after those already joined; False, and nothing copied, where it cannot join (a
        schema or metadata other than the first file's, or a page index)."""
        meta, footer_at = read_footer(path)
        if not _joinable(meta if self.first is None else self.first, meta):
            return False
        if self.first is None:
            self.first = meta
        by = self.dst.tell() - len(MAGIC)  # this file's row groups start after what is already written
        self.dst.flush()  # copy_file_range writes past a buffered file's buffer
        with open(path, "rb") as src:
            src.seek(len(MAGIC))
            left = footer_at - len(MAGIC)
            while left > 0:
                sent = os.copy_file_range(src.fileno(), self.dst.fileno(), left) if hasattr(os, "copy_file_range") \
                    else self.dst.write(src.read(min(left, 1 << 24)))
                if not sent:
                    raise OSError(f"{path}: shorter than its footer says")
                left -= sent
        self.rows += _field(meta, FILE_NUM_ROWS)[2]
        for rg in (_field(meta, FILE_ROW_GROUPS) or [0, 0, (STRUCT, [])])[2][1]:
            self.groups.append(Encoded(_struct(_moved_row_group(rg, by, len(self.groups)))))
        return True

    def close(self) -> None:
        """Write the footer: the first file's FileMetaData with every joined row group and their total rows."""
        merged = [list(f) for f in self.first]
        _field(merged, FILE_NUM_ROWS)[2] = self.rows
        _list_field(merged, FILE_ROW_GROUPS)[2] = (STRUCT, self.groups)
        self.dst.write(_footer(merged))
