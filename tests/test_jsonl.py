"""torch_utils.jsonl: the one JSON-lines writer (gen_images.jsonl, invert.jsonl, stats.jsonl, metric-*.jsonl)."""
import math
import os

import pytest

from torch_utils import jsonl
from torch_utils.jsonl import append_jsonl, read_jsonl


def test_durable_lines_are_synced_to_disk_before_the_call_returns(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.fstat(fd).st_size)   # the line is in the file when it is synced
        real_fsync(fd)
    monkeypatch.setattr(jsonl.os, 'fsync', fsync)
    path = tmp_path / 'stats.jsonl'
    append_jsonl(path, {'tick': 0})
    assert synced == []
    append_jsonl(path, {'tick': 1}, durable=True)
    assert synced == [path.stat().st_size]
    assert list(read_jsonl(path)) == [{'tick': 0}, {'tick': 1}]


def test_nan_is_written_only_where_allowed(tmp_path):
    path = tmp_path / 'metric-fid.jsonl'
    with pytest.raises(ValueError):
        append_jsonl(path, {'results': {'fid': float('nan')}})
    assert not path.exists()
    append_jsonl(path, {'results': {'fid': float('nan')}}, allow_nan=True)   # as NVIDIA's files hold it
    [record] = read_jsonl(path)
    assert math.isnan(record['results']['fid'])
