"""Atomic file writes: a file appears complete under its name or not at all.

Everything is written to a temporary file in the destination's folder (same file system, so the final
rename is atomic) and renamed over the destination only after it was flushed to disk. A crash, a
`kill -9` or an exception midway leaves the previous file, if any, untouched.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, BinaryIO, Callable, Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_output(path: PathLike, suffix: str = '.tmp') -> Iterator[str]:
    """Yields a temporary path beside `path` to write to (by any means: a library that wants a file
    name, such as a video encoder); it replaces `path` when the block ends without an exception.
    `suffix` lets writers that pick a format by extension see the right one."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix=suffix)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o644)   # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp, path)
    except OSError as e:
        # A failed write() (e.g. disk full) names no file, a failed mkstemp or open the temporary: users
        # should read the name of the output they asked for.
        if e.filename is None or os.path.basename(str(e.filename)).startswith('.' + os.path.basename(path) + '.'):
            raise OSError(e.errno, e.strerror or str(e), path) from e
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a binary file that becomes `path` once complete and on disk."""
    with atomic_output(path) as tmp:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: PathLike, data: Any, indent: int = 2, sort_keys: bool = False) -> None:
    """`data` as indented JSON with a final newline, written atomically (the one JSON file writer; records
    appended one per line go through torch_utils/jsonl.py)."""
    atomic_write_bytes(path, (json.dumps(data, indent=indent, sort_keys=sort_keys) + '\n').encode())
