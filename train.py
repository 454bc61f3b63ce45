#!/usr/bin/env python3
"""Train StyleGAN3 or StyleGAN2-ADA on a folder/zip of garment images (NVIDIA's options, same defaults).

Examples:

\b
  # minutes on a laptop CPU, on the built-in synthetic garments:
  python train.py --outdir=runs --cfg=stylegan2 --data=synthetic:garments --gpus=1 --batch=8 --gamma=1 \\
      --cbase=2048 --cmax=64 --kimg=1 --tick=0.5 --snap=1 --metrics=none --workers=1
\b
  # a day on 8 GPUs:
  python train.py --outdir=runs --cfg=stylegan3-t --data=garments-1024x1024.zip --gpus=8 --batch=32 --gamma=32 --mirror=1
\b
  # continue an interrupted run exactly where it stopped:
  python train.py --outdir=runs --resume=latest ...(same options)
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile

import click
import torch

from networks.snapshot import SnapshotError, find_latest_snapshot
from torch_utils import distributed
from training import training_loop as tl
from training.dataset import DatasetError
from training.dataset_convert import ensure_dataset


def parse_comma_list(value):
    if isinstance(value, list):
        return value
    if value is None or value.lower() in ('none', ''):
        return []
    return [v.strip() for v in value.split(',') if v.strip()]


def next_run_dir(outdir: str, desc: str) -> str:
    ids = [int(m.group(1)) for name in (os.listdir(outdir) if os.path.isdir(outdir) else [])
           if (m := re.match(r'^(\d+)-', name))]
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')


def _process(rank: int, opts: tl.TrainingOptions, world: int, init_file: str) -> None:
    if distributed.launched_by_torchrun():
        rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    else:
        local_rank = rank
    distributed.init(rank, world, init_file)
    try:
        tl.training_loop(opts, rank=rank, device=distributed.device_for(local_rank))
    finally:
        distributed.shutdown()


def launch(opts: tl.TrainingOptions) -> None:
    if distributed.launched_by_torchrun():
        _process(0, opts, int(os.environ['WORLD_SIZE']), '')
        return
    if opts.gpus == 1:
        _process(0, opts, 1, '')
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_process, args=(opts, opts.gpus, os.path.join(tmp, 'init')), nprocs=opts.gpus)


@click.command(help=__doc__)
@click.option('--outdir', required=True, metavar='DIR', help='Where to save the results')
@click.option('--cfg', type=click.Choice(['stylegan3-t', 'stylegan3-r', 'stylegan2']), help='Base configuration')
@click.option('--data', metavar='[ZIP|DIR|synthetic:garments]', help='Training data')
@click.option('--gpus', type=click.IntRange(min=1), default=1, show_default=True, help='Processes (GPUs; CPU processes without CUDA)')
@click.option('--batch', type=click.IntRange(min=1), help='Total batch size')
@click.option('--gamma', type=click.FloatRange(min=0), help='R1 regularization weight')
@click.option('--cond', type=bool, default=False, show_default=True, help='Train conditional model')
@click.option('--mirror', type=bool, default=False, show_default=True, help='Enable dataset x-flips')
@click.option('--aug', type=click.Choice(['noaug', 'ada', 'fixed']), default='ada', show_default=True, help='Augmentation mode')
@click.option('--augpipe', default='bgc', show_default=True, help='Augmentation pipeline (blit, geom, color, filter, noise, cutout, bg, bgc, bgcf, bgcfn, bgcfnc)')
@click.option('--resume', metavar='[PATH|URL|RUN_DIR|latest]', help='Resume: our snapshot or run dir continues exactly; an NVIDIA pickle transfers weights')
@click.option('--freezed', type=click.IntRange(min=0), default=0, show_default=True, help='Freeze first layers of D')
@click.option('--p', type=click.FloatRange(min=0, max=1), default=0.2, show_default=True, help='Probability for --aug=fixed')
@click.option('--target', type=click.FloatRange(min=0, max=1), default=0.6, show_default=True, help='Target value for --aug=ada')
@click.option('--batch-gpu', type=click.IntRange(min=1), help='Limit batch size per GPU (gradient accumulation)')
@click.option('--cbase', type=click.IntRange(min=1), default=32768, show_default=True, help='Capacity multiplier')
@click.option('--cmax', type=click.IntRange(min=1), default=512, show_default=True, help='Max. feature maps')
@click.option('--glr', type=click.FloatRange(min=0), help='G learning rate  [default: varies]')
@click.option('--dlr', type=click.FloatRange(min=0), default=0.002, show_default=True, help='D learning rate')
@click.option('--map-depth', type=click.IntRange(min=1), help='Mapping network depth  [default: varies]')
@click.option('--mbstd-group', type=click.IntRange(min=1), default=4, show_default=True, help='Minibatch std group size')
@click.option('--loss', type=click.Choice(['logistic', 'wgan-gp']), default='logistic', show_default=True, help='GAN loss')
@click.option('--desc', help='String to include in result dir name')
@click.option('--metrics', default='fid50k_full', show_default=True, metavar='[NAME|A,B,C|none]', help='Quality metrics')
@click.option('--detector-dir', metavar='DIR', help='Folder with the metrics\' inception-2015-12-05.pt / vgg16.pt  [default: $SG3C_DETECTOR_DIR or download to the cache]')
@click.option('--kimg', type=click.FloatRange(min=0, min_open=True), default=25000, show_default=True, help='Total training duration (kimg)')
@click.option('--tick', type=click.FloatRange(min=0, min_open=True), default=4, show_default=True, help='How often to print progress (kimg)')
@click.option('--snap', type=click.IntRange(min=1), default=50, show_default=True, help='How often to save snapshots (ticks)')
@click.option('--seed', type=click.IntRange(min=0), default=0, show_default=True, help='Random seed')
@click.option('--fp32', type=bool, default=False, show_default=True, help='Disable mixed-precision')
@click.option('--nobench', type=bool, default=False, show_default=True, help='Disable cuDNN benchmarking')
@click.option('--workers', type=click.IntRange(min=0), default=3, show_default=True, help='DataLoader worker processes')
@click.option('-n', '--dry-run', is_flag=True, help='Print training options and exit')
def main(**kw):
    try:
        opts = make_options(kw)
    except (ValueError, SnapshotError, DatasetError, FileNotFoundError) as e:
        raise click.ClickException(str(e))
    click.echo(json.dumps(dataclasses.asdict(opts), indent=2))
    if kw['dry_run']:
        click.echo('dry run: exiting')
        return
    os.makedirs(opts.run_dir, exist_ok=True)
    with open(os.path.join(opts.run_dir, 'training_options.json'), 'w') as f:
        json.dump(dataclasses.asdict(opts), f, indent=2)
    click.echo(f'run directory: {opts.run_dir}')
    try:
        launch(opts)
    except (ValueError, SnapshotError, DatasetError) as e:
        raise click.ClickException(str(e))


def make_options(kw: dict) -> tl.TrainingOptions:
    """Command-line options -> TrainingOptions, with NVIDIA's per-config defaults and the resume rules."""
    opts = _make_options(kw)
    if opts.metrics:
        from metrics.registry import is_valid_metric
        bad = [m for m in opts.metrics if not is_valid_metric(m)]
        if bad:
            raise ValueError(f'unknown metric(s) {", ".join(bad)} (see calc_metrics.py --help)')
        # Find (or download) the feature networks now, not after the first hours of training.
        from metrics.detectors import locate_detector
        from metrics.errors import DetectorError
        from metrics.registry import get_metric
        for name in sorted({d for m in opts.metrics for d in get_metric(m).detectors}):
            try:
                locate_detector(name, opts.detector_dir)
            except DetectorError as e:
                raise ValueError(f'--metrics={",".join(opts.metrics)}: {e} (or train with --metrics=none)') from None
    return opts


