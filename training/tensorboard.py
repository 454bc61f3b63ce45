"""TensorBoard event files beside stats.jsonl, written without TensorBoard or TensorFlow installed.

An events file is TFRecord framing (length, masked CRC-32C, payload, masked CRC-32C) around serialized
`tensorboard.Event` protobufs; scalars need only four of its fields, which are encoded here by hand:
Event{wall_time=1 (double), step=2 (int64), file_version=3 (string), summary=5 (Summary)},
Summary{value=1 (repeated Value)}, Value{tag=1 (string), simple_value=2 (float)}.

So every run writes them and `pip install tensorboard; tensorboard --logdir runs` shows the curves of
runs already trained. Tags are NVIDIA's (the stats.jsonl names, `Metrics/<result>`); the step is the
number of real images shown (cur_nimg), since our ticks may be fractions of a kimg.
"""
from __future__ import annotations

import importlib.util
import math
import os
import socket
import struct
import time
from typing import Iterator, Optional

from data.tfrecord import _fields, masked_crc32c, read_records
from torch_utils.atomic import atomic_write_bytes

FILE_VERSION = b'brain.Event:2'


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1   # int64 as protobuf sends it (two's complement)
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int = 0, scalars: Optional[dict[str, float]] = None,
                 file_version: Optional[bytes] = None) -> bytes:
    """One serialized Event: the file-version header, or scalar values at a step."""
    out = _varint(1 << 3 | 1) + struct.pack('<d', wall_time) + _varint(2 << 3 | 0) + _varint(step)
    if file_version is not None:
        out += _length_delimited(3, file_version)
    if scalars:
        values = b''.join(_length_delimited(1, _length_delimited(1, tag.encode()) + _varint(2 << 3 | 5) +
                                            struct.pack('<f', value)) for tag, value in scalars.items())
        out += _length_delimited(5, values)
    return out


def frame(payload: bytes) -> bytes:
    """A TFRecord: length, its masked CRC, the payload, its masked CRC."""
    length = struct.pack('<Q', len(payload))
    return length + struct.pack('<I', masked_crc32c(length)) + payload + struct.pack('<I', masked_crc32c(payload))


class EventWriter:
    """Appends scalars to `events.out.tfevents.<time>.<host>` in a run directory (one file per start, as
    TensorBoard's own writer does; it reads them all as one run)."""

    def __init__(self, run_dir: str):
        now = time.time()
        self.path = os.path.join(run_dir, f'events.out.tfevents.{int(now):010d}.{socket.gethostname()}.sg3c')
        with open(self.path, 'ab') as f:
            f.write(frame(encode_event(now, file_version=FILE_VERSION)))

    def scalars(self, step: int, values: dict[str, float], wall_time: Optional[float] = None) -> None:
        finite = {tag: float(v) for tag, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if finite:
            with open(self.path, 'ab') as f:   # closed after each tick: a killed run loses nothing written
                f.write(frame(encode_event(time.time() if wall_time is None else wall_time, int(step), finite)))


def tick_scalars(tick_stats: dict) -> dict[str, float]:
    """The mean of every statistic of a stats.jsonl record, by its name (as NVIDIA's loop logs them)."""
    return {name: value['mean'] for name, value in tick_stats.items()
            if isinstance(value, dict) and isinstance(value.get('mean'), (int, float))}


def viewer_note(outdir: str) -> str:
    """The one line a run prints about its events file."""
    if importlib.util.find_spec('tensorboard') is None:
        return f'TensorBoard events are written beside stats.jsonl; pip install tensorboard to view them ' \
               f'(tensorboard --logdir {outdir}), or calc_metrics.py --plot draws the curves'
    return f'TensorBoard: tensorboard --logdir {outdir}'


def trim_events(run_dir: str, max_step: int) -> None:
    """Drop the scalars after `max_step` from a run's events files, before a resumed run writes them again
    (stats.jsonl is trimmed the same way), so that TensorBoard shows each tick once. A file that does not
    read as events is left alone."""
    for name in sorted(os.listdir(run_dir)):
        if '.tfevents.' not in name:
            continue
        path = os.path.join(run_dir, name)
        try:
            with open(path, 'rb') as f:
                records = [payload for payload, ok in read_records(f, path) if ok]
            kept = [p for p in records if _decode(p)[0] <= max_step or not _decode(p)[2]]
        except (OSError, ValueError):
            continue
        if len(kept) < len(records):
            atomic_write_bytes(path, b''.join(frame(p) for p in kept))


def _decode(payload: bytes) -> tuple[int, float, dict[str, float]]:
    step, wall, values = 0, 0.0, {}
    for number, _, value in _fields(payload):
        if number == 1:
            wall = struct.unpack('<d', value)[0]
        elif number == 2:
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5:
            for n, _, item in _fields(value):
                if n == 1:
                    fields = {k: v for k, _, v in _fields(item)}
                    values[fields[1].decode()] = struct.unpack('<f', fields[2])[0]
    return step, wall, values


def read_scalars(path: str) -> Iterator[tuple[int, float, dict[str, float]]]:
    """(step, wall time, {tag: value}) of each scalar event in an events file (the file-version one skipped)."""
    with open(path, 'rb') as f:
        for payload, ok in read_records(f, path):
            if not ok:
                raise ValueError(f'{path}: an event fails its CRC')
            step, wall, values = _decode(payload)
            if values:
                yield step, wall, values
