"""The command-line options of the editing scripts on top of generation/options.py's: --directions, --edit,
and the parser of --edit-strip's strengths."""
from __future__ import annotations

from typing import Callable

import click

from generation.options import apply_options
from torch_utils.cli import Parsed, parse_finite

from . import EditingError
from .edits import parse_edits


def parse_strengths(text: str) -> list[float]:
    """'-3,-1.5,0,1.5,3' -> floats."""
    try:
        values = [parse_finite(v, 'strength') for v in text.split(',') if v.strip()]
    except ValueError as e:
        raise EditingError(f'{text!r} is not a comma-separated list of numbers ({e})') from None
    if not values:
        raise EditingError('no strengths given')
    return values


def edit_options(f: Callable) -> Callable:
    """--directions, --edit: move every latent along named directions before rendering."""
    return apply_options([
        click.option('--directions', type=click.Path(dir_okay=False), metavar='FILE.npz',
                     help='Directions that --edit names'),
        click.option('--edit', type=Parsed(parse_edits, 'NAME[:STRENGTH][@LAYERS][,...]'),
                     help="Move latents along named directions; STRENGTH (default 1) in std of W along the direction; "
                          "@LAYERS (coarse|middle|fine|A-B) overrides the direction's ws rows"),
    ])(f)
