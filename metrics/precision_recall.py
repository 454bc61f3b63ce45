"""Improved precision and recall (Kynkäänniemi et al. 2019), as NVIDIA computes them.

Each set of VGG16 features spans a "manifold": the union of balls around its points, each ball's
radius being the distance to the point's k-th nearest neighbour within the set (the point itself not
counted). Precision is the fraction of generated samples inside the real manifold; recall the fraction
of real samples inside the generated one. Features and distances are rounded to float16 as in NVIDIA's
code, so that ties fall the same way; the arithmetic itself is float32.

Distances are computed in blocks of `row_batch` x `col_batch`, keeping only running k-smallest values
and running "inside" flags, so memory does not grow with the dataset. Row blocks are shared out over
the processes.
"""
from __future__ import annotations

from typing import Optional

import torch

from torch_utils.distributed import gather_rounds

from .options import MetricContext
from .sampling import rounds
from .stats import dataset_features, generator_features

FEATURES = dict(return_features=True)


def _distances(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return torch.cdist(rows.unsqueeze(0), cols.unsqueeze(0))[0].half().float()


def _per_row(fn, rows: torch.Tensor, row_batch: int, num_gpus: int, rank: int) -> torch.Tensor:
    """fn(block) for every row block, blocks shared out over ranks, gathered in order on every rank."""
    num_blocks = (rows.shape[0] - 1) // row_batch + 1
    out = []
    for index, real in rounds(num_blocks, num_gpus, rank):
        block = rows[index * row_batch:(index + 1) * row_batch]
        value = fn(block).float().unsqueeze(1)
        out += gather_rounds(value, value.shape[0] if real else 0, row_batch)
    return torch.cat(out)[:, 0]


def knn_radii(manifold: torch.Tensor, k: int, row_batch: int = 10000, col_batch: int = 10000,
              num_gpus: int = 1, rank: int = 0) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    if manifold.shape[0] <= k:
        raise ValueError(f'precision/recall with k={k} needs more than {k} samples per set, got {manifold.shape[0]}')

    def radii(block):
        best = None
        for cols in manifold.split(col_batch):
            d = _distances(block, cols)
            best = d if best is None else torch.cat([best, d], dim=1)
            best = best.topk(min(k + 1, best.shape[1]), dim=1, largest=False).values
        return best[:, k]    # column 0 is the point itself
    return _per_row(radii, manifold, row_batch, num_gpus, rank)


def inside_manifold(manifold: torch.Tensor, radii: torch.Tensor, probes: torch.Tensor, row_batch: int = 10000,
                    col_batch: int = 10000, num_gpus: int = 1, rank: int = 0) -> torch.Tensor:
    """For each probe: is it within the radius of at least one manifold point?"""
    def inside(block):
        hit = torch.zeros(block.shape[0], dtype=torch.bool, device=block.device)
        for cols, r in zip(manifold.split(col_batch), radii.split(col_batch)):
            hit |= (_distances(block, cols) <= r.unsqueeze(0)).any(dim=1)
        return hit
    return _per_row(inside, probes, row_batch, num_gpus, rank) > 0.5


def precision_recall(real: torch.Tensor, gen: torch.Tensor, k: int = 3, row_batch: int = 10000,
                     col_batch: int = 10000, num_gpus: int = 1, rank: int = 0) -> tuple[float, float]:
    real = real.half().float()
    gen = gen.half().float()
    kw = dict(row_batch=row_batch, col_batch=col_batch, num_gpus=num_gpus, rank=rank)
    results = []
    for manifold, probes in ((real, gen), (gen, real)):
        radii = knn_radii(manifold, k, **kw)
        results.append(float(inside_manifold(manifold, radii, probes, **kw).float().mean()))
    return results[0], results[1]


def run_pr(opts: MetricContext, max_real: Optional[int], num_gen: int, nhood_size: int,
               row_batch: int = 10000, col_batch: int = 10000) -> tuple[float, float]:
    real = dataset_features(opts, 'vgg16', FEATURES, max_items=max_real, capture_all=True)
    gen = generator_features(opts, 'vgg16', FEATURES, num_items=num_gen, capture_all=True)
    real_t = torch.from_numpy(real.features()).to(opts.device)
    gen_t = torch.from_numpy(gen.features()).to(opts.device)
    return precision_recall(real_t, gen_t, nhood_size, row_batch, col_batch, opts.num_gpus, opts.rank)
