"""How to write it: the files each editing job leaves, rendered from latents (latents.py) as edited
(edits.py); images of plain seeds are generation.images'. Every writer takes parsed values, writes atomically and returns the paths it wrote.

Style-mixing grids are laid out as NVIDIA's figure: top-left blank, first row the column latents' own
images, first column the row latents' own images, cell (r, c) the mix.

Interpolation videos, like NVIDIA's gen_video.py, loop by default (the last keyframe leads back to the
first) and have `frames_per_key` frames per keyframe, so K keyframes give K * frames_per_key frames; without
looping they stop on the last keyframe: (K - 1) * frames_per_key + 1 frames. 'cubic' is a C2 spline through
the keyframes in ws (periodic when looping, natural otherwise); 'linear' is piecewise linear. Every frame
passes through its keyframe exactly at frame k * frames_per_key.
"""
from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from generation.images import with_grid
from generation.seeds import synthesize
from torch_utils.atomic import atomic_write_json
from torch_utils.media import image_grid, save_image, write_frames

from . import EditingError
from .directions import Directions
from .edits import Edit, edit_rows, mix_ws, parse_layers, strip_ws
from .latents import Latents

KINDS = ('linear', 'cubic')


def write_images(G: torch.nn.Module, latents: Latents, outdir: str, suffix: str = '', noise_mode: str = 'const',
                 batch_size: int = 8, grid: bool = False) -> list[str]:
    """One PNG per latent, `<label><suffix>.png`, and optionally grid<suffix>.png."""
    images = synthesize(G, latents.ws, noise_mode=noise_mode, batch_size=batch_size, noise_seeds=latents.noise_seeds)
    paths = []
    for label, image in zip(latents.labels, images):
        paths.append(os.path.join(outdir, f'{label}{suffix}.png'))
        save_image(image, paths[-1])
    return with_grid(list(images), paths, outdir, suffix) if grid and len(images) else paths


def write_edit_strip(G: torch.nn.Module, latents: Latents, directions: Directions, edits: Sequence[Edit],
                     strengths: Sequence[float], outdir: str, noise_mode: str = 'const', batch_size: int = 8) -> list[str]:
    """edit-strip.png: a row per (latent, direction), a column per strength; also one strip per latent and
    edit-strip.json naming the rows and columns."""
    names, lays = [e.name for e in edits], [e.layers for e in edits]
    for name in names:
        directions.index(name)
    grid_ws = strip_ws(latents.ws, directions, names, strengths, G, lays)
    n_rows, n_cols = grid_ws.shape[:2]
    noise_seeds = [s for s in latents.noise_seeds for _ in names for _ in strengths]
    images = synthesize(G, grid_ws.reshape(-1, *grid_ws.shape[2:]), noise_mode=noise_mode, batch_size=batch_size,
                        noise_seeds=noise_seeds)
    paths = [os.path.join(outdir, 'edit-strip.png')]
    save_image(image_grid(list(images), cols=n_cols), paths[0])
    per = len(names) * n_cols
    for i, label in enumerate(latents.labels):
        paths.append(os.path.join(outdir, f'{label}-strip.png'))
        save_image(image_grid(list(images[i * per:(i + 1) * per]), cols=n_cols), paths[-1])
    rows = [dict(latent=label, direction=name, layers=list(map(int, edit_rows(directions, Edit(name, 1.0, lay), G))))
            for label in latents.labels for name, lay in zip(names, lays)]
    atomic_write_json(os.path.join(outdir, 'edit-strip.json'), dict(strengths=list(strengths), rows=rows))
    return paths


def mixing_grid(G: torch.nn.Module, row_ws: torch.Tensor, col_ws: torch.Tensor, rows: Sequence[int],
                noise_mode: str = 'const', batch_size: int = 8) -> np.ndarray:
    """[(R+1)*H, (C+1)*W, C] uint8 style-mixing figure (see the module docstring)."""
    mixed = mix_ws(row_ws, col_ws, rows)
    n_rows, n_cols = mixed.shape[:2]
    cells = synthesize(G, mixed.reshape(-1, *mixed.shape[2:]), noise_mode=noise_mode, batch_size=batch_size)
    row_imgs = synthesize(G, row_ws, noise_mode=noise_mode, batch_size=batch_size)
    col_imgs = synthesize(G, col_ws, noise_mode=noise_mode, batch_size=batch_size)
    h, w, c = cells.shape[1:]
    canvas = np.full([(n_rows + 1) * h, (n_cols + 1) * w, c], 255, dtype=np.uint8)
    for j in range(n_cols):
        canvas[:h, (j + 1) * w:(j + 2) * w] = col_imgs[j]
    for i in range(n_rows):
        canvas[(i + 1) * h:(i + 2) * h, :w] = row_imgs[i]
        for j in range(n_cols):
            canvas[(i + 1) * h:(i + 2) * h, (j + 1) * w:(j + 2) * w] = cells[i * n_cols + j]
    return canvas


