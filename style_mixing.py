#!/usr/bin/env python3
"""Style mixing figure, with the options of stylegan2-ada-pytorch's style_mixing.py: each cell keeps its row's
latent except the --styles ws rows, which come from its column's latent. The first row and column show the
latents' own images.

\b
Examples:
  python style_mixing.py --network=snap.pkl --rows=0-3 --cols=10-13 --styles=fine --outdir=out
  python style_mixing.py --network=snap.pkl --rows=85,100,75 --cols=55,821 --styles=0-6 --trunc=0.7 --outdir=out
  python style_mixing.py --network=pti.pkl --rows=inverted/shirt.npz --cols=1-4 --styles=middle --outdir=out

Writes OUTDIR/mix-grid.png and mix-grid.json (which latents, which ws rows came from the columns).
"""
from __future__ import annotations

import click

from editing.cli_options import edit_options
from editing.commands import MixingOptions, style_mix
from generation.options import SOURCES, network_options, render_options
from torch_utils.cli import run, say


@click.command(help=__doc__, context_settings=dict(max_content_width=120))
@network_options()
@click.option('--rows', required=True, type=SOURCES, help='Row latents: seeds and/or latents files')
@click.option('--cols', required=True, type=SOURCES, help='Column latents: seeds and/or latents files')
@click.option('--styles', default='fine', show_default=True, metavar='coarse|middle|fine|A-B[,...]',
              help='ws rows taken from the columns (A-B inclusive)')
@render_options()
@edit_options
def main(**opts) -> list[str]:
    """Generate a style mixing figure."""
    return style_mix(MixingOptions(**opts), log=say)


if __name__ == '__main__':
    run(main)
