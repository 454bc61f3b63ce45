"""Reading the toolkit's plain-array .npz files (directions, latents) with one-line errors naming the file.

They are read through torch_utils.safe_npz, never np.load: each array is checked from its header (dtype kind,
shape, size) before its bytes are read, and nothing in the file can be unpickled.
"""
from __future__ import annotations

import os
from typing import Callable, TypeVar, Union

from torch_utils.safe_npz import NpzArchive, NpzError

from .errors import EditingError

T = TypeVar('T')


def read_npz(path: Union[str, os.PathLike], kind: str, read: Callable[[NpzArchive], T]) -> T:
    """`read(archive)`, with any failure (missing file, bad archive, refused arrays, missing keys: `read`
    raises EditingError or NpzError with its reason) turned into an EditingError `'<path>: <reason>'`. `kind`
    names the file type in the message, e.g. 'directions'."""
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise EditingError(f'{path}: no such file') from None
    except OSError as e:
        raise EditingError(f'{path}: cannot read ({e.strerror or e})') from None
    if magic != b'PK\x03\x04':
        raise EditingError(f'{path}: not a {kind} .npz archive (a zip of arrays, as numpy.savez writes)')
    try:
        with NpzArchive(path) as archive:
            return read(archive)
    except (EditingError, NpzError) as e:
        raise EditingError(f'{path}: {e}') from None
