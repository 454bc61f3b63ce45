"""Turn a training snapshot into the files shipped in pretrained/: the generator, its directions, a grid.

- the generator (G_ema only) as a weights-only `.pt` (a few MB at these widths: fp32 is kept);
- one directions file holding the named directions that pass their held-out check (`darkness`:
  found by the gradient of their garment measure, editing/discovery.garment_directions; checked on held-out
  seeds of every class, editing/check.py) and the top GANSpace components (`pc0`, ...), which claim no
  attribute; per-direction numbers of each part are kept as `stat/<name>` (NaN for the other part's);
- a grid of samples, one row per class (cycling through the classes), at a given truncation.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from data.dataset import ImageFolderDataset
from editing import discovery
from editing.check import PASS_FRACTION, check_tables
from editing.directions import Directions, merge_directions, save_directions
from networks.snapshot import export_pt, load_snapshot
from torch_utils.media import image_grid, save_image

from .quality import generate

# The attributes the shipped directions are named after (each shipped only if it passes its check). Not
# `sleeve` (fails: no direction in W lengthens sleeves without changing the class) nor `pattern` (its direction
# passes by the sign of the texture measure but changes so little that nobody sees it): pretrained/NOTES.md.
NAMED = ('darkness',)


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


def discover_directions(G: torch.nn.Module, path: str, samples: int = 2000, components: int = 8, seed: int = 0,
                        source: str = '', log=print) -> Directions:
    """The shipped directions: those of NAMED that pass their held-out check (editing/check.py; a failing one
    is left out, with its figures printed), then the top GANSpace components, which claim no attribute."""
    named = discovery.garment_directions(G, NAMED, num_samples=samples, seed=seed, source=source)
    for line in check_tables(named):
        log(line)
    passed = [n for n, worst in zip(named.names, named.stats['check_worst']) if worst >= PASS_FRACTION]
    for name in sorted(set(named.names) - set(passed)):
        log(f'{name}: fails its held-out check; not shipped')
    keep = [named.names.index(n) for n in passed]
    named = dataclasses.replace(named, vectors=named.vectors[keep], names=passed, layer_start=named.layer_start[keep],
                                layer_stop=named.layer_stop[keep], scale=named.scale[keep],
                                stats={k: v[keep] for k, v in named.stats.items()},
                                meta=dict(named.meta, checks={n: named.meta['checks'][n] for n in passed}))
    pca = discovery.ganspace(G, num_samples=5 * samples, num_components=components, seed=seed, source=source)
    merged = merge_directions([named, pca])
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
