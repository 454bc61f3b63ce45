"""Generation: seeds to latents to images, and the files a generating run writes (gen_images.py --seeds).

  seeds.py     seeds (and their option text) to latents to images, as NVIDIA's tools map them; class labels,
               StyleGAN3 input transforms, batched synthesis, the ranges every number is checked against
  images.py    the gen_images.py job for seeds: the opened network (networks.snapshot.open_network), the class
               check, seedNNNN.png, class rows, grids, the .pt export and the run's JSON-lines record
  options.py   the command-line options every generating script shares (--network, --class, --trunc, ...)

editing/ builds on this package (latents files, edits, mixing, directions, videos); nothing here imports it.
"""
from __future__ import annotations

from torch_utils.cli import UserError


class GenerationError(UserError, ValueError):
    """Bad seeds, options or classes for a generating run. A UserError (scripts print it as one line) and a
    ValueError (what callers of the parsers expect)."""
