"""A run directory on disk: claiming a new one, finding the newest, which snapshots it keeps, and
tidying it before a resume so that the run ends up as if it had never stopped.

Snapshots are named by kimg as NVIDIA names them (`network-snapshot-000012.pkl`), with three decimals
when the kimg is not whole (`network-snapshot-000000.512.pkl`, tiny --tick values). NVIDIA names by
whole kimg only, so a schedule finer than 1 kimg overwrites its own snapshots and keeps one per whole
kimg; we keep the same count: a scheduled snapshot retires older ones of the same whole kimg.
"""
from __future__ import annotations

import fcntl
import glob
import os
import re
from typing import Optional

from networks.snapshot import SNAPSHOT_GLOB, Source, save_snapshot, snapshot_nimg
from torch_utils import distributed, safe_json
from torch_utils.atomic import atomic_write_bytes, atomic_write_json
from training.tensorboard import trim_events

_RUN_ID = re.compile(r'^(\d+)-')
_FAKES = re.compile(r'^fakes(\d+)(?:\.(\d+))?\.png$')
OPTIONS_FILE = 'training_options.json'
RUN_DIR_LOCK = '.run-dir.lock'


def _runs(outdir: str) -> dict[str, int]:
    """Run directory names of `outdir` with their numbers."""
    names = os.listdir(outdir) if os.path.isdir(outdir) else []
    return {name: int(m.group(1)) for name in names
            if (m := _RUN_ID.match(name)) and os.path.isdir(os.path.join(outdir, name))}


def claim_run_dir(outdir: str, desc: str) -> str:
    """Create `outdir/NNNNN-desc` with the next free number. Runs started together take turns through
    an advisory lock on `outdir/.run-dir.lock` (released by the kernel even when a holder is killed), so
    each sees the others' directories: no shared number and no gap."""
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, RUN_DIR_LOCK), 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        number = max(_runs(outdir).values(), default=-1) + 1
        while True:
            path = os.path.join(outdir, f'{number:05d}-{desc}')
            try:
                os.mkdir(path)
                return path
            except FileExistsError:   # a file of that name, or a directory made outside the lock
                number += 1


def open_run_dir(outdir: str, desc: str, run_dir: Optional[str], options: dict) -> str:
    """The run directory every process trains into: a new one claimed under `outdir` (when `run_dir`
    is None) or `run_dir`, with `options` written there as training_options.json.

    torchrun runs the same command in every process of every node, so the group meets first and rank 0
    alone claims and writes; the others take its answer (the nodes share a file system)."""
    if distributed.launched_by_torchrun():
        distributed.init(int(os.environ['RANK']), int(os.environ['WORLD_SIZE']))
    if distributed.rank() == 0:
        run_dir = run_dir or claim_run_dir(outdir, desc)
        options = dict(options, run_dir=run_dir)   # the directory's real name, not the plan's placeholder
        atomic_write_json(os.path.join(run_dir, OPTIONS_FILE), options)
    return distributed.all_gather_object(run_dir)[0]


def latest_run_dir(outdir: str) -> Optional[str]:
    """The highest-numbered run of `outdir` (one with training_options.json), if any."""
    runs = [(n, name) for name, n in _runs(outdir).items() if os.path.isfile(os.path.join(outdir, name, OPTIONS_FILE))]
    return os.path.join(outdir, max(runs)[1]) if runs else None


def is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, OPTIONS_FILE))


def run_dir_of(source: Source) -> Optional[str]:
    """The run a --network names, if any: a run directory, the newest run of a folder of runs, the run of
    RUN_DIR:best or of a snapshot file inside a run."""
    if source.kind == 'run':
        return source.path if is_run_dir(source.path) else latest_run_dir(source.path)
    if source.kind in ('best', 'file'):
        run_dir = os.path.dirname(source.path) or '.'
        return run_dir if is_run_dir(run_dir) else None
    return None


def list_snapshots(run_dir: str) -> list[str]:
    """The run's snapshots, oldest first."""
    return sorted(glob.glob(os.path.join(run_dir, SNAPSHOT_GLOB)), key=snapshot_nimg)


