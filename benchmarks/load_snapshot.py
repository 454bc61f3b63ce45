"""How long loading a snapshot takes, for two (or more) checkouts side by side: the shipped model and NVIDIA's
pickles, in fresh processes that alternate between the checkouts, so that a shared machine's load falls on all
of them alike.

    python benchmarks/load_snapshot.py --code=../old-checkout --code=. [--rounds=6] [--loads=5] [FILES...]

Each round starts one process per checkout (in turn); it loads every file once to warm up, then `--loads` times,
and reports the fastest of those per file. The table gives, per file and checkout, the median over the rounds of
those fastest times, and the ratio to the first checkout.
"""
from __future__ import annotations

import glob
import json
import os
import statistics
import subprocess
import sys

import click

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, '..', 'shared', 'fixtures', 'official')
CHILD = """
import json, sys, time
from networks.snapshot import load_snapshot
import training.augment   # registers the augment pipe, as the training code does
files, loads = json.loads(sys.argv[1]), int(sys.argv[2])
best = {}
for path in files:
    load_snapshot(path)
    times = []
    for _ in range(loads):
        start = time.perf_counter()
        load_snapshot(path)
        times.append(time.perf_counter() - start)
    best[path] = min(times)
print(json.dumps(best))
"""


def default_files() -> list[str]:
    return [os.path.join(REPO, 'pretrained', 'stylegan2-garments-64x64.pt')] + \
        sorted(glob.glob(os.path.join(FIXTURES, '*.pkl')))


@click.command()
@click.option('--code', 'codes', multiple=True, required=True, help='A checkout to time (repeat; the first is the base)')
@click.option('--rounds', type=click.IntRange(min=1), default=6, show_default=True)
@click.option('--loads', type=click.IntRange(min=1), default=5, show_default=True)
@click.argument('files', nargs=-1)
def main(codes: tuple, rounds: int, loads: int, files: tuple) -> None:
    files = list(files) or default_files()
    times: dict = {code: {f: [] for f in files} for code in codes}
    for _ in range(rounds):
        for code in codes:
            env = dict(os.environ, PYTHONPATH=os.path.abspath(code), OMP_NUM_THREADS='1')
            out = subprocess.run([sys.executable, '-c', CHILD, json.dumps(files), str(loads)], env=env,
                                 cwd=os.path.abspath(code), capture_output=True, text=True, check=True).stdout
            for path, seconds in json.loads(out.splitlines()[-1]).items():
                times[code][path].append(seconds)
    print(f'{"file":44s}' + ''.join(f'{os.path.basename(os.path.abspath(c))[:14]:>16s}' for c in codes) + '   ratio')
    for f in files:
        medians = [statistics.median(times[c][f]) * 1000 for c in codes]
        print(f'{os.path.basename(f):44s}' + ''.join(f'{m:13.1f} ms' for m in medians)
              + ''.join(f'  {m / medians[0]:.3f}' for m in medians[1:]))


if __name__ == '__main__':
    main()
