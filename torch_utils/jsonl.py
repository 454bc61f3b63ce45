"""JSON-lines records that the scripts append to their output folders (gen_images.jsonl, invert.jsonl, ...)."""
from __future__ import annotations

import json
import os
from typing import Iterator, Union

from torch_utils import safe_json

PathLike = Union[str, os.PathLike]


def append_jsonl(path: PathLike, record: dict) -> None:
    """Append one line. Numbers that are not finite are refused (ValueError) rather than written as a bare
    NaN, which is not JSON and breaks every reader of the file."""
    line = json.dumps(record, allow_nan=False) + '\n'
    with open(path, 'a') as f:
        f.write(line)


def read_jsonl(path: PathLike) -> Iterator[dict]:
    """The records of a JSON-lines file; nothing if it does not exist, lines that do not parse are passed over."""
    try:
        with open(path) as f:
            lines = f.readlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            record = safe_json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record
