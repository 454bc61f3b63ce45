"""Reading the toolkit's plain-array .npz files (directions, latents) with one-line errors naming the file.

They are opened with `allow_pickle=False`: an object array (a pickle inside the archive) is refused, never
unpickled.
"""
from __future__ import annotations

import json
import os
from typing import Callable, TypeVar, Union

import numpy as np

from .errors import EditingError

T = TypeVar('T')


def read_npz(path: Union[str, os.PathLike], kind: str, read: Callable[[np.lib.npyio.NpzFile], T]) -> T:
    """`read(archive)`, with any failure (missing file, bad archive, pickled arrays, missing keys: `read`
    raises ValueError with its reason) turned into a ValueError `'<path>: <reason>'`. `kind` names the
    file type in the message, e.g. 'directions'."""
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise EditingError(f'{path}: no such file') from None
    except OSError as e:
        raise EditingError(f'{path}: cannot read ({e.strerror or e})') from None
    if magic != b'PK\x03\x04':   # np.load would take anything else for a pickle or a .npy
        raise EditingError(f'{path}: not a {kind} .npz archive (a zip of arrays, as numpy.savez writes)')
    try:
        with np.load(path, allow_pickle=False) as archive:
            return read(archive)
    except ValueError as e:
        msg = str(e)
        if 'allow_pickle' in msg or 'Object arrays' in msg:
            msg = 'contains pickled objects, which are not loaded (plain arrays only)'
        raise EditingError(f'{path}: {msg}') from None
    except (OSError, KeyError, EOFError, json.JSONDecodeError) as e:
        raise EditingError(f'{path}: not a readable {kind} .npz ({e})') from None
