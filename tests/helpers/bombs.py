"""Building small files that decompress to a lot (zip members, gzip, PNG) without compressing the lot here.

Deflate blocks ended by a full flush start from a fresh dictionary, so the compressed form of a repeated chunk is
one byte string repeated: a gigabyte of zeros costs a few megabytes and no gigabyte of memory or CPU time.
"""
from __future__ import annotations

import struct
import zlib
from typing import Optional


class Deflated:
    """A raw deflate stream of `prefix` followed by `count` copies of `chunk`, with the checksums of the data."""

    def __init__(self, prefix: bytes, chunk: bytes, count: int, suffix: bytes = b''):
        c = zlib.compressobj(1, zlib.DEFLATED, -15)
        head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
        block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
        again = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
        assert block == again, 'a fully flushed block must not depend on what came before'
        tail = c.compress(suffix) + c.flush()
        self.raw = head + block + again * (count - 1) + tail if count else head + tail
        self.size = len(prefix) + len(chunk) * count + len(suffix)
        crc, adler = zlib.crc32(prefix), zlib.adler32(prefix)
        for _ in range(count):
            crc, adler = zlib.crc32(chunk, crc), zlib.adler32(chunk, adler)
        self.crc, self.adler = zlib.crc32(suffix, crc), zlib.adler32(suffix, adler)

    def zlib_stream(self) -> bytes:
        return b'\x78\x01' + self.raw + struct.pack('>I', self.adler)

    def gzip(self) -> bytes:
        header = b'\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff'
        return header + self.raw + struct.pack('<II', self.crc, self.size & 0xFFFFFFFF)


def write_zip(path, members: list) -> None:
    """A zip archive of `members`: (name, data bytes) stored, or (name, Deflated) deflated, or
    (name, data, method, flags, crc or None) to write odd headers as they are."""
    local, central, offset = [], [], 0
    for member in members:
        name = member[0].encode()
        if isinstance(member[1], Deflated):
            d = member[1]
            data, method, flags, crc, size = d.raw, 8, 0, d.crc, d.size
        else:
            data = member[1]
            method = member[2] if len(member) > 2 else 0
            flags = member[3] if len(member) > 3 else 0
            crc = member[4] if len(member) > 4 and member[4] is not None else zlib.crc32(data)
            size = len(data)
        fields = struct.pack('<HHHHHIII', 20, flags, method, 0, 0x21, crc, len(data), size)
        header = b'PK\x03\x04' + fields + struct.pack('<HH', len(name), 0) + name
        central.append(b'PK\x01\x02' + struct.pack('<H', 20) + fields
                       + struct.pack('<HHHHHII', len(name), 0, 0, 0, 0, 0, offset) + name)
        local.append(header + data)
        offset += len(header) + len(data)
    directory = b''.join(central)
    end = b'PK\x05\x06' + struct.pack('<HHHHIIH', 0, 0, len(central), len(central), len(directory), offset, 0)
    with open(path, 'wb') as f:
        f.write(b''.join(local) + directory + end)


def npy_header(descr: str, shape: tuple, fortran: bool = False) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    text += ' ' * (63 - (len(text) + 10) % 64) + '\n'
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', len(text)) + text.encode('latin1')


def png(width: int, height: int, bit_depth: int = 8, colour_type: int = 0, rows: Optional[Deflated] = None) -> bytes:
    """A PNG of zero pixels (or the given IDAT stream), built row by row without holding the image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    if rows is None:
        rows = Deflated(b'', bytes(1 + width * channels * bit_depth // 8), height)
    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, colour_type, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', rows.zlib_stream()) + chunk(b'IEND', b'')


def _local_header(name: bytes, data: bytes) -> bytes:
    fields = struct.pack('<HHHHHIII', 20, 0, 0, 0, 0x21, zlib.crc32(data), len(data), len(data))
    return b'PK\x03\x04' + fields + struct.pack('<HH', len(name), 0) + name


def overlapping_zip(path, first: list, chained: list, block: bytes) -> None:
    """A stored zip archive whose `chained` members overlap: each one's data is the local headers and data of the
    ones after it, the last one's data is `block`; sizes and CRCs are all valid. `first`: ordinary (name, data)
    members before them."""
    data = block
    chain = []   # (name, data) from the last member to the first
    for name in reversed(chained):
        chain.append((name, data))
        data = _local_header(name.encode(), data) + data
    chain.reverse()
    local, central, offset = b'', [], 0
    for name, payload in first:
        header = _local_header(name.encode(), payload)
        central.append((name.encode(), payload, offset))
        local += header + payload
        offset += len(header) + len(payload)
    for name, payload in chain:
        central.append((name.encode(), payload, offset))
        offset += len(_local_header(name.encode(), payload))   # the next member's header starts inside this data
    local += data
    directory = b''
    for name, payload, at in central:
        fields = struct.pack('<HHHHHIII', 20, 0, 0, 0, 0x21, zlib.crc32(payload), len(payload), len(payload))
        directory += (b'PK\x01\x02' + struct.pack('<H', 20) + fields
                      + struct.pack('<HHHHHII', len(name), 0, 0, 0, 0, 0, at) + name)
    end = b'PK\x05\x06' + struct.pack('<HHHHIIH', 0, 0, len(central), len(central), len(directory), len(local), 0)
    with open(path, 'wb') as f:
        f.write(local + directory + end)
