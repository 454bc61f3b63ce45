#!/usr/bin/env python3
"""Measure the shipped garment model against the quality bar of issue 16 (see pretrained/quality.py).

  python pretrained/evaluate.py --network=garments --baseline=RUN/network-snapshot-000001.pkl \\
      --data='synthetic:garments?n=6000&resolution=64&seed=0' --json-out=pretrained/quality.json

Prints a table and the JSON of every figure (also written to --json-out). With --truncations it measures
instead, at each truncation, the class accuracy and the samples' colours (read by the garment classifier)
against the training set's 12, adds them to --json-out as "truncations" and draws --coverage-figure:

  python pretrained/evaluate.py --truncations=0.5,0.6,0.7,0.8,0.9,1 --json-out=pretrained/quality.json \\
      --coverage-figure=docs/images/pretrained-colour-coverage.png
"""
from __future__ import annotations

import json
import os
import sys

import click

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from data.convert import ensure_dataset                                # noqa: E402
from data.synthetic_garments import CLASSES                            # noqa: E402
from torch_utils.cli import run                             # noqa: E402
from metrics.detectors import locate_detector                          # noqa: E402
from metrics.garment_classifier import load_garment_classifier         # noqa: E402
from networks.snapshot import load_generator                          # noqa: E402
from pretrained import quality                                         # noqa: E402
from torch_utils.devices import device_from_option                   # noqa: E402
from torch_utils import safe_json                                      # noqa: E402
from torch_utils.atomic import atomic_write_json                       # noqa: E402


@click.command(help=__doc__)
@click.option('--network', default='garments', show_default=True, help='Model to measure (path or short name)')
@click.option('--baseline', help='Early snapshot of the same run (1 kimg) for the FID bar')
@click.option('--data', default='synthetic:garments?n=6000&resolution=64&seed=0', show_default=True, help='Training set')
@click.option('--classifier', help='Garment classifier file  [default: pretrained/garment-classifier-64x64.pt]')
@click.option('--num-fid', type=click.IntRange(min=2), default=10000, show_default=True)
@click.option('--num-per-class', type=click.IntRange(min=1), default=1000, show_default=True)
@click.option('--seed', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--json-out', help='Also write the figures here')
@click.option('--device', default='cpu', show_default=True, help='Where to run (cpu, cuda); figures differ slightly by device')
@click.option('--truncations', metavar='PSI,PSI,...', help='Only the truncation sweep (class accuracy and colours)')
@click.option('--sweep-per-class', type=click.IntRange(min=1), default=200, show_default=True, help='Samples per class per truncation')
@click.option('--coverage-figure', metavar='PNG', help='With --truncations: draw the colour coverage here')
def main(network, baseline, data, classifier, num_fid, num_per_class, seed, json_out, device, truncations,
         sweep_per_class, coverage_figure):
    G = load_generator(network, device_from_option(device))
    clf = load_garment_classifier(classifier or locate_detector('garments'), device_from_option(device))
    if truncations:
        sweep(G, clf, [float(t) for t in truncations.split(',')], sweep_per_class, seed, json_out, coverage_figure)
        return
    base = load_generator(baseline, device) if baseline else None
    images, labels = quality.load_training_set(ensure_dataset(data))
    result = quality.evaluate(G, base, clf, images, labels, list(CLASSES), num_fid=num_fid,
                              num_per_class=num_per_class, seed=seed, log=click.echo)
    # The baseline by run and file name only: the JSON is committed, the run directory's place is this machine's.
    short = os.path.join(os.path.basename(os.path.dirname(os.path.normpath(baseline))), os.path.basename(baseline)) \
        if baseline else None
    result.update(network=network, baseline=short, data=data)
    click.echo(quality.format_table(result))
    click.echo(json.dumps(result, indent=1))
    if json_out:
        atomic_write_json(json_out, result, indent=1)


def sweep(G, clf, truncations: list[float], per_class: int, seed: int, json_out, figure) -> None:
    """--truncations: the sweep's table, added to the JSON file as "truncations", and the figure."""
    rows = quality.truncation_sweep(G, clf, list(CLASSES), truncations, num_per_class=per_class, seed=seed, log=click.echo)
    if json_out:
        result = safe_json.load_file(json_out, 1 << 20) if os.path.isfile(json_out) else {}
        result['truncations'] = dict(num_per_class=per_class, seed=seed, rows=rows)
        atomic_write_json(json_out, result, indent=1)
    if figure:
        quality.colour_coverage_figure(rows, figure)
        click.echo(f'wrote {figure}')


if __name__ == '__main__':
    run(main, expected=(ValueError,))
