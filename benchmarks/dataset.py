#!/usr/bin/env python3
"""Training-set read speed: images/s of ImageFolderDataset at 256x256 on the CPU.

Builds the synthetic garment set (PNG compression 0 = NVIDIA's stored PNGs, and 1 = our default) in a temporary
folder, or reads --data, then times plain indexing and DataLoaders with 0..N workers, in shuffled order as the
training loop reads. One JSON line per measurement, then a table.

  python benchmarks/dataset.py                       # 512 synthetic images, 256x256
  python benchmarks/dataset.py --data=garments-256.zip --workers=0,2,4
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import click
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.convert import convert  # noqa: E402
from data.dataset import ImageFolderDataset  # noqa: E402


def time_indexing(ds, count: int, seed: int) -> float:
    order = np.random.RandomState(seed).randint(len(ds), size=count)
    ds[int(order[0])]   # open the zip outside the timing
    start = time.perf_counter()
    for i in order:
        ds[int(i)]
    return count / (time.perf_counter() - start)


def time_loader(ds, count: int, workers: int, batch: int, seed: int) -> tuple[float, float]:
    """(images/s once running, seconds to the first batch)."""
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=count + batch,
                                             generator=torch.Generator().manual_seed(seed))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=4 if workers else None)
    start = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - start
    start, seen = time.perf_counter(), 0
    for images, _ in it:
        seen += images.shape[0]
    return seen / (time.perf_counter() - start), first


@click.command()
@click.option('--data', help='Dataset zip or folder to read (default: build synthetic sets)')
@click.option('--res', type=int, default=256, show_default=True, help='Resolution of the synthetic sets')
@click.option('--n', 'num', type=int, default=512, show_default=True, help='Images in the synthetic sets')
@click.option('--count', type=int, default=1024, show_default=True, help='Images read per measurement')
@click.option('--workers', default='0,1,2', show_default=True, help='DataLoader worker counts (comma list)')
@click.option('--batch', type=int, default=32, show_default=True)
@click.option('--mirror', is_flag=True, help='Read with xflip=True')
def main(data, res, num, count, workers, batch, mirror):
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        if data:
            sets[os.path.basename(data)] = data
        else:
            source = f'synthetic:garments?n={num}&resolution={res}'
            for level in (0, 1):   # the second set re-encodes the first rather than rendering again
                path = os.path.join(tmp, f'garments-{res}-png{level}.zip')
                convert(source, path, compress_level=level, progress=False)
                source = path
                sets[f'synthetic png level {level} ({os.path.getsize(path) / 2**20:.0f} MiB)'] = path
        for name, path in sets.items():
            ds = ImageFolderDataset(path, xflip=mirror)
            measurements = [('indexing', None, time_indexing(ds, count, 0), 0.0)]
            for w in [int(x) for x in workers.split(',')]:
                speed, first = time_loader(ds, count, w, batch, 0)
                measurements.append(('DataLoader', w, speed, first))
            for how, w, speed, first in measurements:
                row = dict(dataset=name, resolution=ds.resolution, how=how, workers=w, images_per_s=round(speed, 1),
                           first_batch_s=round(first, 3), cpu_count=os.cpu_count())
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(f'\n{"dataset":40s} {"how":12s} {"workers":>7s} {"images/s":>9s} {"1st batch":>9s}')
    for r in rows:
        w = '-' if r['workers'] is None else str(r['workers'])
        print(f'{r["dataset"]:40s} {r["how"]:12s} {w:>7s} {r["images_per_s"]:9.0f} {r["first_batch_s"]:8.2f}s')


if __name__ == '__main__':
    main()
