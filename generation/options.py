"""The command-line options that gen_images.py, gen_video.py, style_mixing.py and directions.py share, with
NVIDIA's names, defined once (their values' parsers: seeds.py). Each decorator adds options; their values
are RenderOptions fields (images.py)."""
from __future__ import annotations

from typing import Callable

import click

from torch_utils.cli import Parsed, finite_float

from .seeds import parse_sources, parse_vec2


SOURCES = Parsed(parse_sources, 'SEEDS|FILE.npz')
VEC2 = Parsed(parse_vec2, 'X,Y')


NETWORK_HELP = ('Snapshot: .pkl (ours or NVIDIA), .pt, run directory or folder of runs (newest snapshot), RUN_DIR:best, '
                'URL, or the short name of a model in pretrained/ (garments)')


def apply_options(options: list[Callable]) -> Callable:
    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def network_options(required: bool = True) -> Callable[[Callable], Callable]:
    """--network, --class, --device."""
    return apply_options([
        click.option('--network', 'network', required=required, metavar='PATH|URL|NAME',
                     help=NETWORK_HELP),
        click.option('--class', 'class_idx', metavar='INDEX|NAME',
                     help='Class label (conditional networks): its index, or its name where the snapshot records names'
                          ' (gen_images.py: also all, one row per class)'),
        click.option('--device', default='auto', show_default=True,
                     help='auto (CUDA when available), cpu, cuda, cuda:1, ...'),
    ])


def render_options(batch_in_help: bool = True) -> Callable[[Callable], Callable]:
    """--trunc, --noise-mode, --outdir, --batch (a speed knob; gen_images.py leaves it out of --help, which
    keeps to NVIDIA's options and ours that matter, and documents it in its examples)."""
    return apply_options([
        click.option('--trunc', 'truncation_psi', type=finite_float(), default=1, show_default=True,
                     help='Truncation psi'),
        click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const',
                     show_default=True),
        click.option('--outdir', metavar='DIR', help='Where to save the output'),   # checked by the job (check_output_path)
        click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8, show_default=True,
                     hidden=not batch_in_help, help='Images per forward pass'),
    ])
