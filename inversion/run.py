"""One inversion from start to finish: method dispatch for a prepared target, and the file-level driver
behind invert.py (load the snapshot, prepare each photo, invert, write every output, log stats)."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from networks.editing.video import write_frames
from networks.generate import class_label
from networks.snapshot import load_snapshot

from . import outputs
from .hyperstyle import Inverter, invert_hyperstyle, load_inverter
from .hypernet import fold_offsets
from .perceptual import Perceptual
from .preprocess import Target, TargetError, list_targets, load_target
from .projector import LatentStats, latent_stats, project
from .pti import pivotal_tuning
from .quality import psnr, ssim

METHODS = ('project', 'pti', 'hyperstyle')
# NVIDIA's projector runs 1000 steps, PTI's pivot 450. Both start at learning rate 0.1 here: PTI's code
# uses 5e-3 for its pivot, which on generators whose W is spread wider than FFHQ's leaves the pivot near
# w_avg; the pivot is meant to be the best W projection.
PROJECT_STEPS = {'project': 1000, 'pti': 450}
MAX_VIDEO_FRAMES = 150


@dataclasses.dataclass
class Inversion:
    method: str                       # 'project', 'pti' or 'hyperstyle'
    space: str                        # latent space of `ws`
    ws: torch.Tensor                  # [1, num_ws, w_dim]
    image: torch.Tensor               # [1, C, R, R] reconstruction, = G.synthesis(ws, noise_mode='const')
    G: nn.Module                      # the generator that produces `image` from `ws`
    tuned: bool                       # whether G's weights differ from the snapshot's (PTI, HyperStyle)
    noise: dict[str, torch.Tensor]    # optimised noise maps (projection, PTI)
    frames: list[torch.Tensor]        # reconstructions along the way, for --video
    steps: dict[str, int]

    @property
    def tag(self) -> str:
        return {'w': 'project-w', 'w+': 'project-wp'}[self.space] if self.method == 'project' else self.method


def invert(G: nn.Module, target: Target, method: str, *, perceptual: Optional[Perceptual], space: str = 'w',
           steps: Optional[int] = None, learning_rate: Optional[float] = None, pti_steps: int = 350,
           pti_learning_rate: float = 3e-4, locality: bool = True, perceptual_weight: float = 1.0,
           pixel_weight: float = 1.0, inverter: Optional[Inverter] = None, encoder_iterations: int = 5,
           hyper_iterations: int = 5, class_idx: Optional[int] = None, seed: int = 0,
           stats: Optional[LatentStats] = None, w_avg_samples: int = 10000, video: bool = False,
           progress: bool = True, callback: Optional[Callable[[str, int, dict], None]] = None) -> Inversion:
    """Invert one prepared target with `method`; G is left unchanged. `callback(stage, step, losses)` is
    called after every optimisation step ('project', then 'pti'); an exception it raises stops the run."""
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    device = next(G.parameters()).device
    image_t = target.image.to(device)
    mask = target.mask.to(device) if target.mask is not None else None
    c = class_label(G, class_idx).to(device) if G.c_dim else None

    if method == 'hyperstyle':
        if inverter is None:
            raise ValueError('hyperstyle needs a trained inverter (--encoder=PATH)')
        result = invert_hyperstyle(inverter, G, image_t, mask, encoder_iterations, hyper_iterations)
        tuned_G = fold_offsets(G, result.offsets) if result.offsets else G
        return Inversion(method, 'w+', result.ws, result.image, tuned_G, bool(result.offsets), {},
                         result.frames if video else [], dict(encoder=encoder_iterations, hyper=hyper_iterations))

    if method == 'pti' and space != 'w':
        raise ValueError('PTI pivots in W (--space=w)')
    num_steps = steps if steps is not None else PROJECT_STEPS[method]
    lr = learning_rate if learning_rate is not None else 0.1
    stats = stats or latent_stats(G, w_avg_samples, c=c)
    proj = project(G, image_t, mask=mask, perceptual=perceptual, space=space, num_steps=num_steps,
                   initial_learning_rate=lr, perceptual_weight=perceptual_weight, pixel_weight=pixel_weight,
                   c=c, seed=seed, stats=stats, record_steps=video, progress=progress,
                   callback=_stage(callback, 'project'))
    frames = []
    if video:
        every = max(1, num_steps // (MAX_VIDEO_FRAMES if method == 'project' else MAX_VIDEO_FRAMES // 2))
        with torch.no_grad():
            for ws in proj.ws_steps[::every]:
                frames.append(proj.G.synthesis(ws[None].to(device), noise_mode='const').cpu())
    if method == 'project':
        with torch.no_grad():
            image = proj.G.synthesis(proj.ws, noise_mode='const')
        return Inversion('project', space, proj.ws, image, proj.G, False, proj.noise, frames, dict(project=num_steps))

    tuning = pivotal_tuning(proj.G, image_t, proj.ws, mask=mask, perceptual=perceptual, num_steps=pti_steps,
                            learning_rate=pti_learning_rate, l2_weight=pixel_weight,
                            perceptual_weight=perceptual_weight, locality=locality, c=c, seed=seed,
                            record_every=max(1, pti_steps // (MAX_VIDEO_FRAMES // 2)) if video else 0,
                            progress=progress, callback=_stage(callback, 'pti'))
    with torch.no_grad():
        image = tuning.G.synthesis(tuning.ws, noise_mode='const')
    frames += tuning.images_steps or []
    return Inversion('pti', 'w', tuning.ws, image, tuning.G, True, proj.noise, frames,
                     dict(project=num_steps, pti=tuning.steps))


def _stage(callback, stage: str):
    return None if callback is None else (lambda step, losses: callback(stage, step, losses))


def measure(result: Inversion, target: Target) -> dict:
    """PSNR and SSIM of the reconstruction against the target, inside the mask when there is one."""
    a = target.uint8()
    b = outputs.image_uint8(result.image)
    mask = target.mask[0, 0].cpu().numpy() > 0 if target.mask is not None else None
    return dict(psnr=round(psnr(a, b, mask), 3), ssim=round(ssim(a, b, mask), 4))


def write_outputs(result: Inversion, target: Target, outdir: str, *, snapshot: Optional[dict], source: str,
                  video: bool) -> dict[str, str]:
    """Reconstruction, side-by-side, latents, video and tuned snapshot of one inversion; returns their paths."""
    base = os.path.join(outdir, f'{target.name}_{result.tag}')
    target_u8 = target.uint8()
    recon_u8 = outputs.image_uint8(result.image)
    files = dict(reconstruction=base + '.png', compare=base + '_compare.png', latents=base + '.npz')
    outputs.save_png(recon_u8, files['reconstruction'])
    outputs.save_png(outputs.side_by_side(target_u8, recon_u8), files['compare'])
    outputs.save_latents(files['latents'], result.ws, result.space, result.noise, method=result.method)
    if video and result.frames:
        files['video'] = base + '.mp4'
        write_frames(files['video'], [outputs.side_by_side(target_u8, outputs.image_uint8(f)) for f in result.frames],
                     fps=10)
    if result.tuned and snapshot is not None:
        files['snapshot'] = base + outputs.snapshot_suffix(source)
        outputs.save_tuned_snapshot(snapshot, result.G, files['snapshot'], source, method=result.method,
                                    target=target.name)
    return files


def run_inversion(network: str, target: str, outdir: str, method: str, *, mask: Optional[str] = None,
                  fit: str = 'auto', background: Optional[tuple] = None, perceptual: Optional[Perceptual] = None,
                  encoder: Optional[str] = None, device: Union[str, torch.device] = 'cpu', video: bool = False,
                  save_target: bool = True, log: Callable[[str], None] = print, **invert_kwargs) -> list[dict]:
    """Invert one photo or a folder of photos into `network`; unreadable photos are reported and skipped."""
    snapshot = load_snapshot(network)
    G = snapshot['G_ema'].eval().requires_grad_(False).to(device)
    pairs = list_targets(target, mask)
    inverter = load_inverter(encoder, G, device) if method == 'hyperstyle' else None
    if inverter is not None and inverter.info.get('fingerprint') not in (None, ''):
        from .hyperstyle import generator_fingerprint
        if inverter.info['fingerprint'] != generator_fingerprint(G):
            log(f'warning: {encoder} was trained for a different snapshot of the same shape; results may be poor')
    os.makedirs(outdir, exist_ok=True)
    stats_path = os.path.join(outdir, 'invert.jsonl')
    stats = None
    if method != 'hyperstyle':
        c = class_label(G, invert_kwargs.get('class_idx')).to(device) if G.c_dim else None
        stats = latent_stats(G, invert_kwargs.pop('w_avg_samples', 10000), c=c)
    records = []
    for image_path, mask_path in tqdm(pairs, desc=f'invert ({method})', unit='img', disable=len(pairs) < 2):
        try:
            prepared = load_target(image_path, G.img_resolution, G.img_channels, mask_path=mask_path, fit=fit,
                                   background=background)
        except TargetError as e:
            log(f'skipped: {e}')
            records.append(dict(target=str(image_path), skipped=str(e)))
            continue
        start = time.time()
        result = invert(G, prepared, method, perceptual=perceptual, inverter=inverter, stats=stats, video=video,
                        **invert_kwargs)
        seconds = time.time() - start
        if save_target:
            outputs.save_png(prepared.uint8(), os.path.join(outdir, f'{prepared.name}_target.png'))
            if prepared.mask is not None:
                m = (prepared.mask[0, 0].cpu().numpy() * 255).astype(np.uint8)[:, :, None]
                outputs.save_png(m, os.path.join(outdir, f'{prepared.name}_mask.png'))
        files = write_outputs(result, prepared, outdir, snapshot=snapshot, source=network, video=video)
        record = dict(target=str(image_path), mask=mask_path, method=result.method, space=result.space,
                      network=str(network), seconds=round(seconds, 3), steps=result.steps,
                      perceptual=getattr(perceptual, 'name', None), device=str(device), **measure(result, prepared),
                      files=files)
        outputs.append_jsonl(stats_path, record)
        records.append(record)
        log(f'{prepared.name}: {result.tag} PSNR {record["psnr"]:.2f} dB, SSIM {record["ssim"]:.3f}, '
            f'{seconds:.1f} s -> {files["reconstruction"]}')
    return records
