"""Reading StyleGAN2-TF datasets (TFRecord files of `tf.train.Example` protos) without TensorFlow.

A TFRecord file is a sequence of records, each framed as
    uint64 length | uint32 masked CRC-32C of the 8 length bytes | data | uint32 masked CRC-32C of data
(little-endian). StyleGAN2's dataset_tool stores one image per record as an Example whose features are
`shape` (int64 list [C, H, W]) and `data` (bytes: raw uint8 CHW). We decode exactly that much protobuf.
"""
from __future__ import annotations

import io
import math
import os
import struct
from typing import BinaryIO, Iterator, Optional

import numpy as np

from torch_utils.cli import UserError

# ---------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, as TFRecord uses it.

_POLY = 0x82F63B78


def _make_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
        table[byte] = crc
    return table


_TABLE = _make_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def crc32c_bytewise(data: bytes, crc: int = 0) -> int:
    """Plain table-driven CRC-32C; the reference the fast path is tested against."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE_LIST[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _shift_matrix(num_zero_bytes: int) -> list[int]:
    """The linear map "feed this many zero bytes into the CRC register", as 32 column images."""
    columns = []
    for bit in range(32):
        reg = 1 << bit
        for _ in range(num_zero_bytes):
            reg = _TABLE_LIST[reg & 0xFF] ^ (reg >> 8)
        columns.append(reg)
    return columns


def _apply(columns: list[int], reg: int) -> int:
    out, bit = 0, 0
    while reg:
        if reg & 1:
            out ^= columns[bit]
        reg >>= 1
        bit += 1
    return out


_SHIFTS: dict[int, list[int]] = {}


def crc32c(data: bytes) -> int:
    """CRC-32C of `data`, fast enough for megabyte records in pure Python + numpy.

    The register update is linear over GF(2), so the data is cut into equal chunks whose registers are
    advanced side by side with numpy (one table lookup per byte position for all chunks at once), then
    chained: reg = shift(reg, chunk_len) ^ chunk_reg."""
    n = len(data)
    if n < 1 << 16:   # below this the chunked version does not pay for its set-up
        return crc32c_bytewise(data)
    chunk = max(64, int(np.sqrt(n)))
    num_chunks = n // chunk
    columns = np.frombuffer(data, dtype=np.uint8, count=num_chunks * chunk).reshape(num_chunks, chunk).T.copy()
    regs = np.zeros(num_chunks, dtype=np.uint32)
    for column in columns:
        regs = _TABLE[(regs ^ column) & 0xFF] ^ (regs >> np.uint32(8))
    if chunk not in _SHIFTS:
        _SHIFTS[chunk] = _shift_matrix(chunk)
    shift = _SHIFTS[chunk]
    reg = _apply(shift, 0xFFFFFFFF) ^ int(regs[0])     # the initial all-ones register, carried over chunk 0
    for r in regs[1:].tolist():
        reg = _apply(shift, reg) ^ r
    for b in data[num_chunks * chunk:]:
        reg = _TABLE_LIST[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's CRC: rotated right by 15 bits plus a constant, so that CRCs of CRCs stay well distributed."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Record framing.

class TFRecordError(UserError):
    """A TFRecord file that cannot be read further."""


MAX_RECORD_BYTES = 256 << 20   # one image record: a 4096x4096 RGB image is 48 MiB


def _bytes_left(f: BinaryIO) -> Optional[int]:
    try:
        return os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


def read_records(f: BinaryIO, name: str = '<tfrecord>', verify: bool = True) -> Iterator[tuple[bytes, bool]]:
    """(payload, data CRC ok) of every record in `f`. A record whose data CRC fails is still yielded (flagged),
    since its length was intact and the records after it can be read; a corrupt length or a truncated
    record raises TFRecordError, because nothing after it can be found. A length beyond what the file holds
    (or MAX_RECORD_BYTES) is refused before anything is read for it."""
    index = 0
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise TFRecordError(f'{name}: record {index} is truncated (header)')
        length, length_crc = struct.unpack('<QI', header)
        if masked_crc32c(header[:8]) != length_crc:
            raise TFRecordError(f'{name}: record {index} has a corrupt length field (CRC mismatch)')
        left = _bytes_left(f)
        if length > MAX_RECORD_BYTES or (left is not None and length + 4 > left):
            raise TFRecordError(f'{name}: record {index} declares {length} bytes'
                                + (f', but the file holds {max(left - 4, 0)} more' if left is not None else
                                   f' (at most {MAX_RECORD_BYTES >> 20} MiB)'))
        payload = f.read(length)
        footer = f.read(4)
        if len(payload) < length or len(footer) < 4:
            raise TFRecordError(f'{name}: record {index} is truncated')
        ok = not verify or masked_crc32c(payload) == struct.unpack('<I', footer)[0]
        yield payload, ok
        index += 1


# ---------------------------------------------------------------------------------------------
# The little protobuf we need: Example{features: Features{feature: map<string, Feature>}}.

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError('truncated varint')
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError('varint too long')


MAX_VALUES = 64   # numbers in one feature of a record (a StyleGAN2 record's `shape` has 3)
MAX_FEATURES = 64  # features in one record (StyleGAN2 writes two)


def _fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of one message; value is an int or a memoryview into `buf` (no copy)."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError('truncated field')
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f'unsupported wire type {wire}')
        yield number, wire, value


def _numbers(values: Iterator, what: str) -> list:
    out = []
    for value in values:
        out.append(value)
        if len(out) > MAX_VALUES:
            raise ValueError(f'a {what} feature holds more than {MAX_VALUES} values')
    return out


def _packed(v: memoryview) -> Iterator[int]:
    pos = 0
    while pos < len(v):
        x, pos = _varint(v, pos)
        yield x


def _feature(buf: memoryview):
    """A Feature: list of bytes (field 1), floats (2) or int64s (3), each at most MAX_VALUES long (a record of a
    few megabytes of packed numbers would otherwise become a list of a hundred megabytes)."""
    for number, _, value in _fields(buf):
        if number == 1:
            return _numbers((bytes(v) for n, _, v in _fields(value) if n == 1), 'bytes')
        if number == 2:
            floats = (x for n, wire, v in _fields(value) if n == 1
                      for x in (struct.iter_unpack('<f', v[:len(v) // 4 * 4]) if wire == 2 else [struct.unpack('<f', v)]))
            return [x for (x,) in _numbers(floats, 'float')]
        if number == 3:
            ints = (x for n, wire, v in _fields(value) if n == 1 for x in ((v,) if wire == 0 else _packed(v)))
            return [x - (1 << 64) if x >= 1 << 63 else x for x in _numbers(ints, 'int64')]
    return []


def parse_example(buf: bytes) -> dict[str, list]:
    """Feature name -> list of values of one serialized tf.train.Example."""
    features = {}
    for number, _, value in _fields(memoryview(buf)):
        if number != 1:
            continue
        for n, _, entry in _fields(value):
            if n != 1:
                continue
            key, feature = None, memoryview(b'')
            for en, _, ev in _fields(entry):
                if en == 1:
                    key = bytes(ev).decode('utf-8')
                elif en == 2:
                    feature = ev
            if key is not None:
                if len(features) >= MAX_FEATURES and key not in features:
                    raise ValueError(f'a record with more than {MAX_FEATURES} features')
                features[key] = _feature(feature)
    return features


def example_to_image(buf: bytes) -> np.ndarray:
    """StyleGAN2-TF record -> HWC uint8 image."""
    features = parse_example(buf)
    if 'shape' not in features or 'data' not in features or not features['data']:
        raise ValueError(f'not a StyleGAN2 image record (features: {", ".join(sorted(features)) or "none"})')
    shape = [int(v) for v in features['shape']]
    data = features['data'][0]
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1 or math.prod(shape) != len(data):
        raise ValueError(f'shape {shape[:4]} does not match {len(data)} data bytes of a [C, H, W] image')
    return np.frombuffer(data, dtype=np.uint8).reshape(shape).transpose(1, 2, 0)
