"""What an inversion leaves on disk besides images and videos (torch_utils.media): latents and tuned
snapshots. Every write is atomic."""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from networks.snapshot import export_pt, save_snapshot, zipfile_like
from torch_utils.atomic import atomic_write

PathLike = Union[str, os.PathLike]


def save_latents(path: PathLike, ws: torch.Tensor, space: str, noise: Optional[dict] = None, **extra) -> None:
    """`w`: [1, num_ws, w_dim] (the layout NVIDIA's generate.py --projected-w reads); for W results also
    `w_single` [1, w_dim]; optimised StyleGAN2 noise maps as `noise/<buffer name>`."""
    arrays = {'w': ws.detach().cpu().numpy().astype(np.float32), 'space': np.array(space)}
    if space == 'w':
        arrays['w_single'] = arrays['w'][:, 0]
    for name, buf in (noise or {}).items():
        arrays[f'noise/{name}'] = buf.detach().cpu().numpy().astype(np.float32)
    for key, value in extra.items():
        arrays[key] = np.asarray(value)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_tuned_snapshot(snapshot: dict, G_tuned: nn.Module, path: PathLike, source: str, **metadata) -> None:
    """The tuned generator as G and G_ema of a snapshot in the source's format (.pt stays .pt, pickles
    become our .pkl); D and the dataset options are kept, training state is not."""
    G_tuned = G_tuned.cpu().eval().requires_grad_(False)
    data = dict(G=G_tuned, G_ema=G_tuned, D=snapshot.get('D'), augment_pipe=snapshot.get('augment_pipe'),
                training_set_kwargs=snapshot.get('training_set_kwargs'))
    if str(path).endswith('.pt'):
        export_pt(data, path)
    else:
        data['inversion'] = dict(source=str(source), **metadata)
        save_snapshot(path, data)


def snapshot_suffix(source: str) -> str:
    """'.pt' for a .pt export source, '.pkl' otherwise."""
    try:
        return '.pt' if os.path.isfile(source) and zipfile_like(source) else '.pkl'
    except OSError:
        return '.pkl'
