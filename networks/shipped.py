"""The models trained here and shipped in pretrained/, by short name: the table that `--network=garments`
(anywhere a snapshot is read: networks.snapshot.resolve_source) looks in.

The table sits beside the loader, below every package that reads a snapshot; the files themselves and the
tooling that makes and measures them stay in pretrained/ (see pretrained/README.md for how each was trained
and what it measures). The folder is found from this checkout's layout, so nothing here imports pretrained/.
"""
from __future__ import annotations

import os

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'pretrained')

# short name -> file in FOLDER
MODELS = {
    'garments': 'stylegan2-garments-64x64.pt',
}


def shipped_models() -> dict[str, str]:
    """Short name -> path of each shipped model."""
    return {name: os.path.join(FOLDER, filename) for name, filename in MODELS.items()}
