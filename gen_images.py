#!/usr/bin/env python3
"""Generate images from a trained network (ours or NVIDIA's), one PNG per seed.

Examples:
  python gen_images.py --network=network-snapshot-000432.pkl --seeds=0-7 --outdir=out
  python gen_images.py --network=G.pt --seeds=0-15 --trunc=0.7 --grid --outdir=out
  python gen_images.py --network=stylegan3-r.pkl --seeds=3 --translate=0.2,0 --rotate=10 --outdir=out
  python gen_images.py --network=snapshot.pkl --export-pt=snapshot.pt
"""
from __future__ import annotations

import json
import os
import time

import click
import torch
from tqdm import tqdm

from networks import generate
from networks.snapshot import SnapshotError, export_pt, load_generator, load_snapshot


def _parse(parser):
    def convert(value):
        try:
            return parser(value)
        except ValueError as e:
            raise click.BadParameter(str(e))
    return convert


@click.command()
@click.option('--network', 'network', required=True, metavar='PATH|URL', help='Snapshot: .pkl (ours or NVIDIA), .pt, or URL')
@click.option('--seeds', type=_parse(generate.parse_range), help="Random seeds, e.g. '0,1,4-6'")
@click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Truncation psi')
@click.option('--class', 'class_idx', type=int, help='Class label (required for conditional networks)')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--translate', type=_parse(generate.parse_vec2), default='0,0', show_default=True, metavar='VEC2',
              help='Translate XY (StyleGAN3 only)')
@click.option('--rotate', type=float, default=0, show_default=True, metavar='ANGLE', help='Rotation in degrees (StyleGAN3 only)')
@click.option('--outdir', type=click.Path(file_okay=False), help='Where to save the images')
@click.option('--grid', is_flag=True, help='Also write grid.png with all seeds')
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8, show_default=True, help='Images per forward pass')
@click.option('--device', default='auto', show_default=True, help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...")
@click.option('--export-pt', 'export_pt_path', type=click.Path(dir_okay=False),
              help='Write the snapshot as a weights-only .pt file and exit')
def main(network, seeds, truncation_psi, class_idx, noise_mode, translate, rotate, outdir, grid, batch_size, device,
         export_pt_path):
    """Generate images using a pretrained network snapshot."""
    try:
        if export_pt_path:
            export_pt(load_snapshot(network), export_pt_path)
            click.echo(f'wrote {export_pt_path}')
            return
        if not seeds:
            raise click.UsageError('--seeds is required (e.g. --seeds=0-7)')
        if not outdir:
            raise click.UsageError('--outdir is required')
        device = generate.default_device() if device == 'auto' else torch.device(device)
        G = load_generator(network, device=device)
    except SnapshotError as e:
        raise click.ClickException(str(e))

    if G.c_dim == 0 and class_idx is not None:
        click.echo('warning: --class is ignored, the network is unconditional', err=True)
        class_idx = None
    if G.c_dim > 0 and class_idx is None:
        raise click.ClickException(f'{network}: the network is conditional ({G.c_dim} classes): pass --class=0..{G.c_dim - 1}')
    if (translate != (0, 0) or rotate != 0) and not generate.set_input_transform(G, translate, rotate):
        click.echo('warning: --translate/--rotate apply to StyleGAN3 networks only; ignored', err=True)

    os.makedirs(outdir, exist_ok=True)
    images = []
    start = time.time()
    try:
        stream = generate.generate_from_seeds(G, seeds, truncation_psi=truncation_psi, class_idx=class_idx,
                                              noise_mode=noise_mode, batch_size=batch_size, device=device)
        for seed, image in tqdm(stream, total=len(seeds), desc='generating', unit='img'):
            generate.save_image(image, os.path.join(outdir, f'seed{seed:04d}.png'))
            if grid:
                images.append(image)
    except ValueError as e:
        raise click.ClickException(str(e))
    if grid:
        generate.save_image(generate.image_grid(images), os.path.join(outdir, 'grid.png'))
    stats = dict(network=str(network), seeds=len(seeds), seconds=round(time.time() - start, 3), device=str(device),
                 truncation_psi=truncation_psi, noise_mode=noise_mode, class_idx=class_idx)
    with open(os.path.join(outdir, 'gen_images.jsonl'), 'a') as f:
        f.write(json.dumps(stats) + '\n')
    click.echo(f'wrote {len(seeds)} images to {outdir} in {stats["seconds"]:.1f} s')


if __name__ == '__main__':
    main()
