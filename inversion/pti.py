"""Pivotal Tuning Inversion (Roich et al., 2021): fix a W pivot, then fine-tune the generator around it.

1. Pivot: a W projection of the target (450 steps as in PTI; the projector's learning rate, see run.py).
2. Tuning: the synthesis network's parameters are trained so that G(pivot) matches the target under
   LPIPS + L2 (weights 1 and 1, Adam at 3e-4, at most 350 steps, stopping early once LPIPS < 0.06).
3. Locality regularisation: at every step a latent is sampled (z -> w at truncation 0.5) and moved to
   distance 30 from the pivot along the line through it; the tuned generator must keep producing what the
   original one produced there (L2 and LPIPS, weights 0.1 each). This confines the change to the pivot's
   neighbourhood, so the rest of the latent space, and with it edit directions, still behave.
   PTI's paper describes it; its public config ships with it switched off. It is on by default here.

Only the synthesis network is tuned: the mapping network cannot influence G(pivot), and leaving it alone
keeps w_avg and truncation identical to the original snapshot.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Callable, Optional

import torch
from torch import nn
from tqdm import tqdm

from .losses import ReconstructionLoss, masked_mse
from .perceptual import Perceptual


@dataclasses.dataclass
class TuningResult:
    G: nn.Module                       # the tuned generator (eval mode, no gradients)
    ws: torch.Tensor                   # [1, num_ws, w_dim] pivot
    history: list[dict[str, float]]
    steps: int                         # steps actually run (fewer when the LPIPS threshold stopped it)
    images_steps: Optional[list[torch.Tensor]] = None   # reconstructions along the way, for videos


def locality_latents(G: nn.Module, pivot: torch.Tensor, num: int, alpha: float, truncation_psi: float,
                     gen: torch.Generator, c: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`num` latents at distance `alpha` from the pivot, each in the direction of a sampled w."""
    device = pivot.device
    z = torch.randn([num, G.z_dim], generator=gen, device=device)
    cc = torch.zeros([num, G.c_dim], device=device) if c is None else c.to(device).expand(num, -1)
    with torch.no_grad():
        w = G.mapping(z, cc, truncation_psi=truncation_psi)
    direction = w - pivot
    norm = direction.flatten(1).norm(dim=1).clamp(min=1e-8).reshape(-1, 1, 1)
    return pivot + alpha * direction / norm


@dataclasses.dataclass
class TuningOptions:
    """PTI's tuning recipe (see the module docstring); invert.py sets the fields named as its options:
    pti_steps, pti_lr, locality and the two loss weights."""
    pti_steps: int = 350
    pti_lr: float = 3e-4
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    perceptual_threshold: Optional[float] = 0.06
    locality: bool = True
    locality_interval: int = 1
    locality_samples: int = 1
    locality_alpha: float = 30.0
    locality_truncation: float = 0.5
    locality_l2_weight: float = 0.1
    locality_perceptual_weight: float = 0.1


def pivotal_tuning(G: nn.Module, target: torch.Tensor, pivot: torch.Tensor, o: TuningOptions = TuningOptions(), *,
                   mask: Optional[torch.Tensor] = None, perceptual: Optional[Perceptual] = None,
                   c: Optional[torch.Tensor] = None, seed: int = 0, record_every: int = 0, progress: bool = True,
                   callback: Optional[Callable[[int, dict], None]] = None) -> TuningResult:
    """Tune a copy of G so that G.synthesis(pivot, noise_mode='const') reproduces `target` inside `mask`.

    Pass the generator that produced the pivot (the projection's copy, with its optimised noise maps), so
    that tuning starts from the pivot's exact image.
    """
    device = target.device
    original = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    tuned = copy.deepcopy(G).eval().to(device)
    tuned.requires_grad_(False)
    params = [p for p in tuned.synthesis.parameters()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=o.pti_lr, betas=(0.9, 0.999))
    criterion = ReconstructionLoss(target, mask, perceptual, o.perceptual_weight, o.pixel_weight)
    gen = torch.Generator(device=device).manual_seed(seed)
    pivot = pivot.detach().to(device)
    use_perceptual = perceptual is not None and o.locality_perceptual_weight > 0

    history = []
    frames = [] if record_every else None
    bar = tqdm(total=o.pti_steps, desc='PTI tuning', unit='step', disable=not progress, leave=False)
    steps = 0
    for step in range(o.pti_steps):
        images = tuned.synthesis(pivot, noise_mode='const')
        terms = criterion.terms(images)
        # PTI stops once the reconstruction is perceptually close enough; tuning further only overfits.
        if o.perceptual_threshold is not None and 'perceptual' in terms and float(terms['perceptual'].detach()) < o.perceptual_threshold:
            break
        loss = terms['loss'].sum()
        if o.locality and o.locality_interval > 0 and step % o.locality_interval == 0:
            w_near = locality_latents(original, pivot, o.locality_samples, o.locality_alpha, o.locality_truncation, gen, c)
            with torch.no_grad():
                before = original.synthesis(w_near, noise_mode='const')
            after = tuned.synthesis(w_near, noise_mode='const')
            reg = o.locality_l2_weight * masked_mse(after, before).mean()
            if use_perceptual:
                reg = reg + o.locality_perceptual_weight * perceptual(after, before).mean()
            terms['locality'] = reg
            loss = loss + reg
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps = step + 1
        record = {k: float(v.detach().sum()) for k, v in terms.items()}
        history.append(record)
        if frames is not None and step % record_every == 0:
            frames.append(images.detach().cpu())
        if callback is not None:
            callback(step, record)
        bar.set_postfix(loss=f'{record["loss"]:.4f}', refresh=False)
        bar.update(1)   # by hand after the step, as the projector's bar: the last draw shows N/N
    bar.refresh()   # the last draw shows every finished step (update() draws at most every 0.1 s)
    bar.close()

    tuned.requires_grad_(False).eval()
    return TuningResult(G=tuned, ws=pivot, history=history, steps=steps, images_steps=frames)
