"""JSON-lines records appended to output folders: gen_images.jsonl, invert.jsonl, a run's stats.jsonl and
metric-*.jsonl, an inverter's training log. One writer for all of them, one tolerant reader."""
from __future__ import annotations

import json
import os
from typing import Iterator, Union

from torch_utils import safe_json

PathLike = Union[str, os.PathLike]


def append_jsonl(path: PathLike, record: dict, *, durable: bool = False, allow_nan: bool = False) -> None:
    """Append one line.

    `durable`: flushed and fsynced before returning, so that a kill -9 or a power cut loses at most the line
    being written (a training run's records, which a resume reads back). `allow_nan`: numbers that are not
    finite are written as NaN/Infinity, as NVIDIA's stats.jsonl and metric files do (Python reads them, strict
    JSON readers do not); otherwise they are refused (ValueError) before anything is written."""
    line = json.dumps(record, allow_nan=allow_nan) + '\n'
    with open(path, 'a') as f:
        f.write(line)
        if durable:
            f.flush()
            os.fsync(f.fileno())


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
