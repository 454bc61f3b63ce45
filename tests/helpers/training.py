"""Reading what a training run left behind: its newest run directory and a snapshot's weights."""
import os

from networks.snapshot import load_snapshot


def state_of(path):
    data = load_snapshot(path)
    return {f'{k}.{n}': t for k in ('G', 'D', 'G_ema') for n, t in data[k].state_dict().items()}


def run_dir(outdir):
    dirs = sorted(d for d in os.listdir(outdir) if os.path.isdir(os.path.join(outdir, d)))
    return os.path.join(outdir, dirs[-1])
