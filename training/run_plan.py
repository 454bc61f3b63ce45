"""What a `train.py` command line runs: a new run, an exact continuation of one of our runs, or a new run
from another snapshot's weights (--transfer). `plan_run` turns the command-line options (`TrainArgs`) into
the run's `TrainingOptions`, checked completely (dataset, options, resume source, metrics) before anything
is created, so that every mistake is one line and no half-made run directory is left behind."""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

from data.convert import ensure_dataset
from networks.snapshot import load_snapshot, resolve_source, snapshot_file
from torch_utils import safe_json
from torch_utils.cli import UserError, check_output_path, describe
from training import training_loop as tl
from training.launch import default_workers
from training.options import TrainingOptions, config_defaults
from training.resume import check_training_state, saved_options
from training.run_dir import OPTIONS_FILE, latest_run_dir, list_snapshots, run_dir_of

# Options that may change when a run continues exactly; any other option given with --resume must
# match the run's own value, since it would change what the run computes.
SAFE_ON_RESUME = ('kimg', 'tick', 'snap', 'workers', 'metrics', 'detector_dir', 'nobench')
NOT_OPTIONS = ('outdir', 'resume', 'transfer', 'dry_run', 'verbose')
OPTIONS_LIMIT = 1 << 20   # training_options.json holds a few dozen options
UNNUMBERED = 'NNNNN-'     # a new run's directory until open_run_dir claims its number


@dataclasses.dataclass(frozen=True)
class TrainArgs:
    """train.py's command-line options as given (None: not given and without a default); `given` names those
    the user typed, which a continued run checks against its own values. Defaults live in train.py's options."""
    outdir: str
    cfg: Optional[str]
    data: Optional[str]
    gpus: int
    batch: Optional[int]
    gamma: Optional[float]
    cond: bool
    mirror: bool
    aug: str
    augpipe: str
    resume: Optional[str]
    transfer: bool
    freezed: int
    p: float
    target: float
    batch_gpu: Optional[int]
    cbase: int
    cmax: int
    glr: Optional[float]
    dlr: float
    map_depth: Optional[int]
    mbstd_group: int
    mbstd_by_class: bool
    loss: str
    desc: Optional[str]
    metrics: str
    detector_dir: Optional[str]
    kimg: float
    tick: float
    snap: int
    seed: int
    fp32: bool
    nobench: bool
    workers: Optional[int]
    dry_run: bool = False
    verbose: bool = False
    given: frozenset = frozenset()


@dataclasses.dataclass
class Plan:
    opts: TrainingOptions
    new_run: bool                 # claim a new run directory (else continue opts.run_dir)
    desc: str = ''
    cur_nimg: int = 0
    finished: bool = False
    c_dim: Optional[int] = None   # of the snapshot a run continues from, which the dataset's labels must fit


def parse_comma_list(value):
    if isinstance(value, list):
        return value
    if value is None or value.lower() in ('none', ''):
        return []
    return [v.strip() for v in value.split(',') if v.strip()]


def plan_run(args: TrainArgs, check_metrics: Callable[[TrainingOptions], None]) -> Plan:
    """Command-line options -> what to run, checked completely (dataset, options, resume source,
    metrics) without creating anything. `check_metrics`: that the run's metrics exist and their feature
    networks are found (the metrics layer's, above this one)."""
    check_output_path(args.outdir, '--outdir')
    plan = _plan(args)
    opts = plan.opts
    dataset = tl.open_dataset(opts)
    if plan.c_dim is not None and dataset.label_dim != plan.c_dim:
        raise UserError(f'{opts.data}: its labels have {dataset.label_dim} dimensions, but the run continues a '
                        f'generator with c_dim={plan.c_dim}')
    check_metrics(opts)
    plan.finished = plan.cur_nimg >= int(opts.kimg * 1000)
    return plan


