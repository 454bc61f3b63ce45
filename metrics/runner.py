"""Evaluating snapshots from the command line: which ones, in how many processes, and the summary table.

`--network` may be one snapshot (our or NVIDIA's .pkl, a .pt export, an http(s) URL) or a run directory,
in which case every `network-snapshot-*.pkl` is evaluated in training order. Results go to the run's
`metric-<name>.jsonl` (a snapshot file counts as part of a run when its folder holds
`training_options.json`, NVIDIA's rule), and (snapshot, metric) pairs already recorded there are skipped
unless `force`. Everything that can fail for a bad argument (network, dataset, detector) is checked in
the launching process, before any worker starts.
"""
from __future__ import annotations

import glob
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch

from data import DatasetError
from data.convert import ensure_dataset, synthetic_spec_of
from data.dataset import ImageFolderDataset
from networks.snapshot import SNAPSHOT_GLOB, find_latest_snapshot, load_generator, load_snapshot, snapshot_nimg
from torch_utils import distributed
from torch_utils.download import is_url
from torch_utils.jsonl import append_jsonl, read_jsonl
from torch_utils.safe_pickle import one_line

from . import DetectorError, MetricError
from .api import calc_metric, report_metric, resolve_data
from .detectors import locate_detector
from .registry import better, get_metric, offline_hint


@dataclass
class EvalJob:
    metrics: list[str]
    network: str
    data: Union[str, dict, None] = None
    mirror: Optional[bool] = None
    gpus: int = 1
    detector_dir: Optional[str] = None
    force: bool = False
    seed: int = 0
    verbose: bool = True
    # Filled in by `prepare`:
    run_dir: Optional[str] = None
    snapshots: list[str] = field(default_factory=list)
    todo: list[tuple[str, str]] = field(default_factory=list)   # (snapshot, metric)
    results_file: Optional[str] = None


def find_snapshots(network: str) -> tuple[Optional[str], list[str]]:
    """(run dir or None, snapshots in training order) for a file, URL, run directory, or a folder of runs
    (its newest run with a snapshot, as gen_images.py --network=runs takes the newest snapshot there)."""
    if is_url(network):
        return None, [network]
    if os.path.isdir(network):
        network = os.path.normpath(network)
        found = sorted(glob.glob(os.path.join(network, SNAPSHOT_GLOB)), key=snapshot_nimg)
        newest = None if found else find_latest_snapshot(network)
        if newest is not None:
            network = os.path.dirname(newest)
            found = sorted(glob.glob(os.path.join(network, SNAPSHOT_GLOB)), key=snapshot_nimg)
        if not found:
            raise MetricError(f'{network}: directory holds no {SNAPSHOT_GLOB}, nor runs that do (pass a run '
                              f'directory, a folder of runs or a snapshot)')
        return network, found
    if not os.path.isfile(network):
        raise MetricError(f'{network}: no such network file')
    folder = os.path.dirname(os.path.abspath(network))
    return (folder if os.path.isfile(os.path.join(folder, 'training_options.json')) else None), [network]


def read_records(run_dir: Optional[str], metric: str) -> list[dict]:
    """The records of `metric-<metric>.jsonl` in a run dir (unreadable lines are skipped)."""
    if run_dir is None:
        return []
    return [r for r in read_jsonl(os.path.join(run_dir, f'metric-{metric}.jsonl')) if isinstance(r.get('results'), dict)]


def snapshot_label(snapshot: str) -> str:
    return os.path.basename(snapshot.rstrip('/'))


