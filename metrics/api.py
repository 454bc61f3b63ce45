"""The entry points used by train.py and calc_metrics.py: compute one metric, record it as NVIDIA does, and
the metrics of a training run's snapshots (`TrainingMetrics`, which train.py hands the training loop).

Result dicts and `metric-<name>.jsonl` lines have NVIDIA's layout:
`{"results": {"fid50k_full": 12.3}, "metric": "fid50k_full", "total_time": 81.2, "total_time_str": "1m 21s",
"num_gpus": 1, "snapshot_pkl": "network-snapshot-000432.pkl", "timestamp": 1700000000.0}`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional, Union

import torch

from data.convert import ensure_dataset
from torch_utils.distributed import broadcast_float, world_size
from torch_utils.cli import UserError
from torch_utils.devices import device_from_option
from torch_utils.jsonl import append_jsonl
from training.options import TrainingOptions

from . import DetectorError, MetricError
from .best import best_line, update_best
from .detectors import locate_detector
from .options import MetricContext
from .registry import get_metric, is_valid_metric, offline_hint


def format_time(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 86400:
        return f'{s // 3600}h {s // 60 % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {s // 3600 % 24:02d}h {s // 60 % 60:02d}m'


def resolve_data(data: Union[str, dict, None], resolution: Optional[int] = None) -> Optional[dict]:
    """Dataset options from a path, a `synthetic:` spec or a `training_set_kwargs` dict."""
    if data is None:
        return None
    if isinstance(data, dict):
        return dict(data)
    return dict(path=ensure_dataset(str(data), resolution))   # synthetic:/idx/CIFAR specs built once; folders as is


def calc_metric(metric: str, G: torch.nn.Module, data: Union[str, dict, None] = None, mirror: Optional[bool] = None,
                num_gpus: int = 1, rank: int = 0, device: Union[str, torch.device, None] = None, cache: bool = True,
                progress: bool = True, detector_dir: Optional[str] = None, seed: int = 0,
                G_kwargs: Optional[dict] = None, num_workers: Optional[int] = None) -> dict:
    """Compute `metric` for generator G against the dataset `data` (path, spec or dataset kwargs).

    With several processes (torch.distributed initialised) every rank calls this with its own `rank`;
    all get the same result. `mirror` sets the dataset's xflip for the metrics that honour it (the
    `_full` ones never mirror, as NVIDIA's). The global RNG state is left as it was."""
    spec = get_metric(metric)
    if spec is None:
        raise MetricError(f'unknown metric {metric!r} (see calc_metrics.py --help)')
    device = device_from_option(device, option='device')
    dataset_kwargs = resolve_data(data, G.img_resolution) or {}
    dataset_kwargs.update(resolution=G.img_resolution, use_labels=G.c_dim != 0)
    if mirror is not None:
        dataset_kwargs['xflip'] = bool(mirror)
    if num_workers is None:
        num_workers = 3 if device.type == 'cuda' else 0
    opts = MetricContext(G=G, dataset_kwargs=dataset_kwargs, G_kwargs=G_kwargs or {}, num_gpus=num_gpus, rank=rank,
                         device=device, cache=cache, progress=progress, detector_dir=detector_dir, seed=seed,
                         num_workers=num_workers)

    start = time.time()
    cuda_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == 'cuda' else []
    with torch.random.fork_rng(devices=cuda_ids):
        results = spec(opts)
    results = {key: broadcast_float(value, device) for key, value in results.items()}
    total = time.time() - start
    return dict(results=results, metric=metric, total_time=total, total_time_str=format_time(total),
                num_gpus=num_gpus)


def report_metric(result: dict, run_dir: Optional[str] = None, snapshot_pkl: Optional[str] = None) -> dict:
    """The JSON-lines record of a result, appended to `<run_dir>/metric-<name>.jsonl` when run_dir exists."""
    if run_dir is not None and snapshot_pkl is not None and os.path.isabs(snapshot_pkl):
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    record = dict(result, snapshot_pkl=snapshot_pkl, timestamp=time.time())
    if run_dir is not None and os.path.isdir(run_dir):
        append_jsonl(os.path.join(run_dir, f'metric-{result["metric"]}.jsonl'), record, durable=True, allow_nan=True)
        update_best(run_dir)
    return record


@dataclass
class TrainingMetrics:
    """The metrics a training run computes for each scheduled snapshot (train.py --metrics). train.py hands
    this to the training loop, which does not import metrics. Every rank computes its share of a metric;
    rank 0 records the results in the run directory (metric-<name>.jsonl, best.json)."""
    metrics: list[str]
    data: str
    mirror: bool
    detector_dir: Optional[str]
    run_dir: str
    rank: int
    device: torch.device

    @classmethod
    def for_run(cls, opts: TrainingOptions, rank: int, device: torch.device) -> Optional[TrainingMetrics]:
        """None for a run without metrics."""
        if not opts.metrics:
            return None
        return cls(list(opts.metrics), opts.data, opts.mirror, opts.detector_dir, opts.run_dir, rank, device)

    @staticmethod
    def check(opts: TrainingOptions) -> None:
        """Before a run starts: its metrics exist and their feature networks are found (or downloaded) now,
        not after the first hours of training; else one line saying what to pass."""
        if not opts.metrics:
            return
        bad = [m for m in opts.metrics if not is_valid_metric(m)]
        if bad:
            raise UserError(f'--metrics: unknown metric(s) {", ".join(bad)} (see calc_metrics.py --help)')
        for name in sorted({d for m in opts.metrics for d in get_metric(m).detectors}):
            try:
                locate_detector(name, opts.detector_dir)
            except DetectorError as e:
                raise UserError(f'--metrics={",".join(opts.metrics)}: {e}; {offline_hint()}, or train with '
                                f'--metrics=none') from None

    def evaluate(self, G_ema: torch.nn.Module, snapshot_path: str) -> dict[str, dict[str, float]]:
        """{metric: {result key: value}} of the snapshot about to be written at `snapshot_path`."""
        results = {}
        for metric in self.metrics:
            result = calc_metric(metric, G=G_ema, data=self.data, mirror=self.mirror, num_gpus=world_size(),
                                 rank=self.rank, device=self.device, detector_dir=self.detector_dir)
            if self.rank == 0:
                report_metric(result, run_dir=self.run_dir, snapshot_pkl=os.path.basename(snapshot_path))
            results[metric] = result['results']
        return results

    def written(self, snapshot_path: str) -> Optional[str]:
        """Rank best.json's snapshots again once the new snapshot is on disk (its metrics were recorded before
        it was written, and only snapshots that exist can be best); the best as a log line."""
        update_best(self.run_dir)
        return best_line(self.run_dir)
