#!/usr/bin/env python3
"""Turn a folder of photos, a zip, (Fashion-)MNIST, CIFAR-10, a StyleGAN2-TF TFRecord dataset or the built-in
synthetic garments into a training set (NVIDIA's layout; see docs/datasets.md)."""
from __future__ import annotations

import re
import sys
from typing import Optional

import click

from data.colour import COLOUR, COLOUR_HELP
from data.convert import TRANSFORMS, convert
from torch_utils.atomic import atomic_write_json
from torch_utils.cli import check_output_path, run

# Archive suffixes people reach for; only .zip is written, anything else would silently become a folder.
NOT_WRITTEN = ('.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tbz2', '.tar.xz', '.txz', '.gz', '.bz2', '.xz', '.7z', '.rar',
               '.zst', '.tfrecords')


def _resolution(ctx, param, value: Optional[str]):
    if value is None:
        return None
    m = re.fullmatch(r'(\d+)(?:x(\d+))?', value.strip())
    if not m:
        raise click.BadParameter(f'{value!r}: expected WxH, e.g. 256x256 (or one number for a square)')
    width = int(m.group(1))
    height = int(m.group(2) or width)
    if width < 1 or height < 1:
        raise click.BadParameter(f'{value!r}: width and height must be positive')
    return width, height


def check_dest(dest: str) -> None:
    if not dest:
        raise click.BadParameter('must not be empty', param_hint='--dest')
    suffix = next((s for s in NOT_WRITTEN if dest.lower().rstrip('/').endswith(s)), None)
    if suffix:
        raise click.BadParameter(f'{dest!r}: {suffix} archives are not written; give a .zip (recommended) or a '
                                 f'folder', param_hint='--dest')


def check_output_size(resolution: Optional[tuple[int, int]], transform: Optional[str]) -> None:
    """Training needs square power-of-two images: refuse a --resolution that cannot give one before any
    image is read (center-crop-wide letterboxes WxH onto a max(W, H) square)."""
    if resolution is None:
        return
    width, height = resolution
    side = max(width, height) if transform == 'center-crop-wide' else width
    if (width != height and transform != 'center-crop-wide') or side & (side - 1):
        hint = ' (or --transform=center-crop-wide onto a square)' if width != height else ''
        raise click.BadParameter(f'{width}x{height}: training needs square power-of-two images, e.g. 256x256{hint}',
                                 param_hint='--resolution')


@click.command(context_settings=dict(max_content_width=110))
@click.option('--source', required=True, metavar='PATH|SPEC', help='Input: folder, zip, idx file, CIFAR tarball, '
              'TFRecord folder/file, or synthetic:garments[?n=..&resolution=..&seed=..&classes=..]')
@click.option('--dest', required=True, metavar='PATH', help='Output .zip (recommended) or folder of PNGs')
@click.option('--overwrite', is_flag=True, help='Replace an existing --dest file (once the new set is complete)')
@click.option('--resolution', callback=_resolution, metavar='WxH', help='Output size, e.g. 256x256')
@click.option('--transform', type=click.Choice(TRANSFORMS), help='How to reach the output aspect ratio '
              '(default: plain resize)')
@click.option('--background', type=COLOUR, default='auto', show_default=True,
              help=f'Padding colour for --transform=pad: {COLOUR_HELP}')
@click.option('--max-images', type=click.IntRange(min=1), help='Write at most this many images')
@click.option('--min-size', type=click.IntRange(min=1), help='Skip images whose shorter side is below this '
              '[default: a quarter of the output size]')
@click.option('--folder-labels', is_flag=True, help='Class labels from first-level sub-folder names')
@click.option('--labels', 'labels_path', type=click.Path(exists=True, dir_okay=False), metavar='JSON',
              help='Take labels (and attributes) from this dataset.json, keyed by source file name')
