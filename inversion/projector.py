"""Latent optimisation ("projection") in W or W+, following the recipe of NVIDIA's StyleGAN2-ADA projector.

The recipe: start at the mean latent w_avg (estimated from 10k mapped samples), optimise with Adam under a
learning rate that ramps up over the first 5% of the steps and down with a cosine over the last 25%, add
Gaussian noise to the latent whose scale (a fraction of the latents' spread) decays to zero over the first
75%, and optimise the per-layer noise maps of StyleGAN2 as well, kept white by an autocorrelation penalty and
renormalised after every step. NVIDIA's loss is the VGG16 LPIPS distance; here a masked pixel MSE is added
(`pixel_weight`) and either term can be switched off.

W optimises one w broadcast to every layer; W+ one w per layer, which fits more but edits less cleanly.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .losses import ReconstructionLoss, noise_autocorrelation
from .perceptual import Perceptual

SPACES = ('w', 'w+')


@dataclasses.dataclass
class Projection:
    ws: torch.Tensor                         # [1, num_ws, w_dim], the result (W results repeat one w)
    space: str
    G: nn.Module                             # copy of the generator holding the optimised noise maps
    noise: dict[str, torch.Tensor]           # the optimised noise maps by buffer name (empty for StyleGAN3)
    history: list[dict[str, float]]          # per-step loss terms
    ws_steps: Optional[torch.Tensor] = None  # [steps, num_ws, w_dim] when recorded (for videos)


@dataclasses.dataclass
class LatentStats:
    w_avg: torch.Tensor    # [1, 1, w_dim]
    w_std: float           # root mean squared distance of a sample from w_avg (one number, as NVIDIA's)
    w_std_dims: torch.Tensor  # [w_dim] per-dimension spread, used to scale encoder outputs


@torch.no_grad()
def latent_stats(G: nn.Module, num_samples: int = 10000, seed: int = 123, c: Optional[torch.Tensor] = None,
                 batch: int = 2048) -> LatentStats:
    """Mean and spread of w = mapping(z) over `num_samples` latents drawn from a fixed seed. `c` holds one
    label for every sample ([1, c_dim]) or one per sample ([num_samples, c_dim])."""
    device = G.mapping.w_avg.device if hasattr(G.mapping, 'w_avg') else next(G.parameters()).device
    z_all = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G.z_dim).astype(np.float32))
    per_sample = c is not None and G.c_dim > 0 and c.shape[0] == num_samples > 1
    ws = []
    for start in range(0, num_samples, batch):
        z = z_all[start:start + batch].to(device)
        if G.c_dim == 0:
            cc = torch.zeros([len(z), 0], device=device)
        elif per_sample:
            cc = c[start:start + batch].to(device)
        else:
            cc = None if c is None else c.to(device).expand(len(z), -1)
        ws.append(G.mapping(z, cc)[:, 0].to(torch.float64))
    w = torch.cat(ws)
    w_avg = w.mean(dim=0)
    w_std = float((w - w_avg).square().sum(dim=1).mean().sqrt())
    return LatentStats(w_avg=w_avg.float()[None, None], w_std=w_std, w_std_dims=w.std(dim=0).float())


def every_class(G: nn.Module, num_samples: int) -> Optional[torch.Tensor]:
    """[num_samples, c_dim] one-hot labels taking G's classes in turn (None for an unconditional G): latent
    statistics over all classes, for an inverter that must serve every class."""
    if not G.c_dim:
        return None
    return torch.nn.functional.one_hot(torch.arange(num_samples) % G.c_dim, G.c_dim).float()


def learning_rate(step: int, num_steps: int, base: float, rampup: float, rampdown: float) -> float:
    """Linear warm-up over the first `rampup` fraction, cosine decay over the last `rampdown` fraction."""
    t = step / num_steps
    down = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    up = min(1.0, t / rampup) if rampup > 0 else 1.0
    return base * (0.5 - 0.5 * math.cos(down * math.pi)) * up


def noise_buffers(G: nn.Module) -> dict[str, torch.Tensor]:
    """StyleGAN2's per-layer constant noise maps (none in StyleGAN3)."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if name.endswith('noise_const')}


@dataclasses.dataclass
class ProjectOptions:
    """The projection recipe (NVIDIA's projector defaults); invert.py sets the fields named as its options:
    space, steps, lr, the two loss weights and w_avg_samples."""
    space: str = 'w'
    steps: int = 1000
    w_avg_samples: int = 10000
    lr: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    perceptual_weight: float = 1.0
    pixel_weight: float = 1.0
    optimize_noise: bool = True


