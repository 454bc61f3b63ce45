#!/usr/bin/env python3
"""Inversion quality and speed: PSNR, SSIM and seconds per image for each method on N images of a snapshot.

Targets are the snapshot's own images (seeds 0..N-1, per-pixel noise drawn at random, so no method can
fit them by reproducing the generator's constant noise), or the photos of a folder (--targets=DIR).
Methods: `w_avg` (the mean latent, the starting point of every method), `project-w`, `project-wp`, `pti`
and `hyperstyle` (needs --encoder, or --train-steps to train an inverter first; its training time is
reported on its own line).

  python benchmarks/inversion.py --n=8                       # the pretrained garment model, class 0
  python benchmarks/inversion.py --network=snapshot.pkl --n=8
  python benchmarks/inversion.py --network=snapshot.pkl --n=4 --methods=project-w,pti --steps=200 --pti-steps=100 \\
      --perceptual=none --json-out=inversion.jsonl

Figures only; nothing here asserts.
"""
from __future__ import annotations

import os
import platform
import sys
import time

import click
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inversion.hyperstyle import InverterError, TrainOptions, load_inverter, train_inverter  # noqa: E402
from inversion.perceptual import PerceptualUnavailable, load_perceptual  # noqa: E402
from inversion.preprocess import Target, TargetError, list_targets, load_target  # noqa: E402
from inversion.projector import latent_stats  # noqa: E402
from inversion.quality import psnr, ssim  # noqa: E402
from inversion.run import InvertOptions, invert  # noqa: E402
from generation import seeds  # noqa: E402
from networks.snapshot import SnapshotError, load_generator  # noqa: E402
from torch_utils.devices import device_from_option  # noqa: E402
from torch_utils.jsonl import append_jsonl  # noqa: E402
from torch_utils.media import image_uint8  # noqa: E402

METHODS = ('w_avg', 'project-w', 'project-wp', 'pti', 'hyperstyle')


def generated_targets(G: torch.nn.Module, n: int, class_idx) -> list[Target]:
    targets = []
    for seed in range(n):
        z = seeds.seed_to_z(seed, G.z_dim).to(torch.float32).to(G.mapping.w_avg.device)
        c = seeds.class_label(G, class_idx).to(z.device)
        with torch.no_grad():
            torch.manual_seed(seed)
            image = G(z, c, noise_mode='random').clamp(-1, 1).cpu()
        # Round to uint8 like a saved photo, so that every method sees the same 8-bit target.
        image = torch.from_numpy(image_uint8(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
        targets.append(Target(name=f'seed{seed:04d}', image=image, mask=None, background=(), box=(0, 0, G.img_resolution)))
    return targets


@click.command()
@click.option('--network', default='garments', show_default=True, metavar='PATH|URL|NAME', help='Snapshot to invert into')
@click.option('--n', 'num_images', type=click.IntRange(min=1), default=8, show_default=True, help='Number of images')
@click.option('--targets', default='generated', show_default=True, metavar='generated|DIR', help='Target images')
@click.option('--methods', default=','.join(METHODS), show_default=True, help='Comma-separated subset of ' + ', '.join(METHODS))
@click.option('--steps', type=click.IntRange(min=1), help='Projection steps  [default: 1000, PTI pivot 450]')
@click.option('--pti-steps', type=click.IntRange(min=0), default=350, show_default=True)
@click.option('--perceptual', default='vgg16', show_default=True, help='vgg16 | PATH | URL | lpips | none')
@click.option('--encoder', 'encoder_path', help='HyperStyle inverter file')
@click.option('--train-steps', type=click.IntRange(min=0), default=0, show_default=True,
              help='Without --encoder: train an inverter for hyperstyle with this many steps per stage')
@click.option('--train-lr', type=float, default=1e-4, show_default=True)
@click.option('--class', 'class_idx', type=int, help='Class of conditional networks  [default: 0]')
@click.option('--device', default='auto', show_default=True)
@click.option('--json-out', type=click.Path(dir_okay=False), help='Append one JSON line per method')
def main(network, num_images, targets, methods, steps, pti_steps, perceptual, encoder_path, train_steps, train_lr,
         class_idx, device, json_out):
    """Benchmark inversion methods on N images of a snapshot."""
    methods = [m.strip() for m in methods.split(',') if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise click.BadParameter(f'unknown methods {unknown}; choose from {", ".join(METHODS)}', param_hint='--methods')
    device = device_from_option(device)
    try:
        G = load_generator(network, device=device)
        loss_net = load_perceptual(perceptual, device)
    except (SnapshotError, PerceptualUnavailable) as e:
        raise click.ClickException(str(e))
    if G.c_dim and class_idx is None:
        class_idx = 0
        click.echo(f'{network} is conditional: inverting into class 0 (--class picks another)', err=True)
    if targets == 'generated':
        items = generated_targets(G, num_images, class_idx)
    else:
        items = []
        for path, _ in list_targets(targets)[:num_images]:
            try:
                items.append(load_target(path, G.img_resolution, G.img_channels))
            except TargetError as e:
                click.echo(f'skipped: {e}', err=True)
    c = seeds.class_label(G, class_idx).to(device) if G.c_dim else None
    stats = latent_stats(G, c=c)
    base = dict(network=str(network), images=len(items), resolution=G.img_resolution, device=str(device),
                perceptual=perceptual, torch=torch.__version__, host=platform.node())

    inverter = None
    if 'hyperstyle' in methods:
        if encoder_path:
            try:
                inverter = load_inverter(encoder_path, G, device)
            except InverterError as e:
                raise click.ClickException(str(e))
        elif train_steps > 0:
            start = time.time()
            inverter = train_inverter(G, TrainOptions(encoder_steps=train_steps, hyper_steps=train_steps,
                                                      train_lr=train_lr), perceptual=loss_net, source=str(network))
            click.echo(f'hyperstyle training: {train_steps} + {train_steps} steps in {time.time() - start:.1f} s')
        else:
            click.echo('hyperstyle skipped: pass --encoder or --train-steps', err=True)
            methods.remove('hyperstyle')

    rows = []
    for method in methods:
        scores, seconds = [], []
        for t in items:
            start = time.time()
            if method == 'w_avg':
                with torch.no_grad():
                    image = G.synthesis(stats.w_avg.expand(1, G.num_ws, -1), noise_mode='const')
            else:
                name = 'project' if method.startswith('project') else method
                space = 'w+' if method == 'project-wp' else 'w'
                opts = InvertOptions(method=name, space=space, steps=steps, pti_steps=pti_steps, class_idx=class_idx)
                image = invert(G, t, opts, perceptual=loss_net, inverter=inverter, stats=stats, progress=False).image
            if device.type == 'cuda':
                torch.cuda.synchronize()
            seconds.append(time.time() - start)
            a, b = t.uint8(), image_uint8(image)
            scores.append((psnr(a, b), ssim(a, b)))
        p, s = np.array(scores).T
        row = dict(method=method, psnr=float(p.mean()), psnr_std=float(p.std()), ssim=float(s.mean()),
                   seconds_per_image=float(np.mean(seconds)), steps=steps, pti_steps=pti_steps if method == 'pti' else None)
        rows.append(row)
        click.echo(f'{method:<12} PSNR {row["psnr"]:6.2f} dB (+-{row["psnr_std"]:.2f})  SSIM {row["ssim"]:.4f}  '
                   f'{row["seconds_per_image"]:8.2f} s/image')
        if json_out:
            append_jsonl(json_out, {**base, **row}, allow_nan=True)


if __name__ == '__main__':
    main()