def _fakes_nimg(name: str) -> int:
    m = _FAKES.match(name)
    return int(m.group(1)) * 1000 + int(m.group(2) or 0) if m else -1


def _retire_same_kimg(run_dir: str, keep: Optional[str] = None) -> None:
    """Of the snapshots (and fakes grids) within one whole kimg, keep only the newest (and `keep`)."""
    snapshots = [(snapshot_nimg(p), p) for p in list_snapshots(run_dir)]
    fakes = [(_fakes_nimg(n), os.path.join(run_dir, n)) for n in os.listdir(run_dir) if _fakes_nimg(n) >= 0]
    for group in (snapshots, fakes):
        newest: dict[int, int] = {}
        for nimg, _ in group:
            newest[nimg // 1000] = max(newest.get(nimg // 1000, -1), nimg)
        for nimg, path in group:
            if nimg < newest[nimg // 1000] and path != keep:
                os.remove(path)


class SnapshotKeeper:
    """Writes a run's snapshots and retires the ones the schedule supersedes (rank 0 only).

    A snapshot written on interruption (Ctrl-C, mid-tick) is not part of the schedule: after the resume
    it is removed just before the next snapshot is written. (Removing it first means a kill at that
    moment loses some work, never exactness: the resume then starts from the snapshot before.)"""

    def __init__(self, run_dir: str, interrupted_source: Optional[str] = None):
        self.run_dir = run_dir
        inside = interrupted_source is not None and \
            os.path.dirname(os.path.abspath(interrupted_source)) == os.path.abspath(run_dir)
        self.interrupted_source = interrupted_source if inside else None   # never a file of another run

    def write(self, path: str, data: dict, scheduled: bool) -> None:
        if self.interrupted_source and os.path.abspath(self.interrupted_source) != os.path.abspath(path) \
                and os.path.exists(self.interrupted_source):
            os.remove(self.interrupted_source)
        self.interrupted_source = None
        save_snapshot(path, data)
        if scheduled:
            _retire_same_kimg(self.run_dir)
        else:
            self.interrupted_source = path


def _rewrite_jsonl(path: str, keep) -> None:
    """Keep the complete, parseable records of a JSON-lines file for which keep(record) holds."""
    if not os.path.isfile(path):
        return
    with open(path, 'rb') as f:
        original = f.read()
    kept = []
    for line in original.split(b'\n'):
        try:
            record = safe_json.loads(line)
        except ValueError:   # the empty tail, a line a kill cut short, or one nested too deeply
            continue
        if isinstance(record, dict) and keep(record):
            kept.append(line)
    data = b''.join(line + b'\n' for line in kept)
    if data != original:
        atomic_write_bytes(path, data)


def _tick_of(record: dict) -> float:
    tick = record.get('Progress/tick')
    return tick.get('mean', float('inf')) if isinstance(tick, dict) else float('inf')


def tidy_run_dir(run_dir: str, resume: Optional[str], next_tick: int, cur_nimg: int) -> None:
    """Before a run continues (from `resume`, or from the start when None) in `run_dir`: remove
    temporary files of writes a kill interrupted, statistics and metric records written after the
    point the run continues from (they will be written again), and snapshots that the schedule
    would have retired had the run not stopped."""
    for pattern in ('.network-snapshot-*.tmp', '.fakes*.tmp', '.stats.jsonl.*.tmp', '.metric-*.tmp',
                    '.events.out.tfevents.*.tmp', '.best.json.*.tmp'):
        for path in glob.glob(os.path.join(run_dir, pattern)):
            os.remove(path)
    _rewrite_jsonl(os.path.join(run_dir, 'stats.jsonl'), lambda r: _tick_of(r) < next_tick)
    for path in glob.glob(os.path.join(run_dir, 'metric-*.jsonl')):
        _rewrite_jsonl(path, lambda r: 0 <= snapshot_nimg(str(r.get('snapshot_pkl'))) <= cur_nimg)
    trim_events(run_dir, cur_nimg)
    _retire_same_kimg(run_dir, keep=resume)
