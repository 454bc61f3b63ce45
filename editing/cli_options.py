"""The command-line options that gen_images.py, gen_video.py, style_mixing.py and directions.py share, with
NVIDIA's names, defined once. Each decorator adds options; their values are RenderOptions fields."""
from __future__ import annotations

from typing import Callable

import click

from networks.generate import parse_vec2
from torch_utils.cli import Parsed, finite_float

from .edits import parse_edits
from .sources import parse_sources

SOURCES = Parsed(parse_sources, 'SEEDS|FILE.npz')
VEC2 = Parsed(parse_vec2, 'X,Y')


def _apply(options: list[Callable]) -> Callable:
    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def network_options(required: bool = True) -> Callable[[Callable], Callable]:
    """--network, --class, --device."""
    return _apply([
        click.option('--network', 'network', required=required, metavar='PATH|URL',
                     help='Snapshot: .pkl (ours or NVIDIA), .pt, run directory (newest snapshot), or URL'),
        click.option('--class', 'class_idx', metavar='INDEX|NAME',
                     help='Class label (conditional networks): its index, or its name where the snapshot records names'),
        click.option('--device', default='auto', show_default=True,
                     help='auto (CUDA when available), cpu, cuda, cuda:1, ...'),
    ])


def render_options(batch_in_help: bool = True) -> Callable[[Callable], Callable]:
    """--trunc, --noise-mode, --outdir, --batch (a speed knob; gen_images.py leaves it out of --help, which
    keeps to NVIDIA's options and ours that matter, and documents it in its examples)."""
    return _apply([
        click.option('--trunc', 'truncation_psi', type=finite_float(), default=1, show_default=True,
                     help='Truncation psi'),
        click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const',
                     show_default=True),
        click.option('--outdir', type=click.Path(file_okay=False), help='Where to save the output'),
        click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8, show_default=True,
                     hidden=not batch_in_help, help='Images per forward pass'),
    ])


def edit_options(f: Callable) -> Callable:
    """--directions, --edit: move every latent along named directions before rendering."""
    return _apply([
        click.option('--directions', type=click.Path(dir_okay=False), metavar='FILE.npz',
                     help='Directions that --edit names'),
        click.option('--edit', type=Parsed(parse_edits, 'NAME[:STRENGTH][@LAYERS][,...]'),
                     help="Move latents along named directions; STRENGTH (default 1) in std of W along the direction; "
                          "@LAYERS (coarse|middle|fine|A-B) overrides the direction's ws rows"),
    ])(f)