def write_mixing(G: torch.nn.Module, rows: Latents, cols: Latents, styles: str, outdir: str,
                 noise_mode: str = 'const', batch_size: int = 8) -> list[str]:
    """mix-grid.png (rows keep everything but `styles`, which come from the columns) and mix-grid.json."""
    mixed_rows = parse_layers(G, styles)
    grid = mixing_grid(G, rows.ws, cols.ws, mixed_rows, noise_mode=noise_mode, batch_size=batch_size)
    paths = [os.path.join(outdir, 'mix-grid.png'), os.path.join(outdir, 'mix-grid.json')]
    save_image(grid, paths[0])
    atomic_write_json(paths[1], dict(rows=rows.labels, cols=cols.labels, styles=styles, ws_rows_from_columns=mixed_rows,
                               num_ws=int(G.num_ws)))
    return paths


def interpolate(keys: torch.Tensor, frames_per_key: int, kind: str = 'cubic', loop: bool = True) -> torch.Tensor:
    """[F, ...] latents along the path through keys [K, ...] (see the module docstring for F)."""
    if kind not in KINDS:
        raise EditingError(f'unknown interpolation {kind!r} (choose from {", ".join(KINDS)})')
    if frames_per_key < 1:
        raise EditingError('frames per keyframe must be at least 1')
    k = len(keys)
    if k < 2:
        raise EditingError('an interpolation video needs at least two keyframes (seeds or latents)')
    values = keys.double().cpu().numpy()
    knots = np.arange(k + 1 if loop else k, dtype=np.float64)
    if loop:
        values = np.concatenate([values, values[:1]])
    num_frames = k * frames_per_key if loop else (k - 1) * frames_per_key + 1
    t = np.arange(num_frames) / frames_per_key
    import scipy.interpolate   # here, not on top: 0.32 s of import (torch's: 0.75 s) only videos pay
    if kind == 'linear' or len(knots) < 3:
        frames = scipy.interpolate.interp1d(knots, values, axis=0, kind='linear')(t)
    else:
        frames = scipy.interpolate.CubicSpline(knots, values, axis=0, bc_type='periodic' if loop else 'natural')(t)
    return torch.from_numpy(frames).to(keys.dtype)


def render_interpolation(G: torch.nn.Module, keys: torch.Tensor, path: Union[str, os.PathLike], frames_per_key: int = 60,
                         kind: str = 'cubic', loop: bool = True, fps: float = 30, noise_mode: str = 'const',
                         batch_size: int = 8, min_size: int = 256, grid: tuple[int, int] = (1, 1)) -> int:
    """Render the interpolation through keys [K, num_ws, w_dim] to an MP4; returns the number of frames.

    With `grid=(cols, rows)` the video is a grid of cols * rows interpolations: the keys are split into
    that many consecutive runs of K / (cols * rows) keyframes, the first run in the top-left cell, filling
    row by row. With noise_mode='random' every frame uses the same noise (seed 0) so the video does not
    flicker."""
    cols, rows = grid
    cells = cols * rows
    if cells < 1 or len(keys) % cells:
        raise EditingError(f'{len(keys)} keyframes do not split evenly into a {cols}x{rows} grid')
    per_cell = len(keys) // cells
    paths = torch.stack([interpolate(keys[i * per_cell:(i + 1) * per_cell], frames_per_key, kind, loop)
                         for i in range(cells)], dim=1)          # [F, cells, num_ws, w_dim]
    flat = paths.reshape(-1, *paths.shape[2:])
    step = max(1, batch_size // cells) * cells                    # whole frames per forward batch

    def frames():
        for s in tqdm(range(0, len(flat), step), desc='rendering video', unit='batch'):
            chunk = flat[s:s + step]
            images = synthesize(G, chunk, noise_mode=noise_mode, batch_size=batch_size, noise_seeds=[0] * len(chunk))
            for f in range(0, len(images), cells):
                yield images[f] if cells == 1 else image_grid(list(images[f:f + cells]), cols=cols)
    return write_frames(path, frames(), fps=fps, min_size=min_size)
