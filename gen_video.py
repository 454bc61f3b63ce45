#!/usr/bin/env python3
"""Render a latent interpolation video (MP4) through seeds or inverted latents, with the options of NVIDIA's
gen_video.py.

\b
Examples:
  python gen_video.py --network=snap.pkl --seeds=0-5 --outdir=out                      # out/interpolation.mp4
  python gen_video.py --network=snap.pkl --seeds=0-31 --grid=4x2 --w-frames=60 --output=lerp.mp4
  python gen_video.py --network=pti.pkl --ws=inverted/shirt.npz,inverted/dress.npz --kind=linear --no-loop --output=pair.mp4

K keyframes per cell give K * W_FRAMES frames when looping (back to the first keyframe), else
(K - 1) * W_FRAMES + 1. With --grid=CxR the seeds are split into C*R consecutive runs, one per cell; with
--num-keyframes each cell takes that many, reusing the seeds cyclically.
"""
from __future__ import annotations

import re

import click

from editing.cli_options import edit_options
from editing.commands import VideoOptions, generate_video
from editing.render import KINDS
from generation.options import SOURCES, network_options, render_options
from torch_utils.cli import Parsed, finite_float, run, say


def parse_grid(text: str) -> tuple[int, int]:
    m = re.fullmatch(r'\s*(\d+)\s*x\s*(\d+)\s*', text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f'{text!r} is not COLSxROWS, e.g. 2x2')
    return int(m.group(1)), int(m.group(2))


@click.command(help=__doc__, context_settings=dict(max_content_width=120))
@network_options()
@click.option('--seeds', '--ws', 'seeds', type=SOURCES, multiple=True,
              help="Keyframes: seeds ('0-5') and/or latents files (invert.py's .npz), in order; repeatable")
@render_options()
@edit_options
@click.option('--output', type=click.Path(dir_okay=False), metavar='FILE.mp4',
              help='Video file  [default: OUTDIR/interpolation.mp4]')
@click.option('--grid', type=Parsed(parse_grid, 'COLSxROWS'), default='1x1', show_default=True,
              help='Interpolations shown side by side')
@click.option('--num-keyframes', type=click.IntRange(min=2), help='Keyframes per grid cell  [default: seeds / cells]')
@click.option('--w-frames', '--frames-per-seed', 'w_frames', type=click.IntRange(min=1), default=60, show_default=True,
              help='Frames per keyframe')
@click.option('--kind', type=click.Choice(KINDS), default='cubic', show_default=True, help='Interpolation')
@click.option('--loop/--no-loop', default=True, show_default=True, help='Return to the first keyframe')
@click.option('--fps', type=finite_float(min=1), default=30, show_default=True, help='Frame rate')
def main(seeds: tuple, **opts) -> str:
    """Render an interpolation video."""
    return generate_video(VideoOptions(seeds=[s for group in seeds for s in group], **opts), log=say)


if __name__ == '__main__':
    run(main)
