"""How many bytes one image file of a dataset may hold, and reading no more than that.

A zip member declares its uncompressed size, but a few kilobytes of deflated zeros can expand to
gigabytes, and the declaration can lie. So every image is held to what an image of its pixel size can
need: 16-bit RGBA stored uncompressed, twice over, plus room for metadata (ICC profiles, EXIF
thumbnails). The size is checked against the declaration first and enforced again while reading.
"""
from __future__ import annotations

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