def project(G: nn.Module, target: torch.Tensor, o: ProjectOptions = ProjectOptions(), *,
            mask: Optional[torch.Tensor] = None, perceptual: Optional[Perceptual] = None,
            c: Optional[torch.Tensor] = None, seed: int = 0, w_init: Optional[torch.Tensor] = None,
            stats: Optional[LatentStats] = None, record_steps: bool = False, progress: bool = True,
            callback: Optional[Callable[[int, dict], None]] = None) -> Projection:
    """Find the latent whose image matches `target` ([1, C, R, R] in [-1, 1]) inside `mask`.

    G is not modified: the noise maps are optimised in a copy, returned as `Projection.G`. `w_init`
    ([1, 1 or num_ws, w_dim]) replaces the w_avg start. Deterministic for a given `seed` on a given device.
    """
    if o.space not in SPACES:
        raise ValueError(f'space must be one of {SPACES}, got {o.space!r}')
    if target.ndim != 4 or target.shape[0] != 1 or tuple(target.shape[1:]) != (G.img_channels, G.img_resolution, G.img_resolution):
        raise ValueError(f'target must be [1, {G.img_channels}, {G.img_resolution}, {G.img_resolution}], got {list(target.shape)}')
    device = target.device
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    stats = stats or latent_stats(G, o.w_avg_samples, c=c)

    start = stats.w_avg.to(device) if w_init is None else w_init.to(device, torch.float32)
    if start.shape[1] == 1 and o.space == 'w+':
        start = start.repeat(1, G.num_ws, 1)
    elif start.shape[1] != 1 and o.space == 'w':
        start = start.mean(dim=1, keepdim=True)
    w_opt = start.detach().clone().requires_grad_(True)

    noise = noise_buffers(G) if o.optimize_noise else {}
    for buf in noise.values():
        buf.copy_(torch.randn(buf.shape, generator=gen, device=device))
        buf.requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt] + list(noise.values()), lr=o.lr, betas=(0.9, 0.999))
    criterion = ReconstructionLoss(target, mask, perceptual, o.perceptual_weight, o.pixel_weight)

    history = []
    ws_steps = torch.zeros([o.steps, G.num_ws, G.w_dim]) if record_steps else None
    # Counted by hand after each finished step: iterating a tqdm shows one step less in its last draw (349/350).
    bar = tqdm(total=o.steps, desc=f'project {o.space.upper()}', unit='step', disable=not progress, leave=False)
    for step in range(o.steps):
        t = step / o.steps
        lr = learning_rate(step, o.steps, o.lr, o.lr_rampup_length, o.lr_rampdown_length)
        for group in optimizer.param_groups:
            group['lr'] = lr
        # Jitter the latent early on so that the optimiser does not lock into the nearest local minimum.
        jitter = stats.w_std * o.initial_noise_factor * max(0.0, 1.0 - t / o.noise_ramp_length) ** 2
        w = w_opt + torch.randn(w_opt.shape, generator=gen, device=device) * jitter
        ws = w.expand(-1, G.num_ws, -1) if o.space == 'w' else w
        images = G.synthesis(ws, noise_mode='const')
        terms = criterion.terms(images)
        loss = terms['loss'].sum()
        if noise and o.regularize_noise_weight > 0:
            terms['noise_reg'] = noise_autocorrelation(list(noise.values()))
            loss = loss + o.regularize_noise_weight * terms['noise_reg']
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for buf in noise.values():
                buf.sub_(buf.mean())
                buf.mul_(buf.square().mean().rsqrt())
        record = {k: float(v.detach().sum()) for k, v in terms.items()}
        history.append(record)
        if ws_steps is not None:
            ws_steps[step] = w_opt.detach().expand(-1, G.num_ws, -1)[0].cpu()
        if callback is not None:
            callback(step, record)
        bar.set_postfix(loss=f'{record["loss"]:.4f}', refresh=False)
        bar.update(1)
    bar.refresh()   # the last draw shows every finished step (update() draws at most every 0.1 s)
    bar.close()

    for buf in noise.values():
        buf.requires_grad_(False)
    final = w_opt.detach().expand(-1, G.num_ws, -1).clone()
    return Projection(ws=final, space=o.space, G=G, noise={k: v.detach().clone() for k, v in noise.items()},
                      history=history, ws_steps=ws_steps)
