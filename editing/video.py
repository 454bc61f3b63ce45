"""Interpolation videos through keyframe latents (seeds or inverted latents), written as MP4 with imageio.

Like NVIDIA's gen_video.py, the path loops by default (the last keyframe leads back to the first) and has
`frames_per_key` frames per keyframe, so K keyframes give K * frames_per_key frames; without looping it
stops on the last keyframe: (K - 1) * frames_per_key + 1 frames. 'cubic' is a C2 spline through the
keyframes in ws (periodic when looping, natural otherwise); 'linear' is piecewise linear. Every frame
passes through its keyframe exactly at frame k * frames_per_key.
"""
from __future__ import annotations

import os
from typing import Iterable, Union

import numpy as np
import PIL.Image
import scipy.interpolate
import torch
from tqdm import tqdm

from networks.generate import image_grid, synthesize
from torch_utils.atomic import atomic_output

from .errors import EditingError

KINDS = ('linear', 'cubic')


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
    if kind == 'linear' or len(knots) < 3:
        frames = scipy.interpolate.interp1d(knots, values, axis=0, kind='linear')(t)
    else:
        frames = scipy.interpolate.CubicSpline(knots, values, axis=0, bc_type='periodic' if loop else 'natural')(t)
    return torch.from_numpy(frames).to(keys.dtype)


def _video_frame(frame: np.ndarray, min_size: int) -> np.ndarray:
    """RGB, upscaled (nearest) to at least `min_size` pixels so tiny generators stay visible, and padded
    with white to multiples of 16, which H.264 needs (imageio would otherwise rescale)."""
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    h, w = frame.shape[:2]
    scale = max(1, -(-min_size // min(h, w)))
    if scale > 1:
        frame = np.asarray(PIL.Image.fromarray(frame).resize((w * scale, h * scale), PIL.Image.NEAREST))
    h, w = frame.shape[:2]
    canvas = np.full([-(-h // 16) * 16, -(-w // 16) * 16, 3], 255, dtype=np.uint8)
    canvas[:h, :w] = frame
    return canvas


def write_frames(path: Union[str, os.PathLike], frames: Iterable[np.ndarray], fps: float = 30, min_size: int = 256,
                 bitrate: str = '8M') -> int:
    """Write [H, W, C] uint8 frames to an MP4 atomically; returns how many were written."""
    import imageio.v2 as imageio     # only videos need ffmpeg
    count = 0
    with atomic_output(path, suffix='.mp4') as tmp:
        writer = imageio.get_writer(tmp, fps=fps, codec='libx264', bitrate=bitrate, macro_block_size=16)
        try:
            for frame in frames:
                writer.append_data(_video_frame(frame, min_size))
                count += 1
        finally:
            writer.close()
    return count


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
