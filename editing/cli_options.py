"""The command-line options that gen_images.py, gen_video.py, style_mixing.py and directions.py share, with
NVIDIA's names, defined once, and the parsers of their values. Each decorator adds options; their values
are RenderOptions fields."""
from __future__ import annotations

import re
from typing import Callable, Sequence, Union

import click

from networks.generate import check_seed_range
from torch_utils.cli import Parsed, finite_float, parse_finite

from . import EditingError
from .edits import parse_edits


def parse_range(text: Union[str, Sequence[int]], count: int = 0) -> list[int]:
    """'0,1,4-6' -> [0, 1, 4, 5, 6]: seeds, each in 0..MAX_SEED, at most MAX_SEEDS of them with the `count` named
    before (networks.generate.RangeError, checked before a range is expanded)."""
    if not isinstance(text, str):
        values = [int(v) for v in text]
        for v in values:
            check_seed_range(v, v, count)
        return values
    values: list[int] = []
    for part in text.split(','):
        part = part.strip()
        m = re.fullmatch(r'(\d+)-(\d+)', part)
        if m:
            first, last = int(m.group(1)), int(m.group(2))
            if first > last:
                raise ValueError(f'{part!r}: the range is reversed (write {last}-{first})')
            check_seed_range(first, last, count + len(values))
            values.extend(range(first, last + 1))
        elif re.fullmatch(r'\d+', part):
            check_seed_range(int(part), int(part), count + len(values))
            values.append(int(part))
        else:
            raise ValueError(f'{part!r} is not a number or a range like 4-6')
    return values


def parse_vec2(text: Union[str, Sequence[float]]) -> tuple[float, float]:
    """'0.3,1' -> (0.3, 1.0)."""
    if not isinstance(text, str):
        a, b = text
        return float(a), float(b)
    parts = text.split(',')
    if len(parts) != 2:
        raise ValueError(f'{text!r} is not two comma-separated numbers')
    return parse_finite(parts[0], text), parse_finite(parts[1], text)


def parse_sources(text: Union[str, Sequence]) -> list[Union[int, str]]:
    """'0-2,7,shirt.npz' -> [0, 1, 2, 7, 'shirt.npz']: seeds and ranges, and paths of .npz latents files."""
    if not isinstance(text, str):
        return list(text)
    items: list[Union[int, str]] = []
    for part in text.split(','):
        part = part.strip()
        if part.lower().endswith('.npz'):
            items.append(part)
        elif part:
            try:
                items.extend(parse_range(part, count=len(items)))
            except ValueError as e:
                if 'reversed' in str(e):
                    raise EditingError(str(e)) from None
                raise EditingError(f'{part!r} is not a seed, a seed range like 4-6, or a latents .npz file') from None
    if not items:
        raise EditingError('no seeds or latents files given')
    return items


def parse_strengths(text: str) -> list[float]:
    """'-3,-1.5,0,1.5,3' -> floats."""
    try:
        values = [parse_finite(v, 'strength') for v in text.split(',') if v.strip()]
    except ValueError as e:
        raise EditingError(f'{text!r} is not a comma-separated list of numbers ({e})') from None
    if not values:
        raise EditingError('no strengths given')
    return values


SOURCES = Parsed(parse_sources, 'SEEDS|FILE.npz')
VEC2 = Parsed(parse_vec2, 'X,Y')


NETWORK_HELP = ('Snapshot: .pkl (ours or NVIDIA), .pt, run directory or folder of runs (newest snapshot), RUN_DIR:best, '
                'URL, or the short name of a model in pretrained/ (garments)')


def _apply(options: list[Callable]) -> Callable:
    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def network_options(required: bool = True) -> Callable[[Callable], Callable]:
    """--network, --class, --device."""
    return _apply([
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
    return _apply([
        click.option('--trunc', 'truncation_psi', type=finite_float(), default=1, show_default=True,
                     help='Truncation psi'),
        click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const',
                     show_default=True),
        click.option('--outdir', metavar='DIR', help='Where to save the output'),   # checked by the job (check_output_path)
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
