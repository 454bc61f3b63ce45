"""What a training run shows and records: log.txt and the console, a progress bar and a summary line per
tick, the tick's statistics in stats.jsonl (NVIDIA's format) and as TensorBoard events, metric results,
and the reals/fakes image grids. Rank 0 writes; every rank takes part in collecting a tick's statistics.
"""
from __future__ import annotations

import os
import time
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from torch_utils.jsonl import append_jsonl
from torch_utils.media import image_grid, save_image, to_uint8
from training.options import TrainingOptions
from training.resume import Counters
from training.stats import StatsCollector
from training.tensorboard import EventWriter, tick_scalars, viewer_note


class RunLog:
    """Prints and appends to log.txt (rank 0 only)."""

    def __init__(self, run_dir: str, enabled: bool):
        self.path = os.path.join(run_dir, 'log.txt')
        self.enabled = enabled

    def __call__(self, line: str) -> None:
        if not self.enabled:
            return
        tqdm.write(line)
        with open(self.path, 'a') as f:
            f.write(line + '\n')


class Reporter:
    """The log, and from `begin` on each tick's progress bar, line, stats.jsonl record and TensorBoard event."""

    def __init__(self, opts: TrainingOptions, device: torch.device, enabled: bool):
        self.opts, self.device, self.enabled = opts, device, enabled
        self.log = RunLog(opts.run_dir, enabled)
        self.events: Optional[EventWriter] = None
        self.bar: Optional[tqdm] = None
        self.tick_start_time = 0.0

    def begin(self, counters: Counters) -> None:
        """Start recording, after the run directory was tidied for a resume (which trims the events)."""
        if self.enabled:
            self.events = EventWriter(self.opts.run_dir)
            self.log(viewer_note(os.path.dirname(os.path.abspath(self.opts.run_dir))))
        self.begin_tick(counters)

    def begin_tick(self, counters: Counters) -> None:
        self.tick_start_time = time.time()
        if self.enabled:
            # A tick (and the run) ends at the first whole batch that reaches its image count.
            left = min(int(self.opts.tick * 1000), int(self.opts.kimg * 1000) - counters.cur_nimg)
            images = -(-max(left, 1) // self.opts.batch) * self.opts.batch if counters.cur_tick else self.opts.batch
            self.bar = tqdm(total=images, desc=f'tick {counters.cur_tick}', unit='img', leave=False,
                            dynamic_ncols=True)

    def step(self, images: int) -> None:
        if self.bar is not None:
            self.bar.update(images)

    def pause(self, counters: Counters) -> float:
        """Close the tick's bar; returns the seconds the tick has taken so far (before a resume too)."""
        if self.bar is not None:
            self.bar.close()
        return counters.tick_seconds + time.time() - self.tick_start_time

    def end_tick(self, stats: StatsCollector, counters: Counters, tick_seconds: float, augment_p: float) -> None:
        """Report the tick's progress and timing, collect its statistics over ranks (every rank must call
        this) and record them: a line in the log, a record in stats.jsonl, an event for TensorBoard."""
        counters.total_seconds += tick_seconds
        tick_kimg = (counters.cur_nimg - counters.tick_start_nimg) / 1000
        report = stats.report
        report('Progress/tick', counters.cur_tick)
        report('Progress/kimg', counters.cur_nimg / 1000)
        report('Progress/augment', augment_p)
        report('Timing/total_sec', counters.total_seconds)
        report('Timing/sec_per_tick', tick_seconds)
        report('Timing/sec_per_kimg', tick_seconds / max(tick_kimg, 1e-8))
        report('Resources/peak_gpu_mem_gb', torch.cuda.max_memory_allocated(self.device) / 2 ** 30
               if self.device.type == 'cuda' else 0)
        report('Resources/cpu_mem_gb', resident_memory_gb())
        tick_stats = stats.collect()
        self.log(tick_line(counters, tick_stats, self.opts.kimg))
        if self.enabled:
            append_jsonl(os.path.join(self.opts.run_dir, 'stats.jsonl'), {**tick_stats, 'timestamp': time.time()},
                         durable=True, allow_nan=True)
            self.events.scalars(counters.cur_nimg, tick_scalars(tick_stats))

    def metrics(self, cur_nimg: int, results: dict[str, dict[str, float]]) -> None:
        """The results of a snapshot's metrics: {metric: {result key: value}}."""
        for metric, values in results.items():
            self.log(f'{metric}: {values}')
            if self.events is not None:
                self.events.scalars(cur_nimg, {f'Metrics/{k}': v for k, v in values.items()})


def tick_line(counters: Counters, s: dict, total_kimg: float) -> str:
    def mean(name):
        return s[name]['mean'] if name in s else float('nan')
    sec_per_kimg = mean('Timing/sec_per_kimg')
    eta = max(total_kimg - counters.cur_nimg / 1000, 0) * sec_per_kimg
    return (f'tick {counters.cur_tick:<5d} kimg {counters.cur_nimg / 1000:<8.3f} '
            f'sec/kimg {sec_per_kimg:<7.2f} eta {format_seconds(eta):<10s} '
            f'G {mean("Loss/G/loss"):+.3f} D {mean("Loss/D/loss"):+.3f} '
            f'real {mean("Loss/scores/real"):+.3f} fake {mean("Loss/scores/fake"):+.3f} '
            f'augment {mean("Progress/augment"):.3f}')


def format_seconds(s: float) -> str:
    s = int(s)
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m {s % 60:02d}s'
    return f'{s // 3600}h {s // 60 % 60:02d}m'


def resident_memory_gb() -> float:
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 30
    except (OSError, ValueError):
        return 0.0


class SnapshotGrid:
    """Fixed reals and latents for the reals.png / fakesNNNNNN.png grids."""

    def __init__(self, dataset, G_ema, seed: int, device: torch.device, max_side: int = 16):
        res = dataset.resolution
        self.cols = int(np.clip(7680 // res, 7, max_side))
        self.rows = int(np.clip(4320 // res, 4, max_side))
        n = min(self.cols * self.rows, len(dataset))
        idx = np.random.RandomState(seed).permutation(len(dataset))[:n]
        self.dataset, self.idx = dataset, idx
        self.G_ema, self.device = G_ema, device
        gen = torch.Generator().manual_seed(seed)
        self.z = torch.randn([n, G_ema.z_dim], generator=gen)
        self.c = torch.from_numpy(np.stack([dataset.get_label(int(i)) for i in idx])).to(torch.float32) \
            if dataset.label_dim else torch.zeros([n, 0])

    def save_reals(self, path: str) -> None:
        images = [self.dataset[int(i)][0].transpose(1, 2, 0) for i in self.idx]
        save_image(image_grid(images, self.cols), path)

    @torch.no_grad()
    def save_fakes(self, path: str, batch: int = 32) -> None:
        images = []
        for z, c in zip(self.z.split(batch), self.c.split(batch)):
            images.extend(to_uint8(self.G_ema(z.to(self.device), c.to(self.device), noise_mode='const')))
        save_image(image_grid(images, self.cols), path)