def _make_options(kw: dict) -> tl.TrainingOptions:
    metrics = parse_comma_list(kw['metrics'])

    resume = kw['resume']
    if resume:
        if not re.match(r'^https?://', resume):
            found = find_latest_snapshot(kw['outdir'] if resume == 'latest' else resume)
            if found is None:
                raise FileNotFoundError(f'{resume}: no network-snapshot-*.pkl to resume from')
            resume = found
        from networks.snapshot import load_snapshot
        state = load_snapshot(resume).get('training_state')
        if state is not None:   # exact resume: the run's own options, continued in its own directory
            saved = dict(state['options'])
            for key in ('kimg', 'tick', 'snap', 'workers', 'nobench'):
                if kw.get(key) is not None:
                    saved[key] = kw[key]
            if kw['metrics'] != 'fid50k_full':
                saved['metrics'] = metrics
            if kw['detector_dir'] is not None:
                saved['detector_dir'] = kw['detector_dir']
            saved.update(resume=resume, run_dir=os.path.dirname(os.path.abspath(resume)))
            return tl.TrainingOptions(**saved)

    for name in ('cfg', 'data', 'batch', 'gamma'):
        if kw[name] is None:
            raise ValueError(f'--{name} is required (unless resuming a run of this toolkit)')
    gpus, batch = kw['gpus'], kw['batch']
    if batch % gpus:
        raise ValueError('--batch must be a multiple of --gpus')
    data = ensure_dataset(kw['data'])
    data_name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]
    desc = f'{kw["cfg"]}-{data_name}-gpus{gpus}-batch{batch}-gamma{kw["gamma"]:g}' + (f'-{kw["desc"]}' if kw['desc'] else '')
    names = {f.name for f in dataclasses.fields(tl.TrainingOptions)}
    options = {k: v for k, v in kw.items() if k in names}
    options.update(tl.config_defaults(kw['cfg'], batch, resuming=bool(resume)))
    options.update(data=data, metrics=metrics, resume=resume, batch_gpu=kw['batch_gpu'] or batch // gpus,
                   run_dir=next_run_dir(kw['outdir'], desc))
    return tl.TrainingOptions(**options)


if __name__ == '__main__':
    main()
