#!/usr/bin/env python3
"""Train the garment classifier (metrics/garment_classifier.py) on rendered synthetic garments.

  python pretrained/train_classifier.py --out=pretrained/garment-classifier-64x64.pt

Renders --num-train garments (seed --seed) and --num-val held-out ones (seed --seed + 1), trains for
--epochs, prints and stores the held-out class / colour / pattern accuracy and darkness / sleeve-length
errors in the file's `meta` and as JSON on the last line.
"""
from __future__ import annotations

import json
import os
import sys

import click

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from torch_utils.cli import run                             # noqa: E402
from metrics.garment_classifier import save_garment_classifier, train_garment_classifier  # noqa: E402


@click.command(help=__doc__)
@click.option('--out', default=os.path.join('pretrained', 'garment-classifier-64x64.pt'), show_default=True)
@click.option('--num-train', type=click.IntRange(min=1), default=6000, show_default=True)
@click.option('--num-val', type=click.IntRange(min=1), default=1200, show_default=True)
@click.option('--epochs', type=click.IntRange(min=1), default=40, show_default=True)
@click.option('--width', type=click.IntRange(min=1), default=16, show_default=True, help='Feature maps of the first layer')
@click.option('--batch', type=click.IntRange(min=1), default=64, show_default=True)
@click.option('--lr', type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True)
@click.option('--seed', type=click.IntRange(min=0), default=100, show_default=True)
def main(out, num_train, num_val, epochs, width, batch, lr, seed):
    model, meta = train_garment_classifier(num_train=num_train, num_val=num_val, epochs=epochs, width=width, batch=batch,
                                           lr=lr, seed=seed, log=click.echo)
    save_garment_classifier(out, model, meta)
    click.echo(f'wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB)')
    click.echo(json.dumps(meta))


if __name__ == '__main__':
    run(main, expected=(ValueError,))
