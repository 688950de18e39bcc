"""TFRecord framing, read and written without TensorFlow.

A TFRecord file is a sequence of records, each::

    uint64 length (little-endian)  uint32 masked_crc32c(length bytes)
    byte   data[length]            uint32 masked_crc32c(data)

CRC-32C is the Castagnoli polynomial (reflected 0x82F63B78); the "mask" is TensorFlow's
``((crc >> 15) | (crc << 17)) + 0xa282ead8`` mod 2**32. Both CRCs are checked on read, so a truncated or
corrupted file (or a file of another format) gives a :class:`TFRecordError` naming the file, the record
and the byte offset, never a protobuf parse of garbage.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterable, Iterator

import numba
import numpy as np

_POLY = 0x82F63B78


def _table() -> np.ndarray:
    t = np.zeros(256, np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        t[i] = c
    return t


_TABLE = _table()


@numba.njit(cache=True, nogil=True)
def _crc32c_kernel(data: np.ndarray, table: np.ndarray) -> np.uint32:  # pragma: no cover - compiled
    crc = np.uint32(0xFFFFFFFF)
    for b in data:
        crc = table[(crc ^ np.uint32(b)) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
    return crc ^ np.uint32(0xFFFFFFFF)


def crc32c(data: bytes) -> int:
    """CRC-32C of `data` (0xE3069283 for b"123456789")."""
    return int(_crc32c_kernel(np.frombuffer(data, np.uint8), _TABLE))


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordError(ValueError):
    """A file is not a valid TFRecord file (wrong format, truncated, corrupted); the message names it."""


def read_records(path: str | os.PathLike, check_crc: bool = True) -> Iterator[bytes]:
    """Yield the records (bytes) of a TFRecord file, checking both CRCs of each.

    Compressed TFRecords (GZIP/ZLIB) are not supported: decompress them first (Waymo's are not compressed).
    """
    path = Path(path)
    with open(path, "rb") as f:
        i, offset = 0, 0
        while True:
            head = f.read(12)
            if not head:
                return
            where = f"{path}: record {i} at byte {offset}"
            if len(head) < 12:
                raise TFRecordError(f"{where}: truncated header ({len(head)} of 12 bytes); the file is cut short "
                                    "— download it again")
            length, len_crc = struct.unpack("<QI", head)
            if check_crc and masked_crc32c(head[:8]) != len_crc:
                hint = " (gzip-compressed? decompress it first)" if head[:2] == b"\x1f\x8b" else ""
                raise TFRecordError(f"{where}: length checksum mismatch: not a TFRecord file{hint}, or corrupted")
            data = f.read(length)
            if len(data) < length:
                raise TFRecordError(f"{where}: truncated record ({len(data)} of {length} bytes); the file is cut "
                                    "short — download it again")
            tail = f.read(4)
            if len(tail) < 4:
                raise TFRecordError(f"{where}: truncated record (checksum missing); the file is cut short — "
                                    "download it again")
            if check_crc and masked_crc32c(data) != struct.unpack("<I", tail)[0]:
                raise TFRecordError(f"{where}: data checksum mismatch; the file is corrupted — download it again")
            yield data
            i += 1
            offset += 16 + length


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> Path:
    """Write records as a TFRecord file, atomically (temporary file + rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            for r in records:
                head = struct.pack("<Q", len(r))
                f.write(head + struct.pack("<I", masked_crc32c(head)) + r + struct.pack("<I", masked_crc32c(r)))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def precompile() -> None:
    assert crc32c(b"123456789") == 0xE3069283
