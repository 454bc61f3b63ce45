"""Kernel Inception Distance (Bińkowski et al. 2018), as NVIDIA computes it.

The unbiased squared MMD with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 on Inception pool
features, averaged over `num_subsets` random subsets of m = min(#real, #generated, max_subset_size)
samples from each side.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .options import MetricContext
from .stats import dataset_features, generator_features

FEATURES = dict(return_features=True)


def kernel_distance(real: np.ndarray, gen: np.ndarray, num_subsets: int = 100, max_subset_size: int = 1000,
                    rng: Optional[np.random.RandomState] = None) -> float:
    rng = rng if rng is not None else np.random.RandomState(0)
    dim = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    if m < 2:
        raise ValueError('KID needs at least two real and two generated samples')
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)].astype(np.float64)
        y = real[rng.choice(real.shape[0], m, replace=False)].astype(np.float64)
        within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
        across = (x @ y.T / dim + 1) ** 3
        # Off-diagonal means of k(x, x') + k(y, y') minus twice the mean of k(x, y), times m.
        total += (within.sum() - np.trace(within)) / (m - 1) - across.sum() * 2 / m
    return float(total / num_subsets / m)


def run_kid(opts: MetricContext, max_real: Optional[int], num_gen: int, num_subsets: int,
                max_subset_size: int) -> float:
    real = dataset_features(opts, 'inception', FEATURES, max_items=max_real, capture_all=True)
    gen = generator_features(opts, 'inception', FEATURES, num_items=num_gen, capture_all=True)
    if opts.rank != 0:
        return float('nan')
    return kernel_distance(real.features(), gen.features(), num_subsets, max_subset_size,
                           np.random.RandomState(opts.seed))
