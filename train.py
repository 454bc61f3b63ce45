#!/usr/bin/env python3
"""Train StyleGAN3 or StyleGAN2-ADA on a folder/zip of garment images (NVIDIA's options, same defaults).

Examples:

\b
  # a minute on a laptop CPU, on the built-in synthetic garments (the README's quick start):
  python train.py --outdir=runs --cfg=stylegan2 --data=synthetic:garments --batch=8 --gamma=1 --cbase=2048 --cmax=64 --kimg=1 --metrics=none
\b
  # a day on 8 GPUs:
  python train.py --outdir=runs --cfg=stylegan3-t --data=garments-1024x1024.zip --gpus=8 --batch=32 --gamma=32 --mirror=1
\b
  # continue an interrupted run exactly where it stopped (with all its options; --kimg, --tick,
  # --snap, --workers, --metrics may change):
  python train.py --outdir=runs --resume=latest
\b
  # fine-tune from a run's newest weights with other options (a new run):
  python train.py --outdir=runs --resume=runs/00000-... --transfer=1 --cfg=stylegan2 --data=... --batch=32 --gamma=0.1
"""
from __future__ import annotations

import signal
import sys


def _abort(signum, frame):   # Ctrl-C before training starts: no traceback from the middle of an import
    print('Aborted!', file=sys.stderr)
    sys.exit(130)


if __name__ == '__main__':   # not in spawned training processes, which start deaf to Ctrl-C
    signal.signal(signal.SIGINT, _abort)

import dataclasses
import json

import click
from click.core import ParameterSource
import torch

from generation.seeds import MAX_SEED
from metrics.api import TrainingMetrics
from torch_utils.cli import finite_float, run
from training.launch import cpu_cores, cpu_processes_notice, launch
from training.run_dir import open_run_dir
from training.run_plan import Plan, TrainArgs, finished_notice, plan_run, run_summary
from training.stop import StopFlag


@click.command(help=__doc__)
@click.option('--outdir', required=True, metavar='DIR', help='Where to save the results')
@click.option('--cfg', type=click.Choice(['stylegan3-t', 'stylegan3-r', 'stylegan2']), help='Base configuration')
@click.option('--data', metavar='[ZIP|DIR|synthetic:garments]', help='Training data')
@click.option('--gpus', type=click.IntRange(min=1), default=1, show_default=True, help='Processes (GPUs; CPU processes without CUDA)')
@click.option('--batch', type=click.IntRange(min=1), help='Total batch size')
@click.option('--gamma', type=finite_float(min=0), help='R1 regularization weight')
@click.option('--cond', type=bool, default=False, show_default=True, help='Train conditional model')
@click.option('--mirror', type=bool, default=False, show_default=True, help='Enable dataset x-flips')
@click.option('--aug', type=click.Choice(['noaug', 'ada', 'fixed']), default='ada', show_default=True, help='Augmentation mode')
@click.option('--augpipe', default='bgc', show_default=True, help='Augmentation pipeline (blit, geom, color, filter, noise, cutout, bg, bgc, bgcf, bgcfn, bgcfnc)')
@click.option('--resume', metavar='[PATH|URL|RUN_DIR|latest|garments]', help='Resume: our snapshot or run dir continues exactly; an NVIDIA pickle, URL or pretrained/ model transfers weights')
@click.option('--transfer', type=bool, default=False, show_default=True,
              help='With --resume: a new run with these options from its weights (NVIDIA\'s --resume), not an exact continuation')
