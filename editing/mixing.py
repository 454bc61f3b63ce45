"""Style mixing: each grid cell takes all ws rows from its row latent except the chosen rows, which come
from its column latent ("structure from the row, fine style from the column" with rows=fine).

Grid layout as in NVIDIA's style-mixing figure: top-left blank, first row the column latents' own images,
first column the row latents' own images, cell (r, c) the mix.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from networks.generate import synthesize

from .errors import EditingError


def mix_ws(row_ws: torch.Tensor, col_ws: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """[R, C, num_ws, w_dim]: cell (r, c) = row_ws[r] with ws rows `rows` copied from col_ws[c]."""
    if row_ws.shape[1:] != col_ws.shape[1:]:
        raise EditingError(f'row and column latents differ in shape: {list(row_ws.shape[1:])} vs {list(col_ws.shape[1:])}')
    idx = torch.as_tensor(list(rows), dtype=torch.long)
    if len(idx) == 0 or idx.min() < 0 or idx.max() >= row_ws.shape[1]:
        raise EditingError(f'mixing rows must lie in 0-{row_ws.shape[1] - 1}')
    grid = row_ws[:, None].repeat(1, len(col_ws), 1, 1)
    grid[:, :, idx] = col_ws[None, :, idx].to(grid.dtype)
    return grid


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
