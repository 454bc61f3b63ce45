"""Inception Score (Salimans et al. 2016), as NVIDIA computes it.

The detector's 1008-way softmax (without the output bias, as in the original TensorFlow code) on
`num_gen` generated images, split into `num_splits` equal parts; per part exp(E_x KL(p(y|x) || p(y))).
Reports the mean and standard deviation over the parts.
"""
from __future__ import annotations

import numpy as np

from . import MetricError
from .options import MetricContext
from .stats import generator_features

PROBABILITIES = dict(no_output_bias=True)


def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1, atol=1e-3):
        raise MetricError('the Inception detector did not return probabilities (rows must be softmax outputs)')
    n = probs.shape[0]
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits:(i + 1) * n // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide='ignore', invalid='ignore'):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def run_is(opts: MetricContext, num_gen: int, num_splits: int) -> tuple[float, float]:
    gen = generator_features(opts, 'inception', PROBABILITIES, num_items=num_gen, capture_all=True)
    if opts.rank != 0:
        return float('nan'), float('nan')
    return inception_score(gen.features(), num_splits)
