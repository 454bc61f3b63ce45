"""Colours as the options spell them (`--background` of dataset_tool.py and invert.py), and a colour made to fit
an image's channels."""
from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np

from torch_utils.cli import Parsed

NAMED = {'white': (255, 255, 255), 'black': (0, 0, 0), 'grey': (128, 128, 128), 'gray': (128, 128, 128)}
COLOUR_HELP = 'auto (estimated from each image\'s border), white, black, grey, #rrggbb, r,g,b or one grey level 0-255'


def parse_colour(text: str) -> Optional[tuple[int, int, int]]:
    """'auto' -> None (estimate it per image); 'white', '#f0f0f0', '240,240,240' or the grey level '240' -> an RGB
    triple. Anything else raises ValueError."""
    text = text.strip().lower()
    if text == 'auto':
        return None
    if text in NAMED:
        return NAMED[text]
    m = re.fullmatch(r'#?([0-9a-f]{6})', text)
    if m:
        return tuple(int(m.group(1)[i:i + 2], 16) for i in (0, 2, 4))
    m = re.fullmatch(r'([0-9]{1,3})(?:\s*,\s*([0-9]{1,3})\s*,\s*([0-9]{1,3}))?', text)
    values = tuple(int(v) for v in m.groups() if v is not None) if m else ()
    if values and max(values) <= 255:
        return values * 3 if len(values) == 1 else values
    raise ValueError(f'cannot read colour {text!r} (use {COLOUR_HELP})')


COLOUR = Parsed(parse_colour, 'auto|white|#RRGGBB|R,G,B')   # the click type of every colour option


def fill_for(colour: Sequence[int], channels: int) -> np.ndarray:
    """`colour` as uint8 fill values for an image of `channels` channels: as given where the counts match, else
    its mean as a grey level (an RGB background for a greyscale image)."""
    colour = np.asarray(colour, dtype=np.uint8)
    return colour if len(colour) == channels else np.full(channels, colour.mean().round(), np.uint8)
