#!/usr/bin/env python3
"""Training speed: s/kimg for each config at 64x64 and 256x256 on the current device.

Runs train.py for a short while per config on the synthetic garments (or --data), reads sec/kimg of the
last tick from stats.jsonl and prints a table. With --nvidia-repo (a checkout of NVlabs/stylegan3; their
loop needs CUDA) the same settings are timed with NVIDIA's train.py and the ratio is printed.

  python benchmarks/train.py --res=64,256 --kimg=2 --batch=32
  python benchmarks/train.py --nvidia-repo=/path/to/stylegan3
"""
from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
import tempfile

import click

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def last_sec_per_kimg(outdir: str) -> float:
    stats = sorted(glob.glob(os.path.join(outdir, '*', 'stats.jsonl')))
    if not stats:
        return float('nan')
    lines = [json.loads(line) for line in open(stats[-1])]
    return lines[-1]['Timing/sec_per_kimg']['mean']


def run(cmd: list[str], cwd: str) -> bool:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        print(f'  failed: {" ".join(cmd[:3])} ...\n  {result.stderr.strip().splitlines()[-1] if result.stderr else ""}')
    return result.returncode == 0


@click.command()
@click.option('--configs', default='stylegan3-t,stylegan3-r,stylegan2', show_default=True)
@click.option('--res', 'resolutions', default='64,256', show_default=True, help='Resolutions (comma list)')
@click.option('--data', default=None, help='Dataset zip per resolution, with {res} in the name (default: synthetic)')
@click.option('--batch', type=int, default=32, show_default=True)
@click.option('--gpus', type=int, default=1, show_default=True)
@click.option('--kimg', type=float, default=1, show_default=True, help='Length of each timed run')
@click.option('--cbase', type=int, default=32768, show_default=True)
@click.option('--nvidia-repo', default=os.environ.get('SG3C_NVIDIA_REPO'), help='NVlabs/stylegan3 checkout to compare with')
def main(configs, resolutions, data, batch, gpus, kimg, cbase, nvidia_repo):
    rows = []
    for res in [int(r) for r in resolutions.split(',')]:
        dataset = data.format(res=res) if data else f'synthetic:garments?resolution={res}'
        for cfg in configs.split(','):
            common = [f'--cfg={cfg}', f'--gpus={gpus}', f'--batch={batch}', '--gamma=1', f'--cbase={cbase}',
                      '--metrics=none', '--snap=1000', f'--kimg={kimg}', f'--tick={kimg / 2}']
            with tempfile.TemporaryDirectory() as tmp:
                ok = run([sys.executable, os.path.join(REPO, 'train.py'), f'--outdir={tmp}', f'--data={dataset}',
                          *common], cwd=REPO)
                ours = last_sec_per_kimg(tmp) if ok else float('nan')
            theirs = float('nan')
            if nvidia_repo and data:
                with tempfile.TemporaryDirectory() as tmp:
                    nv = [c for c in common if not c.startswith(('--tick', '--kimg'))] + ['--tick=1', f'--kimg={max(int(kimg), 1)}']
                    if run([sys.executable, os.path.join(nvidia_repo, 'train.py'), f'--outdir={tmp}', f'--data={dataset}',
                            *nv], cwd=nvidia_repo):
                        theirs = last_sec_per_kimg(tmp)
            rows.append((cfg, res, ours, theirs))
            line = f'{cfg:12s} {res:5d}px  ours {ours:9.2f} s/kimg'
            if not math.isnan(theirs):
                line += f'  nvidia {theirs:9.2f} s/kimg  speed-up {theirs / ours:5.2f}x'
            print(line, flush=True)
    # NaN is not JSON: a run that failed or was not compared is null.
    print(json.dumps([dict(cfg=c, res=r, ours_sec_per_kimg=None if math.isnan(o) else o,
                           nvidia_sec_per_kimg=None if math.isnan(t) else t) for c, r, o, t in rows]))


if __name__ == '__main__':
    main()
