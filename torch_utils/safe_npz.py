"""Reading .npz archives (latents, directions) and .npy arrays that may be hostile, without numpy's np.load.

Every array is read through its header first: a plain dtype from an allow-list of kinds (no objects, structured
or datetime arrays), a shape of at most MAX_NDIM dimensions whose byte count is exactly what the archive member
holds and at most `max_bytes`, and the caller's expected shape, all before a byte of data is read. The data is
then read incrementally, exactly that many bytes, so a megabyte of deflated zeros that inflates to gigabytes is
refused at its header, and the CRC is checked at the end of the member. Every failure (bad CRC, truncation,
encryption, an unknown compression method, a header that is no header) is an NpzError with one line.
"""
from __future__ import annotations

import math
import os
import re
import struct
import zipfile
import zlib
from typing import Any, BinaryIO, Optional, Sequence, Union

import numpy as np

from torch_utils.cli import UserError

MAX_NDIM = 8
MAX_HEADER = 10_000                # numpy's own limit on a header's length
MAX_ARRAY_BYTES = 256 << 20        # per array, unless the caller allows more
MAX_ARCHIVE_BYTES = 512 << 20      # all arrays read from one archive together
NUMBERS = 'biufc'                  # bool, signed and unsigned integers, floats, complex
TEXT = 'U'
_MAGIC = b'\x93NUMPY'
Shape = Sequence[Optional[int]]    # an expected shape; None matches any length


class NpzError(ValueError, UserError):
    """An archive or array that cannot be read: one line that reads after the file's name (and an array's, in
    quotes), as in '<file>: "ws" has shape [2, 3]; expected [N, 18, 512]'."""


def _one_line(error: BaseException) -> str:
    return ' '.join(f'{type(error).__name__}: {error}'.split())[:200]


_HEADER_ITEM = re.compile(r"\s*'(descr|fortran_order|shape)'\s*:\s*('[^'\\]*'|True|False|\(\s*(?:\d+\s*,\s*)*\d*\s*\))\s*,?")


def _parse_header(text: str) -> dict:
    """The header dict numpy writes, {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }, read by a
    grammar of exactly that (no Python parser: nothing in it is compiled)."""
    body = text.strip()
    if body.startswith('{') and "'descr'" in body and re.search(r"'descr'\s*:\s*\[", body):
        raise NpzError('is a structured array, which is not read (its header describes fields)')
    if not (body.startswith('{') and body.endswith('}')):
        raise NpzError('has an unreadable .npy header')
    body, pos, items = body[1:-1], 0, {}
    while body[pos:].strip():
        m = _HEADER_ITEM.match(body, pos)
        if m is None or m.group(1) in items:
            raise NpzError('has an unreadable .npy header')
        value = m.group(2)
        if value[0] == "'":
            items[m.group(1)] = value[1:-1]
        elif value[0] == '(':
            items[m.group(1)] = tuple(int(n) for n in value[1:-1].replace(',', ' ').split())
        else:
            items[m.group(1)] = value == 'True'
        pos = m.end()
    if set(items) != {'descr', 'fortran_order', 'shape'} or not isinstance(items['descr'], str) \
            or not isinstance(items['fortran_order'], bool) or not isinstance(items['shape'], tuple):
        raise NpzError('has a .npy header without exactly descr, fortran_order and shape')
    return items


def read_header(f: BinaryIO) -> tuple[np.dtype, tuple, bool]:
    """(dtype, shape, fortran order) from a .npy header; `f` is left at the first data byte."""
    magic = f.read(8)
    if len(magic) != 8 or magic[:6] != _MAGIC or magic[6] not in (1, 2, 3):
        raise NpzError('is not a .npy array (bad magic)')
    size_format = '<H' if magic[6] == 1 else '<I'
    raw_size = f.read(struct.calcsize(size_format))
    if len(raw_size) != struct.calcsize(size_format):
        raise NpzError('has a truncated .npy header')
    size = struct.unpack(size_format, raw_size)[0]
    if size > MAX_HEADER:
        raise NpzError(f'has a .npy header of {size} bytes (at most {MAX_HEADER})')
    text = f.read(size)
    if len(text) != size:
        raise NpzError('has a truncated .npy header')
    header = _parse_header(text.decode('utf-8' if magic[6] == 3 else 'latin1', 'replace'))
    descr, fortran, shape = header['descr'], header['fortran_order'], header['shape']
    if len(shape) > MAX_NDIM:
        raise NpzError(f'has a .npy header of {len(shape)} dimensions (at most {MAX_NDIM})')
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError) as e:
        raise NpzError(f'has an unknown dtype {descr[:40]!r} ({_one_line(e)})') from None
    return dtype, shape, fortran


