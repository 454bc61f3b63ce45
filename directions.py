#!/usr/bin/env python3
"""Find, list and rename latent directions for edits (gen_images.py --edit applies them).

\b
Examples:
  python directions.py --network=snap.pkl --discover=ganspace --directions=pca.npz --components=16
  python directions.py --network=snap.pkl --discover=sefa --layers=coarse --directions=sefa.npz
  python directions.py --network=snap.pkl --discover=supervised --labels-from=garments:darkness --directions=sup.npz
  python directions.py --directions=pca.npz --rename=pc0=silhouette_a,pc3=silhouette_b
  python directions.py --directions=pca.npz --list

--labels-from for supervised directions: garments[:NAMES] (measured on the generated images; each direction is
then checked on held-out seeds of every class, and the table printed), module:function, a FILE.json of
{"label": {"seed": value}}, or classes (class means of a conditional network).
See docs/editing.md.
"""
from __future__ import annotations

from typing import Optional

import click

from editing.check import check_tables
from editing.commands import DiscoverOptions, discover_directions, edit_directions_file
from editing.discovery import METHODS
from generation.options import network_options
from generation.seeds import MAX_SEED
from torch_utils.cli import Parsed, finite_float, run, say


def parse_renames(text: str) -> dict:
    pairs = [p.split('=') for p in text.split(',') if p.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ValueError(f'{text!r} is not OLD=NEW[,OLD=NEW]')
    return {a.strip(): b.strip() for a, b in pairs}


@click.command(help=__doc__, context_settings=dict(max_content_width=120))
@click.option('--directions', required=True, type=click.Path(dir_okay=False), metavar='FILE.npz',
              help='Directions file to write (--discover) or to read')
@click.option('--discover', 'method', type=click.Choice(METHODS), help='Find directions with this method')
@click.option('--list', 'list_only', is_flag=True, help='Print the directions in the file')
@click.option('--rename', type=Parsed(parse_renames, 'OLD=NEW[,...]'), help='Rename directions in the file')
@network_options(required=False)   # --list and --rename only read the file
@click.option('--samples', type=click.IntRange(min=2), help='Latents sampled  [default: 10000 ganspace, 2000 others]')
@click.option('--components', type=click.IntRange(min=1), default=32, show_default=True, help='Directions kept by ganspace/sefa')
@click.option('--layers', metavar='coarse|middle|fine|A-B',
              help='ws rows the directions act on (sefa: also the layers it factorises)  [default: all]')
@click.option('--labels-from', metavar='SPEC', help='supervised: garments[:NAMES] | module:function | FILE.json | classes')
@click.option('--seed', type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help='Seed of the sampled latents')
@click.option('--include-torgb', is_flag=True, help='SeFa: also factorise the ToRGB affines')
@click.option('--trunc', 'truncation_psi', type=finite_float(), default=1, show_default=True,
              help='Truncation of the latents that supervised labels are measured on')
def main(directions: str, method: Optional[str], list_only: bool, rename: Optional[dict], **opts) -> None:
    """Find, list and rename latent directions."""
    if method:
        discover_directions(DiscoverOptions(method=method, directions=directions, **opts), log=say)
    elif list_only or rename:
        d = edit_directions_file(directions, rename)
        say('\n'.join(d.describe() + check_tables(d)))   # with the held-out checks the file records
    else:
        raise click.UsageError('say what to do: --discover=METHOD, --list or --rename=OLD=NEW')


if __name__ == '__main__':
    run(main)
