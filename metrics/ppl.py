"""Perceptual path length (StyleGAN paper, Karras et al. 2019), as NVIDIA computes it.

For a pair of latents (z0, z1) with one label c and a position t (t = 0 for 'end' sampling, uniform in
[0, 1] for 'full'), the images at t and t + epsilon along the path are compared with the LPIPS distance
of NVIDIA's VGG16; the sample is that squared distance divided by epsilon^2. The path is linear in W
('w' space) or spherical in Z ('z'). Images are generated with fixed (freshly randomised per batch)
noise, cropped to the centre for faces only (`crop`, off for clothing), averaged down to 256 px when
larger, and scaled to [0, 255]. PPL is the mean of the samples between the 1st and 99th percentiles.
"""
from __future__ import annotations

import numpy as np
import torch

from torch_utils.distributed import gather_rounds

from .options import MetricContext
from .sampling import LatentSource, rounds, synthesis_kwargs


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of a and b (unit-length result)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(dim=-1, keepdim=True)
    angle = torch.acos(cos) * t
    ortho = b - cos * a
    ortho = ortho / ortho.norm(dim=-1, keepdim=True)
    out = a * torch.cos(angle) + ortho * torch.sin(angle)
    return out / out.norm(dim=-1, keepdim=True)


def _images_for_lpips(img: torch.Tensor, crop: bool) -> torch.Tensor:
    if crop:
        eighth = img.shape[2] // 8
        img = img[:, :, eighth * 3:eighth * 7, eighth * 2:eighth * 6]
    factor = img.shape[2] // 256
    if factor > 1:
        n, c, h, w = img.shape
        img = img.reshape(n, c, h // factor, factor, w // factor, factor).mean(dim=[3, 5])
    img = (img + 1) * (255 / 2)
    return img.repeat([1, 3, 1, 1]) if img.shape[1] == 1 else img


def path_samples(G: torch.nn.Module, vgg16: torch.nn.Module, z0: torch.Tensor, z1: torch.Tensor, c: torch.Tensor,
                 gen: torch.Generator, epsilon: float, space: str, sampling: str, crop: bool,
                 synth_kwargs: dict) -> torch.Tensor:
    n = z0.shape[0]
    t = torch.rand([n], generator=gen).to(z0.device) if sampling == 'full' else torch.zeros([n], device=z0.device)
    if space == 'w':
        w0, w1 = G.mapping(torch.cat([z0, z1]), torch.cat([c, c])).chunk(2)
        t3 = t[:, None, None]
        w_a, w_b = w0.lerp(w1, t3), w0.lerp(w1, t3 + epsilon)
    else:
        t2 = t[:, None]
        za, zb = slerp(z0, z1, t2), slerp(z0, z1, t2 + epsilon)
        w_a, w_b = G.mapping(torch.cat([za, zb]), torch.cat([c, c])).chunk(2)
    for name, buf in G.named_buffers():
        if name.endswith('.noise_const'):
            buf.copy_(torch.randn(buf.shape, generator=gen).to(buf.device))
    img = G.synthesis(torch.cat([w_a, w_b]), **{**synth_kwargs, 'noise_mode': 'const', 'force_fp32': True})
    emb_a, emb_b = vgg16(_images_for_lpips(img, crop), resize_images=False, return_lpips=True).chunk(2)
    return (emb_a - emb_b).square().sum(dim=1) / epsilon ** 2


def trimmed_mean(samples: np.ndarray, low: float = 1, high: float = 99) -> float:
    lo = np.percentile(samples, low, method='lower')
    hi = np.percentile(samples, high, method='higher')
    return float(samples[(samples >= lo) & (samples <= hi)].mean())


def run_ppl(opts: MetricContext, num_samples: int, epsilon: float, space: str, sampling: str, crop: bool,
                batch_size: int) -> float:
    if space not in ('z', 'w') or sampling not in ('full', 'end'):
        raise ValueError(f'PPL space must be z or w and sampling full or end, got {space!r}, {sampling!r}')
    vgg16, _ = opts.detector('vgg16')
    G = opts.generator_copy()
    source = LatentSource(opts, G, 'ppl')
    num_batches = (num_samples - 1) // batch_size + 1
    out = []
    with opts.bar(num_samples, 'ppl sampling') as bar, torch.no_grad():
        for index, real in rounds(num_batches, opts.num_gpus, opts.rank):
            z0, c, gen = source.draw(index, batch_size)
            z1 = torch.randn(z0.shape, generator=gen).to(opts.device)
            dist = path_samples(G, vgg16, z0, z1, c, gen, epsilon, space, sampling, crop,
                                synthesis_kwargs(opts.G_kwargs))
            parts = gather_rounds(dist.float().unsqueeze(1), dist.shape[0] if real else 0, batch_size)
            out += parts
            bar.update(min(sum(p.shape[0] for p in parts), bar.total - bar.n))
    samples = torch.cat(out)[:num_samples, 0].cpu().numpy().astype(np.float64)
    return trimmed_mean(samples) if opts.rank == 0 else float('nan')