def prepare(job: EvalJob) -> EvalJob:
    """Validate the arguments (one-line errors), find the snapshots, the dataset and what is left to do."""
    for metric in job.metrics:
        if get_metric(metric) is None:
            raise MetricError(f'unknown metric {metric!r}; valid: {", ".join(_examples())}')
    job.run_dir, job.snapshots = find_snapshots(job.network)
    done = {(r.get('snapshot_pkl'), m) for m in job.metrics for r in read_records(job.run_dir, m)}
    job.todo = [(s, m) for s in job.snapshots for m in job.metrics
                if job.force or (snapshot_label(s), m) not in done]
    if not job.todo:
        return job

    data = load_snapshot(job.todo[0][0])
    G = data.get('G_ema')
    if G is None:
        raise MetricError(f'{job.todo[0][0]}: snapshot has no G_ema')
    families = {get_metric(m).family for _, m in job.todo}
    if 'eq' in families and getattr(getattr(G.synthesis, 'input', None), 'transform', None) is None:
        raise MetricError(f'{job.todo[0][0]}: equivariance metrics need a StyleGAN3 generator '
                          f'(G.synthesis.input.transform); this one is {type(G).__module__}.{type(G).__name__}')
    needs_data = bool(families & {'fid', 'kid', 'pr', 'ls'}) or G.c_dim > 0
    if job.data is None:   # the snapshot's own dataset, where a metric needs one
        job.data = snapshot_dataset(data, job.todo[0][0]) if needs_data else None
        if needs_data and job.data is None:
            raise MetricError(f'{job.todo[0][0]}: the snapshot does not name its dataset; pass --data')
        origin = "the snapshot's training options"
    else:
        origin = '--data'
    if needs_data:
        _check_dataset(job, G, origin)
    for name in sorted({d for _, m in job.todo for d in get_metric(m).detectors}):
        try:
            locate_detector(name, job.detector_dir, download=True, progress=job.verbose)
        except DetectorError as e:
            raise DetectorError(f'{e}; {offline_hint()}') from None
    return job


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# What a snapshot's training_set_kwargs may say about its dataset (ours and NVIDIA's); the rest (NVIDIA's
# class_name, our class_names) is not needed to read it.
_DATASET_KWARGS = dict(path=lambda v: isinstance(v, str) and v != '', resolution=lambda v: v is None or _integer(v),
                       use_labels=lambda v: isinstance(v, bool), xflip=lambda v: isinstance(v, bool),
                       max_size=lambda v: v is None or _integer(v), random_seed=_integer,
                       shuffle=lambda v: isinstance(v, bool))


def snapshot_dataset(data: dict, origin: str) -> Optional[dict]:
    """The dataset options a snapshot records (None when it records none), checked: they come from the file."""
    kwargs = data.get('training_set_kwargs')
    if kwargs is None:
        return None

    if not isinstance(kwargs, dict) or 'path' not in kwargs:
        raise MetricError(f'{origin}: its training_set_kwargs name no dataset path; pass --data')
    for key, ok in _DATASET_KWARGS.items():
        if key in kwargs and not ok(kwargs[key]):
            raise MetricError(one_line(f'{origin}: its training_set_kwargs hold {key}={kwargs[key]!r:.80}, which '
                                       f'no dataset takes; pass --data'))
    return {key: kwargs[key] for key in _DATASET_KWARGS if key in kwargs}


def _check_dataset(job: EvalJob, G: torch.nn.Module, origin: str) -> None:
    spec = job.data['path'] if isinstance(job.data, dict) else str(job.data)
    if isinstance(job.data, dict) and not os.path.exists(spec):
        synthetic = synthetic_spec_of(spec)   # the synthetic garments are drawn again, into the cache
        if synthetic is None:
            raise MetricError(f'dataset {spec} (from {origin}) not found; pass --data')
        job.data = dict(job.data, path=ensure_dataset(synthetic))
        spec = job.data['path']
    try:
        resolved = resolve_data(job.data, G.img_resolution)     # builds synthetic: specs once, here
        if isinstance(job.data, str):
            job.data = resolved['path']
        dataset = ImageFolderDataset(resolved['path'], resolution=G.img_resolution, use_labels=G.c_dim > 0)
    except DatasetError as e:
        raise MetricError(str(e)) from None
    if G.c_dim and dataset.label_dim != G.c_dim:
        raise MetricError(f'{spec} (from {origin}): its labels have {dataset.label_dim} dimensions, the generator '
                          f'takes {G.c_dim}; pass --data with the dataset it was trained on')


def _examples() -> list[str]:
    return ['fid_garments10k_full (offline: its detector ships in pretrained/)', 'fid50k_full', 'fid10k_full',
            'kid50k_full', 'pr50k3_full', 'ppl2_wend', 'eqt50k_int', 'eqt50k_frac', 'eqr50k', 'fid50k', 'kid50k', 'pr50k3', 'is50k', 'ls (any count: fid2k_full, kid500_full, ...)']


