"""Latent editing for gen_video.py, style_mixing.py, directions.py and gen_images.py's edits, one stage per
module, on top of generation/ (seeds to images, the options every rendering script shares, the run's session):

  latents.py      what to render: seeds (mapped as NVIDIA's tools do), latents files from invert.py, classes
  edits.py        how to change it: edits along named directions, layer ranges and presets, style mixing
  directions.py   the directions file, which discovery.py (with the labellers of labels.py) fills
  render.py       how to write it: images, edit strips, style-mixing grids, interpolation videos
  commands.py     the jobs that run those stages in order, one per script (cli_options.py: --edit and friends)

What every stage shares lives here: the package's error type and its reader of .npz files.
"""
from __future__ import annotations

import os
from typing import Callable, TypeVar, Union

from generation import GenerationError
from torch_utils.safe_npz import NpzArchive, NpzError

T = TypeVar('T')


class EditingError(GenerationError):
    """Bad directions files, latents files, edit specs, layer ranges. A UserError (scripts print it as one
    line) and a ValueError (what callers of the parsers expect), as generation's errors are."""


def read_npz(path: Union[str, os.PathLike], kind: str, read: Callable[[NpzArchive], T]) -> T:
    """`read(archive)` of one of the toolkit's plain-array .npz files (directions, latents), with any failure
    (missing file, bad archive, refused arrays, missing keys: `read` raises EditingError or NpzError with its
    reason) turned into an EditingError `'<path>: <reason>'`; `kind` names the file type in the message.

    Arrays are read through torch_utils.safe_npz, never np.load: each is checked from its header (dtype kind,
    shape, size) before its bytes are read, and nothing in the file can be unpickled."""
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise EditingError(f'{path}: no such file') from None
    except OSError as e:
        raise EditingError(f'{path}: cannot read ({e.strerror or e})') from None
    if magic != b'PK\x03\x04':
        raise EditingError(f'{path}: not a {kind} .npz archive (a zip of arrays, as numpy.savez writes)')
    try:
        with NpzArchive(path) as archive:
            return read(archive)
    except (EditingError, NpzError) as e:
        raise EditingError(f'{path}: {e}') from None
