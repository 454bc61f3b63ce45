"""What a metric run knows: the generator, the dataset, the process layout, where detectors live."""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import torch
from tqdm import tqdm

from data.dataset import ImageFolderDataset

from . import MetricError
from .detectors import load_detector

_DATASET_ARGS = set(inspect.signature(ImageFolderDataset.__init__).parameters) - {'self'}


def clean_dataset_kwargs(kwargs: dict) -> dict:
    """ImageFolderDataset arguments from a snapshot's `training_set_kwargs` (NVIDIA's carry `class_name`)."""
    return {k: v for k, v in kwargs.items() if k in _DATASET_ARGS}


@dataclass
class MetricContext:
    G: Optional[torch.nn.Module]
    dataset_kwargs: dict = field(default_factory=dict)
    G_kwargs: dict = field(default_factory=dict)
    num_gpus: int = 1
    rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device('cpu'))
    cache: bool = True
    progress: bool = True
    detector_dir: Optional[str] = None
    seed: int = 0
    num_workers: int = 0
    batch_gen: Optional[int] = None   # images per generator call; default 4 on GPUs (NVIDIA's), whole batches on CPU

    def __post_init__(self):
        if not 0 <= self.rank < self.num_gpus:
            raise ValueError(f'rank {self.rank} is outside 0..{self.num_gpus - 1}')
        self.device = torch.device(self.device)
        self.dataset_kwargs = clean_dataset_kwargs(dict(self.dataset_kwargs))
        self.G_kwargs = dict(self.G_kwargs)
        if self.batch_gen is None:
            self.batch_gen = 4 if self.device.type == 'cuda' else 64

    def with_dataset(self, **overrides: Any) -> 'MetricContext':
        """A copy whose dataset options are updated (each metric fixes max_size and xflip as NVIDIA's do)."""
        return replace(self, dataset_kwargs={**self.dataset_kwargs, **overrides})

    def open_dataset(self) -> ImageFolderDataset:
        if not self.dataset_kwargs.get('path'):
            raise MetricError('this metric needs a dataset; pass --data (or data= to calc_metric)')
        return ImageFolderDataset(**self.dataset_kwargs)

    def detector(self, name: str) -> tuple[torch.nn.Module, str]:
        return load_detector(name, self.device, detector_dir=self.detector_dir, rank=self.rank,
                             num_gpus=self.num_gpus, progress=self.progress and self.rank == 0)

    def generator_copy(self) -> torch.nn.Module:
        """A private copy of G in eval mode: metrics move its input transform and noise buffers."""
        return copy.deepcopy(self.G).eval().requires_grad_(False).to(self.device)

    def bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, unit='img', leave=False, dynamic_ncols=True,
                    disable=not (self.progress and self.rank == 0))
