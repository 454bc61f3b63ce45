"""How many bytes one file of a dataset may hold, reading no more than that, and which files of a folder to read.

A zip member declares its uncompressed size, but a few kilobytes of deflated zeros can expand to
gigabytes, and the declaration can lie. So every image is held to what an image of its pixel size can
need: 16-bit RGBA stored uncompressed, twice over, plus room for metadata (ICC profiles, EXIF
thumbnails). The size is checked against the declaration first and enforced again while reading.

In a folder, only regular files inside it are read: a device (a link to /dev/zero never ends), a FIFO (opening
it waits forever) or a link that leaves the folder is skipped with the reason.
"""
from __future__ import annotations

import os
import stat
from typing import BinaryIO

METADATA_ALLOWANCE = 16 << 20
JSON_LIMIT = 256 << 20   # dataset.json of a few million labelled images


class MemberTooLarge(OSError):
    """A file larger than an image of its size can be (reported and skipped by the readers)."""


def image_size_limit(width: int, height: int) -> int:
    return 2 * width * height * 8 + METADATA_ALLOWANCE


def describe_limit(nbytes: int, limit: int, what: str) -> str:
    return f'too large: {nbytes / 2 ** 20:.1f} MiB uncompressed for {what} (limit {limit / 2 ** 20:.1f} MiB)'


def check_declared(nbytes: int, limit: int, what: str) -> None:
    if nbytes > limit:
        raise MemberTooLarge(describe_limit(nbytes, limit, what))


def read_limited(f: BinaryIO, limit: int, what: str) -> bytes:
    """All of `f`, refusing (without reading on) anything past `limit` bytes."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise MemberTooLarge(f'too large: more than {limit / 2 ** 20:.1f} MiB uncompressed for {what} '
                             f'(its size was declared smaller)')
    return data


def walk_files(root: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(names relative to `root`, '/'-separated, of the regular files below it; [(name, reason)] of the entries
    skipped: devices, FIFOs, sockets, dangling links and links to anything outside `root`)."""
    top = os.path.realpath(root)
    names, skipped = [], []
    for folder, _, files in os.walk(root):
        for f in files:
            path = os.path.join(folder, f)
            name = os.path.relpath(path, root).replace(os.sep, '/')
            reason = special_file_reason(path, top)
            if reason:
                skipped.append((name, reason))
            else:
                names.append(name)
    return sorted(names), skipped


def special_file_reason(path: str, top: str) -> str:
    """Why `path` (below the real folder `top`) is not read, or '' for a regular file inside it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f'cannot read ({e.strerror or e})'
    if not stat.S_ISREG(mode):
        return 'not a regular file (a device, FIFO or socket)'
    real = os.path.realpath(path)
    if os.path.commonpath([real, top]) != top:
        return 'a link to a file outside the folder'
    return ''