def worker(rank: int, job: EvalJob, init_file: str) -> None:
    """One process: evaluate every pending (snapshot, metric) pair; rank 0 records the results."""
    distributed.init(rank, job.gpus, init_file)
    try:
        device = distributed.device_for(rank)
        current, G = None, None
        for snapshot, metric in job.todo:
            if snapshot != current:
                G = load_generator(snapshot, device)
                current = snapshot
            result = calc_metric(metric, G, data=job.data, mirror=job.mirror, num_gpus=job.gpus, rank=rank,
                                 device=device, progress=job.verbose, detector_dir=job.detector_dir, seed=job.seed)
            if rank == 0:
                record = report_metric(result, run_dir=job.run_dir, snapshot_pkl=snapshot_label(snapshot))
                append_jsonl(job.results_file, record, allow_nan=True)
                if job.verbose:
                    values = ', '.join(f'{k} {v:.5g}' for k, v in result['results'].items())
                    print(f'{snapshot_label(snapshot)}  {values}  ({result["total_time_str"]})', flush=True)
        if job.gpus > 1:
            distributed.end_spawned_rank()
    finally:
        distributed.shutdown()


def run(job: EvalJob) -> list[dict]:
    """Evaluate what `prepare` left to do; returns the new records."""
    if not job.todo:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        job.results_file = os.path.join(tmp, 'results.jsonl')
        if job.gpus == 1:
            worker(0, job, '')
        else:
            try:
                torch.multiprocessing.spawn(worker, args=(job, os.path.join(tmp, 'init')), nprocs=job.gpus)
            except torch.multiprocessing.ProcessRaisedException as e:
                lines = [line for line in str(e).strip().splitlines() if line.strip()]
                last = lines[-1] if lines else 'a worker process failed'
                raise MetricError(re.sub(r'^[\w.]+(Error|Exception): ', '', last)) from None
        return list(read_jsonl(job.results_file))


def collect(job: EvalJob, new_records: list[dict]) -> dict[str, dict[str, float]]:
    """{snapshot label: {result key: value}} over this run's snapshots: recorded results, newest last."""
    table: dict[str, dict[str, float]] = {snapshot_label(s): {} for s in job.snapshots}
    records = [r for m in job.metrics for r in read_records(job.run_dir, m)] if job.run_dir else []
    seen = {json.dumps(r, sort_keys=True) for r in records}
    records += [r for r in new_records if json.dumps(r, sort_keys=True) not in seen]
    for record in sorted(records, key=lambda r: r.get('timestamp', 0)):
        if record.get('metric') in job.metrics and record.get('snapshot_pkl') in table:
            table[record['snapshot_pkl']].update(record['results'])
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    """Snapshots as rows, result keys as columns; with several snapshots, '*' marks each column's best."""
    keys = sorted({k for row in table.values() for k in row})
    if not keys:
        return '(no results)'
    best = {}
    if len(table) > 1:
        for key in keys:
            direction = better(key)
            values = [row[key] for row in table.values() if key in row and row[key] == row[key]]
            if direction and values:
                best[key] = min(values) if direction == 'min' else max(values)
    name_w = max(len('snapshot'), *(len(s) for s in table))
    widths = [max(len(k), 12) for k in keys]
    lines = ['  '.join([f'{"snapshot":<{name_w}}'] + [f'{k:>{w}}' for k, w in zip(keys, widths)])]
    for snapshot, row in table.items():
        cells = []
        for key, w in zip(keys, widths):
            if key not in row:
                cells.append(f'{"-":>{w}}')
            else:
                mark = '*' if key in best and row[key] == best[key] else ' '
                cells.append(f'{row[key]:>{w - 1}.5g}{mark}')
        lines.append('  '.join([f'{snapshot:<{name_w}}'] + cells))
    if best:
        lines.append('* best per column (lowest FID/KID/PPL/LS, highest precision/recall/IS/EQ)')
    return '\n'.join(lines)
