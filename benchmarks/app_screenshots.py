#!/usr/bin/env python3
"""Screenshots of each tab of app.py for docs/app.md, taken by the browser test run itself
(tests/test_app_browser.py with SG3C_APP_SCREENSHOTS), so the pictures show what the tests check.

  python benchmarks/app_screenshots.py --network=pretrained/stylegan2-garments-64x64.pt --out=docs/app
  python benchmarks/app_screenshots.py --network=snapshot.pkl --directions=sup.npz

Without --directions, GANSpace components of the network are written to a temporary file for the sliders.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import click

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


@click.command(help=__doc__)
@click.option('--network', required=True, help='Snapshot to show')
@click.option('--directions', type=click.Path(exists=True, dir_okay=False), help='Directions .npz for the sliders')
@click.option('--components', type=int, default=6, show_default=True, help='GANSpace components without --directions')
@click.option('--out', default=os.path.join(REPO, 'docs', 'app'), show_default=True, help='Folder for the PNGs')
def main(network, directions, components, out):
    # Paths relative to the checkout (where the app runs), so the pictures show no paths of this machine.
    network = os.path.relpath(os.path.abspath(network), REPO)
    with tempfile.TemporaryDirectory(dir=REPO, prefix='screens-') as tmp:
        if not directions:
            from editing.directions import save_directions
            from editing.discovery import ganspace
            from networks.snapshot import load_generator
            directions = os.path.join(os.path.relpath(tmp, REPO), 'ganspace.npz')
            save_directions(os.path.join(REPO, directions),
                            ganspace(load_generator(os.path.join(REPO, network)), num_samples=5000, num_components=components))
        env = dict(os.environ, SG3C_APP_SCREENSHOTS=os.path.abspath(out), SG3C_APP_NETWORK=network,
                   SG3C_APP_DIRECTIONS=directions)
        code = subprocess.call([sys.executable, '-m', 'pytest', '-q', '-x', 'tests/test_app_browser.py'], cwd=REPO, env=env)
    if code == 0:
        print(f'screenshots in {out}: ' + ', '.join(sorted(os.listdir(out))))
    sys.exit(code)


if __name__ == '__main__':
    main()
