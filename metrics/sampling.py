"""Random inputs for the generator, reproducible per global batch.

NVIDIA's metrics draw latents from the global RNG of each process, so their numbers change with the
process count and from run to run. Here the latents, labels and noise of global batch b come from a
seed derived from (seed, stream, b): the same generated set whatever the number of processes, and the
same metric value on a rerun. As in NVIDIA's code, z is standard normal, labels are those of random
training images, truncation is 1 and the noise mode is G's default ('random').
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from . import MetricError
from .options import MetricContext

_STREAMS = {'features': 1, 'ppl': 2, 'equivariance': 3, 'separability': 4}


def derived_seed(seed: int, stream: str, index: int) -> int:
    state = np.random.SeedSequence([int(seed), _STREAMS[stream], int(index)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def dataset_labels(opts: MetricContext, c_dim: int) -> Optional[np.ndarray]:
    """Every label of the dataset as an [N, c_dim] array (None for an unconditional G)."""
    if c_dim == 0:
        return None
    dataset = opts.with_dataset(use_labels=True).open_dataset()
    if dataset.label_dim != c_dim:
        raise MetricError(f'{dataset.path}: the generator is conditional with {c_dim} classes but the dataset has '
                          f'{dataset.label_dim} label dimensions (labels come from dataset.json)')
    return np.stack([dataset.get_label(i) for i in range(len(dataset))]).astype(np.float32)


class LatentSource:
    """z, c (and a seeded torch.Generator for anything else random) for global batch `index`."""

    def __init__(self, opts: MetricContext, G: torch.nn.Module, stream: str):
        self.opts = opts
        self.stream = stream
        self.z_dim = int(G.z_dim)
        self.c_dim = int(G.c_dim)
        self.labels = dataset_labels(opts, self.c_dim)

    def draw(self, index: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        seed = derived_seed(self.opts.seed, self.stream, index)
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn([n, self.z_dim], generator=gen)
        if self.labels is None:
            c = torch.zeros([n, 0])
        else:
            rows = np.random.default_rng(seed).integers(len(self.labels), size=n)
            c = torch.from_numpy(self.labels[rows])
        # Noise layers in 'random' mode draw from the global RNG; seed it too (metrics run inside fork_rng).
        torch.manual_seed(seed)
        return z.to(self.opts.device), c.to(self.opts.device), gen


def to_rgb_uint8(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 [N, 3, H, W], the detectors' input."""
    img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img.repeat([1, 3, 1, 1]) if img.shape[1] == 1 else img


def rounds(num_batches: int, num_gpus: int, rank: int):
    """(global batch index, real) per round; idle ranks of the last round redo batch 0 and report 0 rows."""
    for start in range(0, num_batches, num_gpus):
        index = start + rank
        yield (index, True) if index < num_batches else (index % num_batches, False)


_MAPPING_KEYS = ('truncation_psi', 'truncation_cutoff')


def mapping_kwargs(G_kwargs: dict) -> dict:
    """The part of G(z, c, **G_kwargs) that goes to G.mapping."""
    return {k: v for k, v in G_kwargs.items() if k in _MAPPING_KEYS}


def synthesis_kwargs(G_kwargs: dict) -> dict:
    """The part of G(z, c, **G_kwargs) that goes to G.synthesis."""
    return {k: v for k, v in G_kwargs.items() if k not in _MAPPING_KEYS}
