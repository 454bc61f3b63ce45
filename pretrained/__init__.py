"""Models trained here and shipped in this folder, by short name.

`--network=garments` (or the file name, with or without `.pt`) anywhere a snapshot is read resolves to the
file below; see pretrained/README.md for how each was trained and what it measures.
"""
from __future__ import annotations

import os
from typing import Optional

FOLDER = os.path.dirname(os.path.abspath(__file__))

# short name -> file in this folder
MODELS = {
    'garments': 'stylegan2-garments-64x64.pt',
}
CLASSIFIER = 'garment-classifier-64x64.pt'


def resolve_pretrained(name: str) -> Optional[str]:
    """Path of the shipped model called `name` (short name or file name), None if it names none of them."""
    for short, filename in MODELS.items():
        if name in (short, filename, os.path.splitext(filename)[0]):
            return os.path.join(FOLDER, filename)
    return None
