"""Images and videos on disk: uint8 conversion, PNGs, grids, side-by-side panels and MP4 frames.

Every writer is atomic (torch_utils.atomic): a crash leaves the previous file or none, never half of one.
"""
from __future__ import annotations

import math
import os
from typing import Iterable, Optional, Sequence, Union

import imageio.v2 as imageio
import numpy as np
import PIL.Image
import torch

from .atomic import atomic_output

PathLike = Union[str, os.PathLike]


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> [N, H, W, C] uint8."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def image_uint8(images: torch.Tensor) -> np.ndarray:
    """First image of an NCHW batch in [-1, 1] as [H, W, C] uint8 (converted on the CPU)."""
    return to_uint8(images[:1].detach().cpu())[0]


def save_image(array: np.ndarray, path: PathLike) -> None:
    """Write an [H, W, C] uint8 array as PNG (atomically: a crash never leaves half an image)."""
    image = PIL.Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array, 'L' if array.shape[2] == 1 else 'RGB')
    with atomic_output(path) as tmp:   # no fsync: a crash must not leave half an image, power loss may
        image.save(tmp, format='PNG')


def image_grid(images: Sequence[np.ndarray], cols: Optional[int] = None) -> np.ndarray:
    """Tile [H, W, C] images into one image, `cols` per row (default: as square as possible)."""
    n = len(images)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w, c = images[0].shape
    grid = np.full([rows * h, cols * w, c], 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = im
    return grid


def side_by_side(*panels: np.ndarray, gap: int = 0) -> np.ndarray:
    """Panels [H, W, C] left to right (target | reconstruction)."""
    h, c = panels[0].shape[0], panels[0].shape[2]
    parts = []
    for i, p in enumerate(panels):
        if i and gap:
            parts.append(np.full([h, gap, c], 255, np.uint8))
        parts.append(p)
    return np.concatenate(parts, axis=1)


def video_frame(frame: np.ndarray, min_size: int) -> np.ndarray:
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


MAX_FPS = 1000   # frames per second a video may ask for (ffmpeg dumps its own command line for 1e308)


def write_frames(path: PathLike, frames: Iterable[np.ndarray], fps: float = 30, min_size: int = 256,
                 bitrate: str = '8M') -> int:
    """Write [H, W, C] uint8 frames to an MP4 atomically; returns how many were written."""
    count = 0
    with atomic_output(path, suffix='.mp4') as tmp:
        writer = imageio.get_writer(tmp, fps=fps, codec='libx264', bitrate=bitrate, macro_block_size=16)
        try:
            for frame in frames:
                writer.append_data(video_frame(frame, min_size))
                count += 1
        finally:
            writer.close()
    return count
