"""What an inversion leaves on disk: images, latents, videos, tuned snapshots, stats. Every write is atomic."""
from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Optional, Sequence, Union

import numpy as np
import PIL.Image
import torch
from torch import nn

from networks.generate import save_image, to_uint8
from networks.snapshot import export_pt, save_snapshot, zipfile_like

PathLike = Union[str, os.PathLike]


def _atomic_bytes(path: PathLike, data: bytes) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def image_uint8(images: torch.Tensor) -> np.ndarray:
    """First image of an NCHW batch in [-1, 1] as [H, W, C] uint8."""
    return to_uint8(images[:1].detach().cpu())[0]


def side_by_side(*panels: np.ndarray, gap: int = 0) -> np.ndarray:
    """Panels [H, W, C] left to right (target | reconstruction)."""
    h, c = panels[0].shape[0], panels[0].shape[2]
    parts = []
    for i, p in enumerate(panels):
        if i and gap:
            parts.append(np.full([h, gap, c], 255, np.uint8))
        parts.append(p)
    return np.concatenate(parts, axis=1)


def save_png(array: np.ndarray, path: PathLike) -> None:
    save_image(array, path)


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
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _atomic_bytes(path, buffer.getvalue())


def load_latents(path: PathLike) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(ws [1, num_ws, w_dim], noise maps) from a latents file written by `save_latents`."""
    with np.load(path) as data:
        ws = torch.from_numpy(data['w'])
        noise = {k[len('noise/'):]: torch.from_numpy(data[k]) for k in data.files if k.startswith('noise/')}
    return ws, noise


def apply_noise(G: nn.Module, noise: dict[str, torch.Tensor]) -> None:
    """Copy optimised noise maps (as `load_latents` returns them) into G's noise_const buffers."""
    buffers = dict(G.synthesis.named_buffers())
    missing = sorted(set(noise) - set(buffers))
    if missing:
        raise KeyError(f'the generator has no noise buffers {missing[:3]}')
    with torch.no_grad():
        for name, value in noise.items():
            buffers[name].copy_(value)


def write_video(path: PathLike, frames: Sequence[np.ndarray], fps: int = 10, min_size: int = 256) -> None:
    """MP4 of [H, W, C] uint8 frames, upscaled (nearest) so tiny generators stay visible."""
    import imageio.v2 as imageio   # imported here: only --video needs it
    frames = [f if f.shape[2] == 3 else np.repeat(f, 3, axis=2) for f in frames]
    h, w = frames[0].shape[:2]
    scale = max(1, int(np.ceil(min_size / h)))
    # H.264 wants dimensions divisible by 16 (imageio's macro block); pad rather than let it rescale.
    out_h, out_w = -(-h * scale // 16) * 16, -(-w * scale // 16) * 16
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.mp4')
    os.close(fd)
    try:
        writer = imageio.get_writer(tmp, fps=fps, codec='libx264', quality=8, macro_block_size=16)
        for f in frames:
            big = np.asarray(PIL.Image.fromarray(f).resize((w * scale, h * scale), PIL.Image.NEAREST))
            canvas = np.full([out_h, out_w, 3], 255, np.uint8)
            canvas[:big.shape[0], :big.shape[1]] = big
            writer.append_data(canvas)
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def append_jsonl(path: PathLike, record: dict) -> None:
    with open(path, 'a') as f:
        f.write(json.dumps(record) + '\n')
