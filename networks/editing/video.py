"""Interpolation videos through keyframe latents (seeds or inverted latents), written as MP4 with imageio.

Like NVIDIA's gen_video.py, the path loops by default (the last keyframe leads back to the first) and has
`frames_per_key` frames per keyframe, so K keyframes give K * frames_per_key frames; without looping it
stops on the last keyframe: (K - 1) * frames_per_key + 1 frames. 'cubic' is a C2 spline through the
keyframes in ws (periodic when looping, natural otherwise); 'linear' is piecewise linear. Every frame
passes through its keyframe exactly at frame k * frames_per_key.
"""
from __future__ import annotations

import os
import tempfile
from typing import Iterable, Union

import numpy as np
import PIL.Image
import scipy.interpolate
import torch
from tqdm import tqdm

from networks.generate import synthesize

KINDS = ('linear', 'cubic')


def interpolate(keys: torch.Tensor, frames_per_key: int, kind: str = 'cubic', loop: bool = True) -> torch.Tensor:
    """[F, ...] latents along the path through keys [K, ...] (see the module docstring for F)."""
    if kind not in KINDS:
        raise ValueError(f'unknown interpolation {kind!r} (choose from {", ".join(KINDS)})')
    if frames_per_key < 1:
        raise ValueError('frames per keyframe must be at least 1')
    k = len(keys)
    if k < 2:
        raise ValueError('an interpolation video needs at least two keyframes (seeds or latents)')
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


class VideoWriter:
    """MP4 writer for [H, W, C] uint8 frames: nearest-neighbour upscaling to at least `min_size` pixels (so tiny
    generators stay visible) and padding to multiples of 16 for H.264. Written to a temp file, renamed on close."""

    def __init__(self, path: Union[str, os.PathLike], fps: float = 30, min_size: int = 256, bitrate: str = '8M'):
        import imageio.v2 as imageio     # only videos need ffmpeg
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(self.path) + '.', suffix='.mp4')
        os.close(fd)
        self.min_size = min_size
        self.count = 0
        self.writer = imageio.get_writer(self.tmp, fps=fps, codec='libx264', bitrate=bitrate, macro_block_size=16)

    def append(self, frame: np.ndarray) -> None:
        if frame.shape[2] == 1:
            frame = np.repeat(frame, 3, axis=2)
        h, w = frame.shape[:2]
        scale = max(1, -(-self.min_size // min(h, w)))
        if scale > 1:
            frame = np.asarray(PIL.Image.fromarray(frame).resize((w * scale, h * scale), PIL.Image.NEAREST))
        h, w = frame.shape[:2]
        canvas = np.full([-(-h // 16) * 16, -(-w // 16) * 16, 3], 255, dtype=np.uint8)
        canvas[:h, :w] = frame
        self.writer.append_data(canvas)
        self.count += 1

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_frames(path: Union[str, os.PathLike], frames: Iterable[np.ndarray], fps: float = 30, min_size: int = 256) -> int:
    """Write frames to an MP4 atomically; returns how many were written."""
    with VideoWriter(path, fps=fps, min_size=min_size) as writer:
        for frame in frames:
            writer.append(frame)
        return writer.count


def render_interpolation(G: torch.nn.Module, keys: torch.Tensor, path: Union[str, os.PathLike], frames_per_key: int = 60,
                         kind: str = 'cubic', loop: bool = True, fps: float = 30, noise_mode: str = 'const',
                         batch_size: int = 8, min_size: int = 256) -> int:
    """Render the interpolation through keys [K, num_ws, w_dim] to an MP4; returns the number of frames.
    With noise_mode='random' every frame uses the same noise (seed 0) so the video does not flicker."""
    path_ws = interpolate(keys, frames_per_key, kind, loop)

    def frames():
        for s in tqdm(range(0, len(path_ws), batch_size), desc='rendering video', unit='batch'):
            chunk = path_ws[s:s + batch_size]
            yield from synthesize(G, chunk, noise_mode=noise_mode, batch_size=batch_size, noise_seeds=[0] * len(chunk))
    return write_frames(path, frames(), fps=fps, min_size=min_size)