@click.option('--freezed', type=click.IntRange(min=0), default=0, show_default=True, help='Freeze first layers of D')
@click.option('--p', type=finite_float(min=0, max=1), default=0.2, show_default=True, help='Probability for --aug=fixed')
@click.option('--target', type=finite_float(min=0, max=1), default=0.6, show_default=True, help='Target value for --aug=ada')
@click.option('--batch-gpu', type=click.IntRange(min=1), help='Limit batch size per GPU (gradient accumulation)')
@click.option('--cbase', type=click.IntRange(min=1), default=32768, show_default=True, help='Capacity multiplier')
@click.option('--cmax', type=click.IntRange(min=1), default=512, show_default=True, help='Max. feature maps')
@click.option('--glr', type=finite_float(min=0), help='G learning rate  [default: varies]')
@click.option('--dlr', type=finite_float(min=0), default=0.002, show_default=True, help='D learning rate')
@click.option('--map-depth', type=click.IntRange(min=1), help='Mapping network depth  [default: varies]')
@click.option('--mbstd-group', type=click.IntRange(min=1), default=4, show_default=True, help='Minibatch std group size')
@click.option('--mbstd-by-class', type=bool, default=False, show_default=True,
              help='Conditional: minibatch std within each class (catches one-garment-per-class collapse)')
@click.option('--loss', type=click.Choice(['logistic', 'wgan-gp']), default='logistic', show_default=True, help='GAN loss')
@click.option('--desc', help='String to include in result dir name')
@click.option('--metrics', default='fid50k_full', show_default=True, metavar='[NAME|A,B,C|none]', help='Quality metrics')
@click.option('--detector-dir', metavar='DIR', help='Folder with the metrics\' inception-2015-12-05.pt / vgg16.pt  [default: $SG3C_DETECTOR_DIR or download to the cache]')
@click.option('--kimg', type=finite_float(min=0, min_open=True), default=25000, show_default=True, help='Total training duration (kimg)')
@click.option('--tick', type=finite_float(min=0, min_open=True), default=4, show_default=True, help='How often to print progress (kimg)')
@click.option('--snap', type=click.IntRange(min=1), default=50, show_default=True, help='How often to save snapshots (ticks)')
@click.option('--seed', type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help='Random seed')
@click.option('--fp32', type=bool, default=False, show_default=True, help='Disable mixed-precision')
@click.option('--nobench', type=bool, default=False, show_default=True, help='Disable cuDNN benchmarking')
@click.option('--workers', type=click.IntRange(min=0), help='DataLoader worker processes  [default: 3, at most the CPU cores per process]')
@click.option('-n', '--dry-run', is_flag=True, help='Check everything, say what the run would do, and exit')
@click.option('-v', '--verbose', is_flag=True, help='Also print every training option as JSON (as training_options.json holds them)')
def main(**kw):
    ctx = click.get_current_context()
    given = frozenset(name for name in kw if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE)
    args = TrainArgs(**kw, given=given)
    # Everything is checked here; nothing is created before it passes.
    plan = plan_run(args, check_metrics=TrainingMetrics.check)
    opts = plan.opts
    if args.verbose:
        click.echo(json.dumps(dataclasses.asdict(opts), indent=2))
    if plan.finished:
        click.echo(finished_notice(plan))
        return
    if args.dry_run:
        say_what_runs(plan, args.outdir)
        click.echo('dry run: everything checked, nothing created' +
                   ('' if args.verbose else '; --verbose prints every option as JSON'))
        return
    stop = StopFlag()   # from here on Ctrl-C ends in a snapshot
    opts.run_dir = open_run_dir(args.outdir, plan.desc, None if plan.new_run else opts.run_dir,
                                dataclasses.asdict(opts))
    say_what_runs(plan, args.outdir)   # the directory by its real name, once
    code = launch(opts, stop, TrainingMetrics.for_run)
    if code:   # stopped by Ctrl-C or SIGTERM after saving: not a finished run, for `train.py ... && next`
        sys.exit(code)


def say_what_runs(plan: Plan, outdir: str) -> None:
    click.echo(run_summary(plan, outdir))
    if plan.opts.gpus > 1 and not torch.cuda.is_available():
        click.echo(cpu_processes_notice(plan.opts.gpus, cpu_cores()))


if __name__ == '__main__':
    run(main)
