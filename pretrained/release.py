"""Turn a training snapshot into the files shipped in pretrained/: the generator, its directions, a grid.

- the generator (G_ema only) as a weights-only `.pt` (a few MB at these widths: fp32 is kept);
- one directions file holding the supervised `darkness` and `sleeve` directions (ridge regression in W on
  attributes measured from generated images), one direction per class (`class_<garment>`, class mean minus
  overall mean in W) and the top GANSpace components (`pc0`, ...); per-direction numbers of each part are
  kept as `stat/<name>` (NaN for directions of the other parts);
- a grid of samples, one row per class (cycling through the classes), at a given truncation.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from editing import discovery
from editing.directions import Directions, save_directions
from editing.labels import resolve_labeller
from networks.snapshot import export_pt, load_snapshot
from torch_utils.media import image_grid, save_image
from training.dataset import ImageFolderDataset
from training.synthetic_garments import CLASSES

from .quality import generate


def export_generator(snapshot: str, path: str) -> dict:
    """Write G_ema of `snapshot` (with its training_set_kwargs) to `path`; returns its size."""
    data = load_snapshot(snapshot)
    kwargs = dict(data.get('training_set_kwargs') or {})
    if kwargs.get('use_labels') and 'class_names' not in kwargs and kwargs.get('path') and os.path.exists(kwargs['path']):
        names = ImageFolderDataset(kwargs['path'], use_labels=True).class_names   # a snapshot older than the record
        if names:
            kwargs['class_names'] = names
    if kwargs.get('path'):   # the file is shipped: the dataset by name, not by its place on the training machine
        kwargs['path'] = os.path.basename(kwargs['path'])
    export_pt(dict(G_ema=data['G_ema'], training_set_kwargs=kwargs or None), path)
    return dict(path=path, megabytes=round(os.path.getsize(path) / 1e6, 2))


def merge_directions(parts: Sequence[Directions]) -> Directions:
    """One Directions set holding every direction of `parts` (names must be distinct)."""
    k_total = sum(len(p) for p in parts)
    stats: dict[str, np.ndarray] = {}
    offset = 0
    for p in parts:
        for key, value in p.stats.items():
            if value.ndim != 1:
                continue
            stats.setdefault(key, np.full([k_total], np.nan, dtype=np.float64))[offset:offset + len(p)] = value
        offset += len(p)
    return Directions(vectors=np.concatenate([p.vectors for p in parts]), names=[n for p in parts for n in p.names],
                      layer_start=np.concatenate([p.layer_start for p in parts]),
                      layer_stop=np.concatenate([p.layer_stop for p in parts]),
                      scale=np.concatenate([p.scale for p in parts]), method='combined', num_ws=parts[0].num_ws,
                      meta=dict(parts=[dict(method=p.method, names=p.names, **p.meta) for p in parts]), stats=stats)


def discover_directions(G: torch.nn.Module, path: str, samples: int = 2000, components: int = 8, seed: int = 0,
                        source: str = '') -> Directions:
    labeller, name = resolve_labeller('garments:darkness,sleeve')
    supervised = discovery.supervised(G, labeller, num_samples=samples, seed=seed, source=source, labeller_name=name)
    classes = discovery.class_directions(G, num_samples=samples, seed=seed, source=source,
                                         class_names=[f'class_{c}' for c in CLASSES[:G.c_dim]])
    pca = discovery.ganspace(G, num_samples=5 * samples, num_components=components, seed=seed, source=source)
    merged = merge_directions([supervised, classes, pca])
    save_directions(path, merged)
    return merged


def class_grid(G: torch.nn.Module, path: str, rows: int = 8, cols: int = 8, truncation_psi: float = 0.7,
               seed: int = 0) -> np.ndarray:
    """rows x cols samples; row r shows class r mod c_dim (seeds `seed`...), saved as one PNG."""
    labels = np.repeat(np.arange(rows) % max(G.c_dim, 1), cols)
    images = generate(G, labels, seed=seed, truncation_psi=truncation_psi)
    grid = image_grid(list(images), cols=cols)
    save_image(grid, path)
    return grid
