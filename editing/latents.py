"""What to render: latents from seeds (mapped as gen_images.py does, with a class for conditional networks:
generation.images.check_class) or from latents files written by invert.py, in the order given.

A latents file is an .npz (read through torch_utils.safe_npz, shapes checked from the headers) holding `ws`
[N, num_ws, w_dim] or `w` ([N, num_ws, w_dim], [N, w_dim] or [w_dim]; a single w is repeated over the rows),
or only `w_single`. invert.py also stores optimised StyleGAN2 noise maps as `noise/<buffer name>`; they are
returned so that the caller can put them into the generator, without which the reconstruction would not
be reproduced.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Union

import numpy as np
import torch

from generation.images import Sources
from generation.seeds import seeds_to_ws
from torch_utils.safe_npz import MAX_ARRAY_BYTES, NpzArchive

from . import EditingError, read_npz

@dataclasses.dataclass
class Latents:
    ws: torch.Tensor                  # [N, num_ws, w_dim] float32
    labels: list[str]                 # 'seed0003', 'shirt' (file stem), 'shirt[2]' for files with several
    noise_seeds: list[int]            # per-latent seed for noise_mode='random'
    noise: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def load_ws_file(path: Union[str, os.PathLike], num_ws: int, w_dim: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(ws [N, num_ws, w_dim] float32, noise maps) from a latents .npz; EditingError naming the file otherwise.
    Shapes are checked from the arrays' headers, and the size of the repeated result before repeating."""
    path = os.fspath(path)

    def read(f: NpzArchive) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        key = next((k for k in ('ws', 'w', 'w_single') if k in f), None)
        if key is None:
            raise EditingError(f'no latents in it (expected a "ws" or "w" array; found {", ".join(f.files) or "nothing"})')
        w = f.array(key, 'f', shapes=[(None, num_ws, w_dim), (None, w_dim), (w_dim,)]).astype(np.float32)
        if w.ndim < 3 and len(w.reshape(-1, w_dim)) * num_ws * w_dim * 4 > MAX_ARRAY_BYTES:
            raise EditingError(f'"{key}" holds {len(w.reshape(-1, w_dim))} latents, more than '
                               f'{MAX_ARRAY_BYTES >> 20} MiB once repeated over the {num_ws} ws rows')
        if not np.all(np.isfinite(w)):
            raise EditingError(f'"{key}" contains NaN or infinite values')
        noise = {}
        for k in (k for k in f.files if k.startswith('noise/')):
            noise[k[len('noise/'):]] = value = torch.from_numpy(f.array(k, 'f').astype(np.float32))
            if not bool(torch.isfinite(value).all()):
                raise EditingError(f'"{k}" contains NaN or infinite values')
        return w, noise
    w, noise = read_npz(path, 'latents', read)
    w = w.reshape(-1, w_dim) if w.ndim < 3 else w
    if w.ndim == 2:
        w = np.repeat(w[:, None], num_ws, axis=1)
    return torch.from_numpy(w), noise


def resolve_sources(G: torch.nn.Module, items: Sources, truncation_psi: float = 1,
                    class_idx: Optional[int] = None) -> Latents:
    """Map seeds and load files, in the order given."""
    device = next(G.parameters()).device
    parts, labels, noise_seeds, noise = [], [], [], {}
    for item in items:
        if isinstance(item, int):
            parts.append(seeds_to_ws(G, [item], truncation_psi, class_idx, device=device).float().cpu())
            labels.append(f'seed{item:04d}')
            noise_seeds.append(item)
            continue
        ws, file_noise = load_ws_file(item, G.num_ws, G.w_dim)
        stem = os.path.splitext(os.path.basename(item))[0]
        parts.append(ws)
        labels.extend([stem] if len(ws) == 1 else [f'{stem}[{i}]' for i in range(len(ws))])
        noise_seeds.extend([0] * len(ws))
        if file_noise:
            if noise and any(not torch.equal(noise.get(k, v), v) for k, v in file_noise.items()):
                raise EditingError(f'{item}: its noise maps differ from another latents file\'s; edit them one at a time')
            noise.update(file_noise)
    return Latents(torch.cat(parts), labels, noise_seeds, noise)


def apply_noise_maps(G: torch.nn.Module, noise: dict[str, torch.Tensor]) -> None:
    """Copy noise maps (names relative to G.synthesis) into G's constant noise buffers."""
    if not noise:
        return
    buffers = dict(G.synthesis.named_buffers())
    missing = sorted(set(noise) - set(buffers))
    if missing:
        raise EditingError(f'the latents file has noise maps the network lacks ({", ".join(missing[:3])})')
    with torch.no_grad():
        for name, value in noise.items():
            if buffers[name].shape != value.shape:
                raise EditingError(f'noise map {name} has shape {list(value.shape)}, the network {list(buffers[name].shape)}')
            buffers[name].copy_(value)


def keyframes(seeds: Sources, grid: tuple[int, int], num_keyframes: Optional[int]) -> list[Union[int, str]]:
    """The keyframe list of a video grid: every cell gets `num_keyframes` consecutive entries; without it
    the seeds must split evenly over the cells; with it they are repeated cyclically as far as needed."""
    cells = grid[0] * grid[1]
    items = list(seeds)
    if not items:
        raise EditingError('--seeds is required (e.g. --seeds=0-7), or --ws=FILE.npz')
    if num_keyframes is None:
        if len(items) % cells:
            raise EditingError(f'{len(items)} seeds do not split evenly over a {grid[0]}x{grid[1]} grid: '
                               f'give a multiple of {cells} or --num-keyframes')
        return items
    return [items[i % len(items)] for i in range(num_keyframes * cells)]