@click.option('--drop-duplicates', is_flag=True, help='Leave out images whose pixels repeat an earlier image')
@click.option('--png-compression', 'compress_level', type=click.IntRange(0, 9), default=1, show_default=True,
              help='PNG compression level: 0 stores raw pixels (NVIDIA\'s choice; faster to decode), '
              '1 is many times smaller on flat backgrounds')
@click.option('--report', 'report_path', metavar='JSON', help='Also write the conversion report here as JSON')
@click.option('--quiet', is_flag=True, help='No progress bar or per-file messages')
def main(source: str, dest: str, resolution: Optional[tuple[int, int]], transform: Optional[str],
         report_path: Optional[str], quiet: bool, **options) -> None:
    """Convert an image source into a training set for train.py.

    \b
    Sources (--source):
      photos/                        all images below the folder (recursive); photos/dataset.json labels are kept
      photos.zip                     the same inside a zip; NVIDIA-made dataset zips too
      train-images-idx3-ubyte.gz     (Fashion-)MNIST, with labels from train-labels-idx1-ubyte[.gz]
      fashion-mnist/                 a folder holding such idx files (the training split is taken)
      cifar-10-python.tar.gz         CIFAR-10 (python version), training batches with labels
      ffhq/ or ffhq-r10.tfrecords    StyleGAN2-TF dataset: highest-resolution *-rNN.tfrecords, labels *-rxx.labels
      synthetic:garments             procedural flat garments on white with known attributes; options after '?':
                                     n (1000), resolution (64, or --resolution), seed (0),
                                     classes (comma list of t-shirt,long-sleeve,dress,trousers,skirt,jacket)
                                     e.g. synthetic:garments?n=2000&resolution=128&seed=1

    \b
    Output (--dest): a .zip (stored, not compressed) or a folder, holding
      00000/img00000000.png, 00000/img00000001.png, ...
      dataset.json  {"labels": [["00000/img00000000.png", 3], ...] or null,
                     "attributes": [...] (synthetic garments), "class_names": [...]}

    \b
    Transforms (--transform, with --resolution):
      (none)            resize to WxH
      center-crop       centred crop to the aspect of WxH, then resize
      center-crop-wide  the same, then letterboxed onto a square canvas (e.g. --resolution=512x384)
      pad               pad to the aspect of WxH on the background colour, then resize: keeps whole garments
                        (sleeves are never cropped); the background is estimated per image or set by --background

    Greyscale sources stay greyscale; a mix of greyscale and colour becomes colour; transparency is composited
    on white. Unreadable, truncated, too-small and non-image files are reported and skipped, exact duplicates
    are reported, and a summary closes the run. The output appears only when complete; an existing --dest file
    is replaced only with --overwrite, and temporary files a killed run left beside --dest are removed.

    \b
    Examples:
      python dataset_tool.py --source=photos/ --dest=garments-256.zip --resolution=256x256 --transform=pad
      python dataset_tool.py --source=synthetic:garments?n=1000 --dest=synthetic-64.zip --resolution=64x64
      python dataset_tool.py --source=fashion-mnist/ --dest=fmnist-32.zip --resolution=32x32 --transform=pad
    """
    check_dest(dest)
    check_output_path(dest, '--dest', folder=not dest.lower().endswith('.zip'))
    if transform in ('center-crop', 'center-crop-wide') and resolution is None:
        raise click.BadParameter(f'--transform={transform} needs --resolution=WxH', param_hint='--transform')
    check_output_size(resolution, transform)
    try:   # failures a user can cause are DatasetError/OSError: one line naming the file (torch_utils.cli.run)
        report = convert(source, dest, resolution=resolution, transform=transform, progress=not quiet, **options)
    except KeyboardInterrupt:
        click.echo('interrupted; nothing was written', err=True)
        sys.exit(130)
    if report_path:
        atomic_write_json(report_path, report.to_dict())
    click.echo(report.summary())


if __name__ == '__main__':
    run(main)
