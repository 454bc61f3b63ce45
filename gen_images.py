#!/usr/bin/env python3
"""Generate images from a trained network (ours or NVIDIA's): one PNG per seed or latents file, optionally
moved along latent directions.

Examples:

\b
  python gen_images.py --network=network-snapshot-000432.pkl --seeds=0-7 --outdir=out
  python gen_images.py --network=runs --seeds=0-15 --trunc=0.7 --grid --outdir=out   # newest snapshot of runs/
  python gen_images.py --network=stylegan3-r.pkl --seeds=3 --translate=0.2,0 --rotate=10 --outdir=out
  python gen_images.py --network=snapshot.pkl --export-pt=snapshot.pt
\b
  # edits (directions from directions.py; STRENGTH is in std of W along the direction)
  python gen_images.py --network=snap.pkl --directions=pca.npz --seeds=0-3 --edit=darker:2,longer_sleeves:-1@middle --outdir=out
  python gen_images.py --network=snap.pkl --directions=sup.npz --seeds=0-3 --edit=darkness --edit-strip=-3,-1.5,0,1.5,3 --outdir=out
  python gen_images.py --network=pti.pkl --directions=sup.npz --ws=inverted/shirt.npz --edit=sleeve:2 --outdir=out
\b
  --batch=N sets the images per forward pass (default 8; only speed and memory depend on it).
  Videos: gen_video.py; style mixing: style_mixing.py; finding, listing, renaming directions: directions.py.
"""
from __future__ import annotations

import importlib
from typing import Optional

import click

from editing.cli_options import SOURCES, VEC2, edit_options, network_options, render_options
from editing.commands import ImageOptions, generate_images
from editing.edits import parse_strengths
from torch_utils.cli import Parsed, finite_float, run, say

# Flags gen_images.py had before the split, kept for one release: (script they moved to, new name or None
# when the script needs no flag for it). The first group's members choose the script.
MOVED_TRIGGERS = {'--discover': 'directions', '--rename': 'directions', '--list-directions': 'directions',
                  '--mix-rows': 'style_mixing', '--mix-cols': 'style_mixing', '--video': 'gen_video'}
MOVED = {'--discover': '--discover', '--rename': '--rename', '--list-directions': '--list', '--samples': '--samples',
         '--components': '--components', '--layers': '--layers', '--labels-from': '--labels-from',
         '--discover-seed': '--seed', '--include-torgb': '--include-torgb', '--mix-rows': '--rows',
         '--mix-cols': '--cols', '--mix-styles': '--styles', '--video': None, '--frames-per-seed': '--w-frames',
         '--kind': '--kind', '--loop': '--loop', '--no-loop': '--no-loop', '--fps': '--fps'}
MOVED_FLAGS = {'--list-directions', '--include-torgb', '--video', '--loop', '--no-loop'}


class CommandWithMovedFlags(click.Command):
    """gen_images.py that hands the flags of its old jobs (directions, style mixing, video) to their new
    scripts, with a one-line note, instead of refusing them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names = [a.split('=', 1)[0] for a in args if a.startswith('--')]
        script = next((MOVED_TRIGGERS[n] for n in names if n in MOVED_TRIGGERS), None)
        if script is None:
            return super().parse_args(ctx, args)
        ctx.meta['moved_to'] = (script, self._translate(args, script))
        return []

    def invoke(self, ctx: click.Context):
        if 'moved_to' not in ctx.meta:
            return super().invoke(ctx)
        script, args = ctx.meta['moved_to']
        click.echo(f'note: this use of gen_images.py moved to {script}.py (python {script}.py --help); '
                   'the old flags work until the next release', err=True)
        return importlib.import_module(script).main.main(args, standalone_mode=False)

    def _translate(self, args: list[str], script: str) -> list[str]:
        """The argument list for `script`: moved flags renamed, options it has no use for left out."""
        target = importlib.import_module(script).main
        accepted = {name for p in target.params for name in p.opts + p.secondary_opts}
        flags = MOVED_FLAGS | {name for p in self.params if getattr(p, 'is_flag', False) for name in p.opts}
        out, i = [], 0
        while i < len(args):
            name, eq, value = args[i].partition('=')
            takes_value = name.startswith('--') and not eq and name not in flags and i + 1 < len(args)
            value = value if eq else (args[i + 1] if takes_value else None)
            i += 2 if takes_value else 1
            new = MOVED.get(name, name)
            if new is not None and new in accepted:
                out += [new] if value is None else [f'{new}={value}']
        return out


@click.command(cls=CommandWithMovedFlags, help=__doc__, context_settings=dict(max_content_width=120))
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
    return generate_images(ImageOptions(seeds=[s for group in seeds for s in group], **opts), log=say)


if __name__ == '__main__':
    run(main)