def _check(dtype: np.dtype, shape: tuple, kinds: str, shapes: Optional[Sequence[Shape]], max_bytes: int) -> int:
    if dtype.hasobject:
        raise NpzError('contains pickled objects, which are not loaded (plain arrays only)')
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        allowed = ', '.join(_KIND_NAMES[k] for k in kinds)
        raise NpzError(f'has dtype {dtype.str}, which is not read here (only {allowed})')
    if shapes is not None and not any(len(want) == len(shape) and all(w is None or w == n for w, n in zip(want, shape))
                                      for want in shapes):
        wanted = ' or '.join('[' + ', '.join('N' if n is None else str(n) for n in want) + ']' for want in shapes)
        raise NpzError(f'has shape {list(shape)}; expected {wanted}')
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise NpzError(f'has shape {list(shape)} of {dtype.str}: {nbytes / 2 ** 20:.1f} MiB (at most '
                       f'{max_bytes / 2 ** 20:.0f} MiB are read)')
    return nbytes


_KIND_NAMES = dict(b='bool', i='int', u='uint', f='float', c='complex', U='text')


def read_array(f: BinaryIO, available: int, kinds: str = NUMBERS, shapes: Optional[Sequence[Shape]] = None,
               max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    """An array from a .npy stream holding `available` bytes in all, checked (see the module doc)."""
    dtype, shape, fortran = read_header(f)
    nbytes = _check(dtype, shape, kinds, shapes, max_bytes)
    holds = available - f.tell()
    if holds != nbytes:
        raise NpzError(f'declares {nbytes} bytes of data in its header but holds {holds}')
    data = f.read(nbytes)
    if len(data) != nbytes or f.read(1):   # reading to the end also makes zipfile check the CRC
        raise NpzError('is truncated' if len(data) != nbytes else 'holds more data than its header declares')
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order='F' if fortran else 'C')
    return array.copy(order='K')


class NpzArchive:
    """The arrays of an .npz file, each read on request through its header (see read_array), together at most
    `budget` bytes (many members of deflated zeros must not add up either)."""

    def __init__(self, path: Union[str, os.PathLike], budget: int = MAX_ARCHIVE_BYTES):
        self.budget = budget
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as e:
            raise NpzError(f'is not a readable .npz archive ({_one_line(e)})') from None
        self._infos = {}
        for info in infos:
            if info.flag_bits & 0x1:
                raise NpzError(f'is encrypted ({info.filename})')
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise NpzError(f'uses compression method {info.compress_type} for {info.filename} (numpy writes '
                               f'stored or deflated members)')
            if info.filename.endswith('.npy'):
                self._infos[info.filename[:-4]] = info
        self.files = list(self._infos)

    def __enter__(self) -> 'NpzArchive':
        return self

    def __exit__(self, *exc: Any) -> None:
        self._zip.close()

    def __contains__(self, key: str) -> bool:
        return key in self._infos

    def array(self, key: str, kinds: str = NUMBERS, shapes: Optional[Sequence[Shape]] = None,
              max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
        info = self._infos.get(key)
        if info is None:
            raise NpzError(f'has no array "{key}"')
        try:
            with self._zip.open(info) as f:
                array = read_array(f, info.file_size, kinds, shapes, min(max_bytes, self.budget))
            self.budget -= array.nbytes
            return array
        except NpzError as e:
            raise NpzError(f'"{key}" {e}') from None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError, ValueError) as e:
            raise NpzError(f'"{key}" cannot be read ({_one_line(e)})') from None

    def scalar(self, key: str, kinds: str = NUMBERS) -> Any:
        """A 0-d array's value as a Python number (or str for TEXT)."""
        return self.array(key, kinds, shapes=[()])[()].item()

    def text(self, key: str, max_chars: int = 1 << 20) -> str:
        return str(self.array(key, TEXT, shapes=[()], max_bytes=4 * max_chars)[()])


def load_npy(path: Union[str, os.PathLike], kinds: str = NUMBERS, shapes: Optional[Sequence[Shape]] = None,
             max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    """One .npy file, as NpzArchive.array reads an archive's member."""
    try:
        with open(path, 'rb') as f:
            return read_array(f, os.fstat(f.fileno()).st_size, kinds, shapes, max_bytes)
    except OSError as e:
        raise NpzError(f'cannot be read ({e.strerror or e})') from None