def _plan(args: TrainArgs) -> Plan:
    resume = args.resume
    if args.transfer and not resume:
        raise UserError('--transfer=1 needs --resume (the snapshot or run whose weights start the new run)')
    if not resume:
        return new_run(args, transfer_from=None)
    source = resolve_source(resume, outdir=args.outdir)
    if source.kind in ('latest', 'run'):
        run_dir = latest_run_dir(source.path) if source.kind == 'latest' else run_dir_of(source)
        if run_dir is None and source.kind == 'latest':
            raise UserError(f'--resume=latest: {args.outdir} holds no run to resume')
        if run_dir is None:
            raise UserError(f'{resume}: not a run directory (no {OPTIONS_FILE}) and holds no runs')
        if not args.transfer:
            return continue_run(run_dir, None, args)
        snapshots = list_snapshots(run_dir)
        if not snapshots:
            raise UserError(f'--transfer=1: {run_dir} holds no snapshot yet')
        return new_run(args, transfer_from=snapshots[-1])
    resume = snapshot_file(source)   # a URL is downloaded: its run goes to a new directory under --outdir either way
    if args.transfer:
        return new_run(args, transfer_from=resume)
    if load_snapshot(resume).get('training_state') is None:
        return new_run(args, transfer_from=resume, checked=True)
    if source.kind != 'url':
        return continue_run(os.path.dirname(os.path.abspath(resume)), resume, args)
    plan = continue_run(None, resume, args)
    plan.desc = run_desc(plan.opts.cfg, plan.opts.data, plan.opts.gpus, plan.opts.batch, plan.opts.gamma, args.desc)
    plan.opts.run_dir = os.path.join(args.outdir, UNNUMBERED + plan.desc)
    return plan


def run_desc(cfg: str, data: str, gpus: int, batch: int, gamma: float, extra: Optional[str]) -> str:
    data_name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]
    return f'{cfg}-{data_name}-gpus{gpus}-batch{batch}-gamma{gamma:g}' + (f'-{extra}' if extra else '')


def new_run(args: TrainArgs, transfer_from: Optional[str], checked: bool = False) -> Plan:
    """A fresh run (or transfer learning from another snapshot's weights) in a new run directory.
    `checked`: the caller has already loaded `transfer_from` once, so it is known to be readable."""
    for name in ('cfg', 'data', 'batch', 'gamma'):
        if getattr(args, name) is None:
            raise UserError(f'--{name} is required (unless resuming a run of this toolkit)')
    if transfer_from is not None and not checked:
        load_snapshot(transfer_from)   # readable, or one line now rather than in the training process
    gpus, batch = args.gpus, args.batch
    if batch % gpus:
        raise UserError(f'--batch={batch} must be a multiple of --gpus={gpus}')
    data = ensure_dataset(args.data)
    desc = run_desc(args.cfg, data, gpus, batch, args.gamma, args.desc)
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingOptions) if hasattr(args, f.name)}
    options.update(config_defaults(args.cfg, batch, resuming=transfer_from is not None))
    options.update(data=data, metrics=parse_comma_list(args.metrics), resume=transfer_from,
                   transfer=transfer_from is not None,
                   batch_gpu=args.batch_gpu or batch // gpus,
                   workers=args.workers if args.workers is not None else default_workers(gpus),
                   run_dir=os.path.join(args.outdir, UNNUMBERED + desc))
    return Plan(opts=TrainingOptions(**options), new_run=True, desc=desc)


def continue_run(run_dir: Optional[str], snapshot: Optional[str], args: TrainArgs) -> Plan:
    """Continue a run of this toolkit exactly, in its own directory, from `snapshot` (default: its newest
    one; none yet: from the start, with the options it was started with). Without `run_dir` (a
    downloaded snapshot) the run continues in a new directory."""
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
    options.update(apply_given(options, args))
    if snapshot is not None:   # the run's own snapshot, restored exactly (its transfer, if any, is behind it)
        options.update(resume=snapshot, transfer=False)
    options.update(run_dir=run_dir or '')
    return Plan(opts=TrainingOptions(**options), new_run=run_dir is None, cur_nimg=cur_nimg, c_dim=c_dim)


def apply_given(saved: dict, args: TrainArgs) -> dict:
    """The safe command-line options that change a continued run; one line naming the others that
    differ from the run's own values."""
    changes, conflicts = {}, []
    for name in sorted(args.given - set(NOT_OPTIONS) - {'desc'}):
        value = getattr(args, name)
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
            conflicts.append(f'--{name.replace("_", "-")}={getattr(args, name)} (the run has {was})')
    if conflicts:
        raise UserError(f'--resume continues the run exactly and cannot change {"; ".join(conflicts)}; '
                        f'drop them, or start a new run')
    return changes


def run_summary(plan: Plan, outdir: str) -> str:
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


def finished_notice(plan: Plan) -> str:
    opts = plan.opts
    return (f'{opts.run_dir}: the run is finished ({plan.cur_nimg / 1000:g} kimg of --kimg={opts.kimg:g}); '
            f'nothing to do (a larger --kimg trains on)')
