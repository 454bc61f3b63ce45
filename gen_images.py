#!/usr/bin/env python3
"""Generate images from a trained network (ours or NVIDIA's), one PNG per seed; find and apply latent
directions, style-mix, and render interpolation videos.

Examples:

\b
  python gen_images.py --network=network-snapshot-000432.pkl --seeds=0-7 --outdir=out
  python gen_images.py --network=G.pt --seeds=0-15 --trunc=0.7 --grid --outdir=out
  python gen_images.py --network=stylegan3-r.pkl --seeds=3 --translate=0.2,0 --rotate=10 --outdir=out
  python gen_images.py --network=snapshot.pkl --export-pt=snapshot.pt
\b
  # directions: find, rename, list, apply (STRENGTH is in std of W along the direction)
  python gen_images.py --network=snap.pkl --discover=ganspace --directions=pca.npz --components=16
  python gen_images.py --network=snap.pkl --discover=sefa --layers=coarse --directions=sefa.npz
  python gen_images.py --network=snap.pkl --discover=supervised --labels-from=garments:darkness,sleeve --directions=sup.npz
  python gen_images.py --directions=pca.npz --rename=pc0=darker,pc3=longer_sleeves
  python gen_images.py --directions=pca.npz --list-directions
  python gen_images.py --network=snap.pkl --directions=pca.npz --seeds=0-3 --edit=darker:2,longer_sleeves:-1@middle --outdir=out
  python gen_images.py --network=snap.pkl --directions=sup.npz --seeds=0-3 --edit=darkness --edit-strip=-3,-1.5,0,1.5,3 --outdir=out
  python gen_images.py --network=pti.pkl --directions=sup.npz --ws=inverted/shirt.npz --edit=sleeve:2 --outdir=out
\b
  # style mixing (columns give the chosen ws rows) and interpolation video
  python gen_images.py --network=snap.pkl --mix-rows=0-3 --mix-cols=10-13 --mix-styles=fine --outdir=out
  python gen_images.py --network=snap.pkl --seeds=0-5 --video --frames-per-seed=30 --kind=cubic --outdir=out
"""
from __future__ import annotations

import json
import os
import time

import click
import torch
from tqdm import tqdm

from networks import generate
from networks.editing import jobs
from networks.editing.directions import load_directions, save_directions
from networks.editing.edits import parse_edits, parse_strengths
from networks.editing.sources import Latents, apply_noise_maps, parse_sources, resolve_sources
from networks.editing.video import KINDS
from networks.snapshot import SnapshotError, export_pt, load_generator, load_snapshot


def _parse(parser):
    def convert(value):
        if value is None:
            return None
        try:
            return parser(value)
        except ValueError as e:
            raise click.BadParameter(str(e))
    return convert


