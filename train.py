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
import os
import tempfile
from typing import Any, Optional

import click
from click.core import ParameterSource
import torch

from data.convert import ensure_dataset
from generation.seeds import MAX_SEED
from metrics.api import TrainingMetrics
from torch_utils import distributed, safe_json
from torch_utils.cli import EXPECTED, UserError, check_output_path, debug_enabled, describe, finite_float, run
from training import training_loop as tl
from training.options import TrainingOptions, config_defaults
from training.resume import check_training_state, saved_options
from training.run_dir import OPTIONS_FILE, is_run_dir, latest_run_dir, list_snapshots, open_run_dir
from training.stop import STOP_SIGNALS, StopFlag, abort

# Options that may change when a run continues exactly; any other option given with --resume must
# match the run's own value, since it would change what the run computes.
SAFE_ON_RESUME = ('kimg', 'tick', 'snap', 'workers', 'metrics', 'detector_dir', 'nobench')
NOT_OPTIONS = ('outdir', 'resume', 'transfer', 'dry_run', 'verbose')
OPTIONS_LIMIT = 1 << 20   # training_options.json holds a few dozen options
UNNUMBERED = 'NNNNN-'     # a new run's directory until open_run_dir claims its number


def parse_comma_list(value):
    if isinstance(value, list):
        return value
    if value is None or value.lower() in ('none', ''):
        return []
    return [v.strip() for v in value.split(',') if v.strip()]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(gpus: int) -> int:
    """NVIDIA's 3 data workers per process, but never more than the cores each process has without CUDA."""
    return 3 if torch.cuda.is_available() else min(3, max(cpu_cores() // gpus, 1))


# ------------------------------------------------------------------------------------------------
# Processes.

def _process(rank: int, opts: TrainingOptions, world: int, init_file: str, external_stop: Any = None,
             parent_pid: int = 0) -> int:
    """One training process spawned by `launch` (or started by torchrun); errors end it with one line.
    Returns the exit code of a stop request (StopFlag.exit_code), 0 when the run finished."""
    stop = StopFlag(external_stop)   # first: a Ctrl-C from now on finishes the step and saves
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)   # blocked by `launch` while starting
    if external_stop is not None:
        distributed.stop_with_parent(parent_pid)
    if distributed.launched_by_torchrun():
        rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    else:
        local_rank = rank
    try:
        distributed.init(rank, world, init_file)
        device = distributed.device_for(local_rank)
        if device.type == 'cpu':
            torch.set_num_threads(max(cpu_cores() // world, 1))   # processes share the cores, not each all of them
        metrics = TrainingMetrics.for_run(opts, rank, device)
        tl.training_loop(opts, rank=rank, device=device, stop=stop, metrics=metrics)
        if distributed.launched_by_torchrun():
            distributed.barrier()   # then leave the group (finally) and end as a script ends
        else:
            distributed.end_spawned_rank()
        return stop.exit_code
    except EXPECTED as e:
        if rank == 0:
            if debug_enabled():
                import traceback
                traceback.print_exc()
            print(f'error: {describe(e)}', file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:   # a Ctrl-C while the process starts, before its StopFlag hears it
        sys.exit(130)
    finally:
        distributed.shutdown()


def launch(opts: TrainingOptions, stop: StopFlag) -> int:
    """Train in this process, in `opts.gpus` spawned ones, or as a process of torchrun; returns the exit
    code: 0 for a finished run, 128 + the signal for one stopped with a snapshot (130: Ctrl-C)."""
    if distributed.launched_by_torchrun():
        stop.restore()
        return _process(0, opts, int(os.environ['WORLD_SIZE']), '')
    if opts.gpus == 1:
        device = distributed.device_for(0)
        tl.training_loop(opts, device=device, stop=stop, metrics=TrainingMetrics.for_run(opts, 0, device))
        return stop.exit_code
    context = torch.multiprocessing.get_context('spawn')
    external_stop = context.Event()
    with tempfile.TemporaryDirectory() as tmp:
        # Ctrl-C and SIGTERM are blocked while the children start (the signal mask survives exec) and
        # unblocked by each child once its StopFlag is set up, so a signal at any moment reaches every
        # process as one request to stop; none dies half-started. This process passes them on too (the
        # event): a terminal's Ctrl-C reaches the whole group, but `kill PID` (a scheduler, a cloud
        # preemption) only this one. A launcher killed outright takes the children with it (stop_with_parent).
        def forward(signum, frame):
            if stop.requested and signum == signal.SIGINT:   # a second Ctrl-C: every rank aborts too
                abort()
            stop.note(signum)
            external_stop.set()
        previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
        if stop.requested:   # a signal came while this process was setting up
            external_stop.set()
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                processes = torch.multiprocessing.start_processes(
                    _process, args=(opts, opts.gpus, os.path.join(tmp, 'init'), external_stop, os.getpid()),
                    nprocs=opts.gpus, join=False, start_method='spawn')
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            while not processes.join():
                pass
        except torch.multiprocessing.ProcessExitedException as e:
            raise click.exceptions.Exit(130 if e.exit_code == 130 else 1)   # the process said why before it ended
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            stop.restore()
    return stop.exit_code


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
    given = {name for name in kw if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    plan = plan_run(kw, given)   # everything is checked here; nothing is created before it passes
    opts = plan.opts
    if kw['verbose']:
        click.echo(json.dumps(dataclasses.asdict(opts), indent=2))
    if plan.finished:
        click.echo(f'{opts.run_dir}: the run is finished ({plan.cur_nimg / 1000:g} kimg of --kimg={opts.kimg:g}); '
                   f'nothing to do (a larger --kimg trains on)')
        return
    if kw['dry_run']:
        click.echo(run_summary(plan, kw['outdir']))
        if opts.gpus > 1 and not torch.cuda.is_available():
            click.echo(cpu_processes_notice(opts.gpus, cpu_cores()))
        click.echo('dry run: everything checked, nothing created' +
                   ('' if kw['verbose'] else '; --verbose prints every option as JSON'))
        return
    stop = StopFlag()   # from here on Ctrl-C ends in a snapshot
    opts.run_dir = open_run_dir(kw['outdir'], plan.desc, None if plan.new_run else opts.run_dir,
                                dataclasses.asdict(opts))
    click.echo(run_summary(plan, kw['outdir']))   # the directory by its real name, once
    if opts.gpus > 1 and not torch.cuda.is_available():
        click.echo(cpu_processes_notice(opts.gpus, cpu_cores()))
    code = launch(opts, stop)
    if code:   # stopped by Ctrl-C or SIGTERM after saving: not a finished run, for `train.py ... && next`
        sys.exit(code)


def run_summary(plan: 'Plan', outdir: str) -> str:
    """Two lines on what the run does; every option is in the run's training_options.json (--verbose prints it).
    A new run's directory is numbered when it is claimed: before that (a dry run) only its name is known."""
    o = plan.opts
    claimed = not o.run_dir.startswith(os.path.join(outdir, UNNUMBERED))
    where = (f'continuing {o.run_dir} at {plan.cur_nimg / 1000:g} kimg' if not plan.new_run else
             f'new run in {o.run_dir}' if claimed else
             f'new run in {outdir} as NNNNN-{plan.desc} (the next free number, taken when it starts)')
    start = f', weights from {o.resume}' if o.transfer and o.resume else ''
    metrics = ','.join(o.metrics) or 'none'
    return (f'{where}{start}\n{o.cfg} on {o.data}: batch {o.batch} on {o.gpus} process(es), gamma {o.gamma:g}, '
            f'{o.kimg:g} kimg, tick {o.tick:g} kimg, snapshot every {o.snap} tick(s), metrics {metrics}')


def cpu_processes_notice(gpus: int, cores: int) -> str:
    share = f'{cores // gpus} cores each' if cores >= gpus else f'{gpus / cores:g} processes per core'
    return (f'no CUDA device: --gpus={gpus} starts {gpus} CPU processes sharing {cores} cores ({share}); '
            f'--gpus=1 is usually faster on CPU')


@dataclasses.dataclass
class Plan:
    opts: TrainingOptions
    new_run: bool                 # claim a new run directory (else continue opts.run_dir)
    desc: str = ''
    cur_nimg: int = 0
    finished: bool = False
    c_dim: Optional[int] = None   # of the snapshot a run continues from, which the dataset's labels must fit


def plan_run(kw: dict, given: set) -> Plan:
    """Command-line options -> what to run, checked completely (dataset, options, resume source,
    metrics) without creating anything."""
    check_output_path(kw['outdir'], '--outdir')
    plan = _plan(kw, given)
    opts = plan.opts
    dataset = tl.open_dataset(opts)
    if plan.c_dim is not None and dataset.label_dim != plan.c_dim:
        raise UserError(f'{opts.data}: its labels have {dataset.label_dim} dimensions, but the run continues a '
                        f'generator with c_dim={plan.c_dim}')
    check_metrics(opts)
    plan.finished = plan.cur_nimg >= int(opts.kimg * 1000)
    return plan


def check_metrics(opts: TrainingOptions) -> None:
    if not opts.metrics:
        return
    from metrics.registry import is_valid_metric
    bad = [m for m in opts.metrics if not is_valid_metric(m)]
    if bad:
        raise UserError(f'--metrics: unknown metric(s) {", ".join(bad)} (see calc_metrics.py --help)')
    # Find (or download) the feature networks now, not after the first hours of training.
    from metrics.detectors import locate_detector
    from metrics.errors import DetectorError
    from metrics.registry import get_metric, offline_hint
    for name in sorted({d for m in opts.metrics for d in get_metric(m).detectors}):
        try:
            locate_detector(name, opts.detector_dir)
        except DetectorError as e:
            raise UserError(f'--metrics={",".join(opts.metrics)}: {e}; {offline_hint()}, or train with '
                            f'--metrics=none') from None


def _plan(kw: dict, given: set) -> Plan:
    resume = kw['resume']
    if kw['transfer'] and not resume:
        raise UserError('--transfer=1 needs --resume (the snapshot or run whose weights start the new run)')
    if not resume:
        return new_run(kw, transfer_from=None)
    from networks.snapshot import load_snapshot, resolve_source, snapshot_file
    source = resolve_source(resume, outdir=kw['outdir'])
    if source.kind in ('latest', 'run'):
        run_dir = source.path if source.kind == 'run' and is_run_dir(source.path) else latest_run_dir(source.path)
        if run_dir is None and source.kind == 'latest':
            raise UserError(f'--resume=latest: {kw["outdir"]} holds no run to resume')
        if run_dir is None:
            raise UserError(f'{resume}: not a run directory (no {OPTIONS_FILE}) and holds no runs')
        if not kw['transfer']:
            return continue_run(run_dir, None, kw, given)
        snapshots = list_snapshots(run_dir)
        if not snapshots:
            raise UserError(f'--transfer=1: {run_dir} holds no snapshot yet')
        return new_run(kw, transfer_from=snapshots[-1])
    resume = snapshot_file(source)   # a URL is downloaded: its run goes to a new directory under --outdir either way
    if kw['transfer']:
        return new_run(kw, transfer_from=resume)
    if load_snapshot(resume).get('training_state') is None:
        return new_run(kw, transfer_from=resume, checked=True)
    if source.kind != 'url':
        return continue_run(os.path.dirname(os.path.abspath(resume)), resume, kw, given)
    plan = continue_run(None, resume, kw, given)
    plan.desc = run_desc(plan.opts.cfg, plan.opts.data, plan.opts.gpus, plan.opts.batch, plan.opts.gamma, kw['desc'])
    plan.opts.run_dir = os.path.join(kw['outdir'], UNNUMBERED + plan.desc)
    return plan


def run_desc(cfg: str, data: str, gpus: int, batch: int, gamma: float, extra: Optional[str]) -> str:
    data_name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]
    return f'{cfg}-{data_name}-gpus{gpus}-batch{batch}-gamma{gamma:g}' + (f'-{extra}' if extra else '')


def new_run(kw: dict, transfer_from: Optional[str], checked: bool = False) -> Plan:
    """A fresh run (or transfer learning from another snapshot's weights) in a new run directory.
    `checked`: the caller has already loaded `transfer_from` once, so it is known to be readable."""
    for name in ('cfg', 'data', 'batch', 'gamma'):
        if kw[name] is None:
            raise UserError(f'--{name} is required (unless resuming a run of this toolkit)')
    if transfer_from is not None and not checked:
        from networks.snapshot import load_snapshot
        load_snapshot(transfer_from)   # readable, or one line now rather than in the training process
    gpus, batch = kw['gpus'], kw['batch']
    if batch % gpus:
        raise UserError(f'--batch={batch} must be a multiple of --gpus={gpus}')
    data = ensure_dataset(kw['data'])
    desc = run_desc(kw['cfg'], data, gpus, batch, kw['gamma'], kw['desc'])
    names = {f.name for f in dataclasses.fields(TrainingOptions)}
    options = {k: v for k, v in kw.items() if k in names}
    options.update(config_defaults(kw['cfg'], batch, resuming=transfer_from is not None))
    options.update(data=data, metrics=parse_comma_list(kw['metrics']), resume=transfer_from,
                   transfer=transfer_from is not None,
                   batch_gpu=kw['batch_gpu'] or batch // gpus,
                   workers=kw['workers'] if kw['workers'] is not None else default_workers(gpus),
                   run_dir=os.path.join(kw['outdir'], UNNUMBERED + desc))
    return Plan(opts=TrainingOptions(**options), new_run=True, desc=desc)


def continue_run(run_dir: Optional[str], snapshot: Optional[str], kw: dict, given: set) -> Plan:
    """Continue a run of this toolkit exactly, in its own directory, from `snapshot` (default: its newest
    one; none yet: from the start, with the options it was started with). Without `run_dir` (a
    downloaded snapshot) the run continues in a new directory."""
    from networks.snapshot import load_snapshot
    if snapshot is None:
        snapshots = list_snapshots(run_dir)
        snapshot = snapshots[-1] if snapshots else None
    c_dim = None
    if snapshot is not None:
        data = load_snapshot(snapshot)
        state = data.get('training_state')
        if state is None:
            raise UserError(f'{snapshot}: not a snapshot of this toolkit\'s training (no training state) to continue')
        saved = check_training_state(state, snapshot, data)
        cur_nimg = state['counters']['cur_nimg']
        c_dim = int(data['G'].c_dim)
    else:
        path = os.path.join(run_dir, OPTIONS_FILE)
        try:
            options = safe_json.load_file(path, OPTIONS_LIMIT)
        except ValueError as e:
            raise UserError(f'{path}: not valid JSON ({describe(e)})') from None
        saved = saved_options(options, path)
        cur_nimg = 0
    options = dataclasses.asdict(saved)
    options.update(apply_given(options, kw, given))
    if snapshot is not None:   # the run's own snapshot, restored exactly (its transfer, if any, is behind it)
        options.update(resume=snapshot, transfer=False)
    options.update(run_dir=run_dir or '')
    return Plan(opts=TrainingOptions(**options), new_run=run_dir is None, cur_nimg=cur_nimg, c_dim=c_dim)


def apply_given(saved: dict, kw: dict, given: set) -> dict:
    """The safe command-line options that change a continued run; one line naming the others that
    differ from the run's own values."""
    changes, conflicts = {}, []
    for name in sorted(given - set(NOT_OPTIONS) - {'desc'}):
        value = kw[name]
        if name == 'metrics':
            value = parse_comma_list(value)
        if name in SAFE_ON_RESUME:
            changes[name] = value
            continue
        if name == 'data':
            same = os.path.abspath(ensure_dataset(value)) == os.path.abspath(saved['data'])
        else:
            same = name in saved and saved[name] == value
        if not same:
            was = f'{saved[name]}' if name in saved else 'not applicable'
            conflicts.append(f'--{name.replace("_", "-")}={kw[name]} (the run has {was})')
    if conflicts:
        raise UserError(f'--resume continues the run exactly and cannot change {"; ".join(conflicts)}; '
                        f'drop them, or start a new run')
    return changes


if __name__ == '__main__':
    run(main)
