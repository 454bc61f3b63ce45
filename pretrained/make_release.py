#!/usr/bin/env python3
"""Write the shipped files of the garment model from a training snapshot (see pretrained/release.py).

  python pretrained/make_release.py --snapshot=RUN/network-snapshot-000020.pkl
  python pretrained/make_release.py          # the shipped model as it is: its directions and grid again

writes pretrained/stylegan2-garments-64x64.pt (from --snapshot only), pretrained/stylegan2-garments-64x64-directions.npz
(the named directions that pass their held-out check, whose figures it prints, and GANSpace components) and
docs/images/pretrained-garments-grid.png (64 samples at truncation 0.7, one class per row).
"""
from __future__ import annotations

import json
import os
import sys

import click

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from torch_utils.cli import run                             # noqa: E402
from networks.snapshot import load_generator, shipped_models  # noqa: E402
from pretrained import release                             # noqa: E402


@click.command(help=__doc__)
@click.option('--snapshot', help='Training snapshot (.pkl) to release  [default: keep --model as it is]')
@click.option('--model', default=shipped_models()['garments'], show_default=True)
@click.option('--directions', help='Directions file  [default: MODEL without .pt + -directions.npz]')
@click.option('--grid', default=os.path.join(REPO, 'docs', 'images', 'pretrained-garments-grid.png'), show_default=True)
@click.option('--trunc', type=float, default=0.7, show_default=True, help='Truncation of the grid')
@click.option('--samples', type=click.IntRange(min=10), default=2000, show_default=True, help='Latents per direction fit')
@click.option('--components', type=click.IntRange(min=1), default=8, show_default=True, help='GANSpace components kept')
def main(snapshot, model, directions, grid, trunc, samples, components):
    info = release.export_generator(snapshot, model) if snapshot else dict(path=model)
    G = load_generator(model)
    directions = directions or os.path.splitext(model)[0] + '-directions.npz'
    d = release.discover_directions(G, directions, samples=samples, components=components,
                                    source=os.path.basename(model), log=click.echo)
    click.echo('\n'.join(d.describe()))
    os.makedirs(os.path.dirname(os.path.abspath(grid)), exist_ok=True)
    release.class_grid(G, grid, truncation_psi=trunc)
    click.echo(json.dumps(dict(info, directions=directions, grid=grid)))


if __name__ == '__main__':
    run(main, expected=(ValueError,))