def _parse_renames(text: str) -> dict:
    pairs = [p.split('=') for p in text.split(',') if p.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ValueError(f'{text!r} is not OLD=NEW[,OLD=NEW]')
    return {a.strip(): b.strip() for a, b in pairs}


@click.command(help=__doc__)
@click.option('--network', 'network', metavar='PATH|URL', help='Snapshot: .pkl (ours or NVIDIA), .pt, or URL')
@click.option('--seeds', type=_parse(generate.parse_range), help="Random seeds, e.g. '0,1,4-6'")
@click.option('--ws', 'ws_files', type=_parse(parse_sources), metavar='FILE[,FILE]',
              help='Latents .npz files (invert.py output: "w" or "ws") to render or edit instead of / after --seeds')
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
# Directions.
@click.option('--directions', 'directions_path', type=click.Path(dir_okay=False), metavar='FILE.npz',
              help='Directions file to apply (--edit) or to write (--discover)')
@click.option('--edit', type=_parse(parse_edits), metavar='NAME[:STRENGTH][@LAYERS][,...]',
              help='Move latents along named directions; STRENGTH (default 1) is in units of the std of W along the '
                   'direction; @LAYERS (coarse|middle|fine|A-B) overrides the direction\'s ws rows')
@click.option('--edit-strip', type=_parse(parse_strengths), metavar='STRENGTHS',
              help="With --edit: write edit-strip.png, a row per seed and direction across these strengths, e.g. '-3,-1.5,0,1.5,3'")
@click.option('--discover', type=click.Choice(jobs.METHODS), help='Find directions and write them to --directions')
@click.option('--samples', type=click.IntRange(min=2), help='Latents sampled for --discover  [default: 10000 ganspace, 2000 others]')
@click.option('--components', type=click.IntRange(min=1), default=32, show_default=True, help='Directions kept by ganspace/sefa')
@click.option('--layers', metavar='coarse|middle|fine|A-B',
              help='ws rows the discovered directions act on (sefa: also the layers it factorises)  [default: all]')
@click.option('--labels-from', metavar='SPEC', help='--discover=supervised labels: garments[:NAMES] | module:function | FILE.json | classes')
@click.option('--discover-seed', type=int, default=0, show_default=True, help='Seed of the latents --discover samples')
@click.option('--include-torgb', is_flag=True, help='SeFa: also factorise the ToRGB affines')
@click.option('--rename', type=_parse(_parse_renames), metavar='OLD=NEW[,...]', help='Rename directions in --directions and exit')
@click.option('--list-directions', is_flag=True, help='Print the directions in --directions and exit')
# Style mixing and video.
@click.option('--mix-rows', type=_parse(parse_sources), metavar='SEEDS|FILES', help='Style mixing: row latents (keep all other rows)')
@click.option('--mix-cols', type=_parse(parse_sources), metavar='SEEDS|FILES', help='Style mixing: column latents (give --mix-styles rows)')
@click.option('--mix-styles', default='fine', show_default=True, metavar='coarse|middle|fine|A-B[,...]',
              help='ws rows taken from the columns (A-B inclusive)')
@click.option('--video', is_flag=True, help='Write interpolation.mp4 through --seeds/--ws in order')
@click.option('--frames-per-seed', type=click.IntRange(min=1), default=60, show_default=True, help='Video frames per keyframe')
@click.option('--kind', type=click.Choice(KINDS), default='cubic', show_default=True, help='Video interpolation')
@click.option('--loop/--no-loop', default=True, show_default=True, help='Video returns to the first keyframe')
@click.option('--fps', type=click.FloatRange(min=1), default=30, show_default=True, help='Video frame rate')
def main(**opts):
    """Generate images using a pretrained network snapshot."""
    try:
        run(**opts)
    except (SnapshotError, ValueError, KeyError) as e:
        raise click.ClickException(str(e).strip('"\''))


def run(network, seeds, ws_files, truncation_psi, class_idx, noise_mode, translate, rotate, outdir, grid, batch_size,
        device, export_pt_path, directions_path, edit, edit_strip, discover, samples, components, layers, labels_from,
        discover_seed, include_torgb, rename, list_directions, mix_rows, mix_cols, mix_styles, video, frames_per_seed,
        kind, loop, fps):
    start = time.time()
    if rename or list_directions:
        if not directions_path:
            raise click.UsageError('--rename/--list-directions need --directions=FILE.npz')
        d = load_directions(directions_path)
        if rename:
            d = d.renamed(rename)
            save_directions(directions_path, d)
        click.echo('\n'.join(d.describe()))
        return
    if not network:
        raise click.UsageError('--network is required')
    if export_pt_path:
        export_pt(load_snapshot(network), export_pt_path)
        click.echo(f'wrote {export_pt_path}')
        return
    device = generate.default_device() if device == 'auto' else torch.device(device)
    G = load_generator(network, device=device)

    if discover:
        if not directions_path:
            raise click.UsageError('--discover needs --directions=OUT.npz')
        d = jobs.discover(G, discover, directions_path, samples=samples, components=components, layers=layers,
                          labels_from=labels_from, seed=discover_seed, class_idx=class_idx,
                          truncation_psi=truncation_psi, include_torgb=include_torgb, source=str(network))
        click.echo('\n'.join(d.describe()))
        click.echo(f'wrote {directions_path}')
        return

    mixing = mix_rows is not None or mix_cols is not None
    if not (seeds or ws_files or mixing):
        raise click.UsageError('--seeds is required (e.g. --seeds=0-7), or --ws, or --mix-rows/--mix-cols')
    if not outdir:
        raise click.UsageError('--outdir is required')
    if G.c_dim == 0 and class_idx is not None:
        click.echo('warning: --class is ignored, the network is unconditional', err=True)
        class_idx = None
    if G.c_dim > 0 and class_idx is None and (seeds or mixing):
        raise click.ClickException(f'{network}: the network is conditional ({G.c_dim} classes): pass --class=0..{G.c_dim - 1}')
    if (translate != (0, 0) or rotate != 0) and not generate.set_input_transform(G, translate, rotate):
        click.echo('warning: --translate/--rotate apply to StyleGAN3 networks only; ignored', err=True)
    directions = None
    if edit or edit_strip:
        if not edit or not directions_path:
            raise click.UsageError('--edit and --edit-strip need --edit=NAMES and --directions=FILE.npz')
        directions = load_directions(directions_path)
        directions.check_network(G, directions_path)
        for e in edit:
            directions.index(e.name)
    os.makedirs(outdir, exist_ok=True)
    stats = dict(network=str(network), device=str(device), truncation_psi=truncation_psi, noise_mode=noise_mode,
                 class_idx=class_idx)

    def latents_of(items) -> Latents:
        lat = resolve_sources(G, items, truncation_psi, class_idx)
        if lat.noise:
            apply_noise_maps(G, lat.noise)
        return lat if edit_strip else jobs.edit_latents(G, lat, directions, edit)

    if mixing:
        if mix_rows is None or mix_cols is None:
            raise click.UsageError('style mixing needs both --mix-rows and --mix-cols')
        paths = jobs.write_mixing(G, latents_of(mix_rows), latents_of(mix_cols), mix_styles, outdir,
                                  noise_mode=noise_mode, batch_size=batch_size)
        stats.update(mode='mix', rows=len(mix_rows), cols=len(mix_cols), styles=mix_styles)
    elif video:
        path = os.path.join(outdir, 'interpolation.mp4')
        n = jobs.write_video(G, latents_of(list(seeds or []) + list(ws_files or [])), path, frames_per_key=frames_per_seed,
                             kind=kind, loop=loop, fps=fps, noise_mode=noise_mode, batch_size=batch_size)
        paths = [path]
        stats.update(mode='video', frames=n, kind=kind, loop=loop)
    elif edit_strip:
        lat = latents_of(list(seeds or []) + list(ws_files or []))
        if any(e.strength != 1 for e in edit):
            click.echo('note: with --edit-strip the strengths come from --edit-strip; those in --edit are not used', err=True)
        paths = jobs.write_edit_strip(G, lat, directions, edit, edit_strip, outdir, noise_mode=noise_mode,
                                      batch_size=batch_size)
        stats.update(mode='edit-strip', edits=[e.name for e in edit], strengths=edit_strip)
    elif edit or ws_files:
        lat = latents_of(list(seeds or []) + list(ws_files or []))
        paths = jobs.write_images(G, lat, outdir, suffix='-edited' if edit else '', noise_mode=noise_mode,
                                  batch_size=batch_size, grid=grid)
        stats.update(mode='edit' if edit else 'latents', images=len(lat.labels),
                     edits=[[e.name, e.strength, e.layers] for e in edit or []])
    else:
        paths = _generate_seeds(G, seeds, truncation_psi, class_idx, noise_mode, batch_size, device, outdir, grid)
        stats.update(seeds=len(seeds))
    stats['seconds'] = round(time.time() - start, 3)
    with open(os.path.join(outdir, 'gen_images.jsonl'), 'a') as f:
        f.write(json.dumps(stats) + '\n')
    click.echo(f'wrote {len(paths)} files to {outdir} in {stats["seconds"]:.1f} s')


def _generate_seeds(G, seeds, truncation_psi, class_idx, noise_mode, batch_size, device, outdir, grid) -> list[str]:
    images, paths = [], []
    stream = generate.generate_from_seeds(G, seeds, truncation_psi=truncation_psi, class_idx=class_idx,
                                          noise_mode=noise_mode, batch_size=batch_size, device=device)
    for seed, image in tqdm(stream, total=len(seeds), desc='generating', unit='img'):
        paths.append(os.path.join(outdir, f'seed{seed:04d}.png'))
        generate.save_image(image, paths[-1])
        if grid:
            images.append(image)
    if grid:
        paths.append(os.path.join(outdir, 'grid.png'))
        generate.save_image(generate.image_grid(images), paths[-1])
    return paths


if __name__ == '__main__':
    main()
