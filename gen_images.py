#!/usr/bin/env python3
"""Generate images from a trained network (ours or NVIDIA's): one PNG per seed or latents file, optionally
moved along latent directions.

Examples:

\b
  python gen_images.py --network=garments --class=all --seeds=0-7 --grid --outdir=out   # the shipped model, every class
  python gen_images.py --network=network-snapshot-000432.pkl --seeds=0-7 --outdir=out
  python gen_images.py --network=runs --seeds=0-15 --trunc=0.7 --grid --outdir=out   # newest snapshot of runs/
  python gen_images.py --network=stylegan3-r.pkl --seeds=3 --translate=0.2,0 --rotate=10 --outdir=out
  python gen_images.py --network=snapshot.pkl --export-pt=snapshot.pt
\b
  # edits (directions from directions.py; STRENGTH is in std of W along the direction)
  python gen_images.py --network=snap.pkl --directions=pca.npz --seeds=0-3 --edit=pc0:2,pc3:-1@middle --outdir=out
  python gen_images.py --network=snap.pkl --directions=sup.npz --seeds=0-3 --edit=darkness --edit-strip=-3,-1.5,0,1.5,3 --outdir=out
  python gen_images.py --network=pti.pkl --directions=sup.npz --ws=inverted/shirt.npz --edit=darkness:2 --outdir=out
\b
  --batch=N sets the images per forward pass (default 8; only speed and memory depend on it).
  Videos: gen_video.py; style mixing: style_mixing.py; finding, listing, renaming directions: directions.py.
"""
from __future__ import annotations

from typing import Optional

import click

from editing.cli_options import edit_options, parse_strengths
from editing.commands import edit_images
from generation.images import ImageOptions, generate_images, needs_editing
from generation.options import SOURCES, VEC2, network_options, render_options
from torch_utils.cli import Parsed, finite_float, run, say


@click.command(help=__doc__, context_settings=dict(max_content_width=120))
@network_options()
@click.option('--seeds', '--ws', 'seeds', type=SOURCES, multiple=True,
              help="Seeds ('0,1,4-6') and/or latents files (invert.py's .npz), rendered in order; repeatable")
@render_options(batch_in_help=False)
@click.option('--translate', type=VEC2, default='0,0', show_default=True, help='Translate XY (StyleGAN3 only)')
@click.option('--rotate', type=finite_float(), default=0, show_default=True, metavar='ANGLE',
              help='Rotation in degrees (StyleGAN3 only)')
@click.option('--grid', is_flag=True, help='Also write grid.png with all images')
@click.option('--export-pt', type=click.Path(dir_okay=False), help='Write the snapshot as a weights-only .pt file and exit')
@edit_options
@click.option('--edit-strip', type=Parsed(parse_strengths, 'STRENGTHS'),
              help="With --edit: edit-strip.png, a row per latent and direction across these strengths, e.g. '-3,0,3'")
def main(seeds: tuple, **opts) -> Optional[list[str]]:
    """Generate images using a pretrained network snapshot."""
    options = ImageOptions(seeds=[s for group in seeds for s in group], **opts)
    return (edit_images if needs_editing(options) else generate_images)(options, log=say)


if __name__ == '__main__':
    run(main)
