"""`best.json` in a run directory: which snapshot is best, so that `--network=RUN_DIR:best` finds it.

The run's first metric decides (the first result key of the earliest record in its metric-*.jsonl files,
normally train.py's first --metrics); the other result keys' best snapshots are listed beside it. It is
rewritten after every result that train.py or calc_metrics.py records, from all of the run's records, and
only snapshots still in the directory count (a retired snapshot cannot be loaded).
"""
from __future__ import annotations

import glob
import os
from typing import Optional

from networks.snapshot import BEST_FILE, read_best, snapshot_nimg
from torch_utils.atomic import atomic_write_json
from torch_utils.jsonl import read_jsonl

from .registry import better


def _records(run_dir: str) -> list[dict]:
    records = [r for path in sorted(glob.glob(os.path.join(glob.escape(run_dir), 'metric-*.jsonl')))
               for r in read_jsonl(path)
               if isinstance(r.get('results'), dict) and isinstance(r.get('snapshot_pkl'), str)]
    return sorted(records, key=lambda r: r.get('timestamp', 0) if isinstance(r.get('timestamp'), (int, float)) else 0)


def best_by_key(run_dir: str) -> dict[str, dict]:
    """{result key: {snapshot, value, kimg}} of the best existing snapshot per result key that has a better direction."""
    best: dict[str, dict] = {}
    for record in _records(run_dir):
        name = record['snapshot_pkl']
        if os.path.basename(name) != name or not os.path.isfile(os.path.join(run_dir, name)):
            continue
        for key, value in record['results'].items():
            direction = better(key)
            if direction is None or not isinstance(value, (int, float)) or value != value:
                continue
            old = best.get(key)
            if old is None or (value < old['value'] if direction == 'min' else value > old['value']):
                best[key] = dict(snapshot=name, value=float(value), kimg=snapshot_nimg(name) / 1000)
    return best


def update_best(run_dir: str) -> Optional[dict]:
    """Rewrite RUN_DIR/best.json from the run's metric records; returns what it holds (None: nothing to rank)."""
    by_key = best_by_key(run_dir)
    if not by_key:
        return None
    first = next(k for r in _records(run_dir) for k in r['results'] if k in by_key)
    best = dict(metric=first, **by_key[first], by_metric=by_key)
    atomic_write_json(os.path.join(run_dir, BEST_FILE), best)
    return best


def best_line(run_dir: str) -> Optional[str]:
    """One log line on the run's best snapshot and how to load it; None before anything was ranked."""
    try:
        best = read_best(run_dir)
        return (f'best so far by {best["metric"]}: {best["snapshot"]} ({best["value"]:.5g}); '
                f'--network={run_dir}:best loads it')
    except (OSError, ValueError, KeyError, TypeError):
        return None
