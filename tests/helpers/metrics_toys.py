"""Toy generators and image folders for the metric tests (each with the generator interface the metrics use)."""
from __future__ import annotations

import json
import math
import os
from typing import Optional

import numpy as np
import PIL.Image
import torch


def write_image_folder(path: str, images: np.ndarray, labels: Optional[list[int]] = None) -> str:
    """Save uint8 [N, H, W, C] images as PNGs (with dataset.json class labels if given)."""
    os.makedirs(path, exist_ok=True)
    names = []
    for i, image in enumerate(images):
        name = f'img{i:04d}.png'
        PIL.Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(os.path.join(path, name))
        names.append(name)
    if labels is not None:
        with open(os.path.join(path, 'dataset.json'), 'w') as f:
            json.dump({'labels': [[n, int(c)] for n, c in zip(names, labels)]}, f)
    return path


def random_images(n: int, res: int = 16, channels: int = 3, seed: int = 0, low: int = 0, high: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, size=(n, res, res, channels), dtype=np.uint8)


def block_features(images: np.ndarray, grid: int = 4) -> np.ndarray:
    """What the stand-in Inception returns for uint8 [N, H, W, C] images: block means on a grid, C-major."""
    n, h, w, c = images.shape
    x = images.astype(np.float64).transpose(0, 3, 1, 2)
    if c == 1:
        x = np.repeat(x, 3, axis=1)
    return x.reshape(n, 3, grid, h // grid, grid, w // grid).mean(axis=(3, 5)).reshape(n, -1)


class _Mapping(torch.nn.Module):
    def __init__(self, num_ws: int, fn):
        super().__init__()
        self.num_ws = num_ws
        self.fn = fn

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        return self.fn(z).unsqueeze(1).repeat([1, self.num_ws, 1])


class ReplayGenerator(torch.nn.Module):
    """Returns the given uint8 images, in order, whatever z is: the 'generated' set is known exactly."""

    def __init__(self, images: np.ndarray):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = 4, 0, 4, 1
        self.img_resolution, self.img_channels = images.shape[1], images.shape[3]
        # (u - 127.5) / 127.5 maps back to exactly u through the metrics' x * 127.5 + 128 and truncation.
        self.register_buffer('images', (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127.5) / 127.5)
        self.next = 0

    def forward(self, z, c, truncation_psi=1, noise_mode='random', **kwargs):
        idx = (torch.arange(z.shape[0]) + self.next) % self.images.shape[0]
        self.next += z.shape[0]
        return self.images[idx]


class LinearGenerator(torch.nn.Module):
    """w = z; image = reshape(A w) with orthonormal columns A, so |image(w1) - image(w0)|^2 = |w1 - w0|^2."""

    def __init__(self, z_dim: int = 64, res: int = 16, channels: int = 3, seed: int = 0):
        super().__init__()
        self.z_dim = self.w_dim = z_dim
        self.c_dim, self.num_ws = 0, 2
        self.img_resolution, self.img_channels = res, channels
        a = torch.randn([channels * res * res, z_dim], generator=torch.Generator().manual_seed(seed))
        self.mapping = _Mapping(self.num_ws, lambda z: z)
        self.synthesis = _LinearSynthesis(torch.linalg.qr(a).Q.T.contiguous(), (channels, res, res))

    def forward(self, z, c, truncation_psi=1, noise_mode='random', **kwargs):
        return self.synthesis(self.mapping(z, c), noise_mode=noise_mode)


class _LinearSynthesis(torch.nn.Module):
    def __init__(self, basis: torch.Tensor, shape: tuple):
        super().__init__()
        self.shape = shape
        self.register_buffer('basis', basis)

    def forward(self, ws, noise_mode='random', force_fp32=False, update_emas=False):
        return (ws[:, 0] @ self.basis).reshape(ws.shape[0], *self.shape)


class FourierInput(torch.nn.Module):
    """Sinusoids sampled at pixel centres in image-width units, through the 3x3 `transform` as StyleGAN3's
    input: the feature at output position p is evaluated at transform @ p."""

    def __init__(self, channels: int, max_freq: float, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        angle = torch.rand([channels], generator=gen) * 2 * math.pi
        radius = torch.rand([channels], generator=gen) * max_freq
        self.register_buffer('freqs', torch.stack([angle.cos(), angle.sin()], dim=1) * radius[:, None])
        self.register_buffer('phases', torch.rand([channels], generator=gen))
        self.register_buffer('transform', torch.eye(3))

    def forward(self, res: int) -> torch.Tensor:
        coords = (torch.arange(res, dtype=torch.float32) + 0.5) / res - 0.5
        y, x = torch.meshgrid(coords, coords, indexing='ij')
        p = torch.stack([x, y, torch.ones_like(x)], dim=-1) @ self.transform.T      # [H, W, 3]
        arg = p[..., :2] @ self.freqs.T + self.phases                              # [H, W, C]
        return torch.sin(2 * math.pi * arg).permute(2, 0, 1)


class FourierGenerator(torch.nn.Module):
    """A synthesis that is a per-pixel linear function of band-limited Fourier features of the (transformed)
    input: translating the input translates the image exactly. `pixel_pattern` adds a fixed image that
    does not move, which breaks equivariance."""

    def __init__(self, res: int = 32, channels: int = 16, z_dim: int = 8, max_freq: Optional[float] = None,
                 pixel_pattern: float = 0.0, seed: int = 0):
        super().__init__()
        self.z_dim = self.w_dim = z_dim
        self.c_dim, self.num_ws = 0, 1
        self.img_resolution, self.img_channels = res, 3
        self.mapping = _Mapping(1, lambda z: z)
        self.synthesis = _FourierSynthesis(res, channels, z_dim, max_freq or res / 8, pixel_pattern, seed)

    def forward(self, z, c, truncation_psi=1, noise_mode='random', **kwargs):
        return self.synthesis(self.mapping(z, c), noise_mode=noise_mode)


class _FourierSynthesis(torch.nn.Module):
    def __init__(self, res, channels, z_dim, max_freq, pixel_pattern, seed):
        super().__init__()
        gen = torch.Generator().manual_seed(seed + 1)
        self.res = res
        self.input = FourierInput(channels, max_freq, seed)
        self.register_buffer('mix', torch.randn([z_dim, 3, channels], generator=gen) / channels ** 0.5)
        self.register_buffer('pattern', torch.randn([3, res, res], generator=gen) * pixel_pattern)

    def forward(self, ws, noise_mode='random', force_fp32=False, update_emas=False):
        feats = self.input(self.res)                                     # [C, H, W]
        weights = torch.einsum('nz,zkc->nkc', ws[:, 0], self.mix)         # [N, 3, C]
        return torch.einsum('nkc,chw->nkhw', weights, feats) * 0.3 + self.pattern
