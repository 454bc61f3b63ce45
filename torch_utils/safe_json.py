"""Reading JSON that may be hostile (dataset.json, training options, metadata inside .npz files, JSON lines).

json.loads recurses once per nesting level; a file nested a hundred thousand levels deep ends in a RecursionError
from deep inside the parser (and any code that walks the result recurses as deeply). So the nesting depth is
measured first, on the raw bytes with string contents removed, and anything deeper than MAX_DEPTH is refused
with a ValueError before the parser starts. Files are also held to a size limit before they are read whole.
"""
from __future__ import annotations

import json
import os
import re
import stat
from typing import Any, Union

import numpy as np

MAX_DEPTH = 100
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b'[]{}')))


def nesting_depth(data: bytes) -> int:
    """How deeply JSON text nests arrays and objects (brackets inside strings do not count)."""
    brackets = np.frombuffer(_STRINGS.sub(b'""', data).translate(None, _NOT_BRACKETS), dtype=np.uint8)
    if brackets.size == 0:
        return 0
    opening = (brackets == ord('[')) | (brackets == ord('{'))
    return int(np.cumsum(np.where(opening, 1, -1), dtype=np.int64).max())


def loads(data: Union[bytes, str], max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing text nested deeper than `max_depth` before parsing; every failure is a ValueError."""
    raw = data.encode('utf-8', 'surrogatepass') if isinstance(data, str) else bytes(data)
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise ValueError(f'JSON nested {depth} levels deep (at most {max_depth} are read)')
    try:
        return json.loads(raw)
    except RecursionError:   # not reachable within max_depth; kept so that no parser failure escapes as another type
        raise ValueError('JSON nested too deeply') from None


def load_file(path: Union[str, os.PathLike], limit: int, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON file of at most `limit` bytes (checked before reading and while reading), as `loads`. Only a regular
    file is opened (a FIFO would make open() wait forever); a missing one raises FileNotFoundError."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError('not a regular file')
    with open(path, 'rb') as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f'larger than the {limit / 2 ** 20:.0f} MiB a JSON file may hold here')
    return loads(data, max_depth)
