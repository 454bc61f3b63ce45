"""Models trained here and shipped in this folder, by short name.

`--network=garments` (or the file name, with or without `.pt`) anywhere a snapshot is read resolves to the
file below: every script hands `shipped_models()` to networks.snapshot.resolve_source, which sits below
this package and so cannot import it. See pretrained/README.md for how each was trained and what it measures.
"""
from __future__ import annotations

import os

FOLDER = os.path.dirname(os.path.abspath(__file__))

# short name -> file in this folder
MODELS = {
    'garments': 'stylegan2-garments-64x64.pt',
}
CLASSIFIER = 'garment-classifier-64x64.pt'


def shipped_models() -> dict[str, str]:
    """Short name -> path of each shipped model (the table resolve_source takes)."""
    return {name: os.path.join(FOLDER, filename) for name, filename in MODELS.items()}
