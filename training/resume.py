"""Exact resume: the state of a training run, saved in every snapshot and put back bit for bit.

A snapshot holds, besides G, D, G_ema, the augment pipe and the dataset options, a `training_state`: the
options, counters, both optimizers' moments, the ADA controller, the path-length mean, the sample and
augmentation streams, and every rank's global RNG state and running tick statistics. `Run` holds all
that a run trains with; `Run.state_dict()` is the snapshot and `Run.load_state_dict()` puts a run back
where one left off. `check_training_state` validates a saved state before a resume touches anything
(it comes from a file); `transfer_weights` starts a new run from another snapshot's weights instead.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from networks.snapshot import NETWORK_KEYS, load_snapshot
from torch_utils import distributed
from torch_utils.cli import UserError, describe
from training.augment import AdaptiveP
from training.loss import StyleGANLoss
from training.options import TrainingOptions
from training.resume_checks import check_resumed_values
from training.stats import StatsCollector


class ResumeStateError(UserError):
    """A snapshot whose training state cannot continue a run."""


@dataclass
class Counters:
    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0
    total_seconds: float = 0.0
    tick_seconds: float = 0.0     # time already spent in the current tick (before an interruption)


@dataclass
class Run:
    """Everything a training run trains with and its snapshots carry (built by the training loop)."""
    opts: TrainingOptions
    rank: int
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    augment_pipe: Optional[torch.nn.Module]
    ada: Optional[AdaptiveP]
    loss: StyleGANLoss
    optimizers: dict[str, torch.optim.Optimizer]   # 'G' and 'D' (a main and a reg phase share one)
    stats: StatsCollector
    sample_gen: torch.Generator    # latents and labels, shared by every rank
    augment_gen: torch.Generator   # augmentation draws, shared by every rank
    dataset_kwargs: dict           # how to open the training set again: the snapshot's training_set_kwargs
    counters: Counters = field(default_factory=Counters)

    def state_dict(self, interrupted: bool = False) -> dict:
        """The snapshot of the run now. Every rank must call it (it gathers every rank's RNG state and tick
        statistics). `interrupted` marks a snapshot taken in the middle of a tick (Ctrl-C): it carries the
        tick's running statistics and is not part of the run's snapshot schedule."""
        training_state = dict(
            options=asdict(self.opts), counters=asdict(self.counters),
            optimizers={key: opt.state_dict() for key, opt in self.optimizers.items()},
            ada=self.ada.state_dict() if self.ada is not None else None, pl_mean=self.loss.pl_mean.detach().cpu(),
            sample_gen=self.sample_gen.get_state(), augment_gen=self.augment_gen.get_state().cpu(),
            rng=distributed.all_gather_object(rng_states()),
            stats=distributed.all_gather_object(self.stats.state_dict()), interrupted=interrupted)
        return dict(G=self.G, D=self.D, G_ema=self.G_ema, augment_pipe=self.augment_pipe,
                    training_set_kwargs=self.dataset_kwargs, training_state=training_state)

    def load_state_dict(self, data: dict, source: str) -> Optional[str]:
        """Put the run where the snapshot `data` (read from `source`, checked by check_training_state) left
        it, except for the global RNG: `set_rng_states(data['training_state']['rng'][rank])` must come last,
        after the data loader has drawn from it. Returns a line to log where the resume cannot be exact."""
        ts = data['training_state']
        saved = ts['options']
        if (saved['cfg'], saved['batch'], len(ts['rng'])) != (self.opts.cfg, self.opts.batch, distributed.world_size()):
            raise ResumeStateError(f'{source}: exact resume needs the same --cfg, --batch and --gpus as the run '
                                   f'({saved["cfg"]}, batch {saved["batch"]}, gpus {len(ts["rng"])})')
        try:
            for name in ('G', 'D', 'G_ema'):
                getattr(self, name).load_state_dict(data[name].state_dict())
            if self.augment_pipe is not None and data.get('augment_pipe') is not None:
                self.augment_pipe.load_state_dict(data['augment_pipe'].state_dict())
            for key, opt in self.optimizers.items():
                opt.load_state_dict(ts['optimizers'][key])
            if self.ada is not None and ts['ada'] is not None:
                self.ada.load_state_dict(ts['ada'])
            self.loss.pl_mean.copy_(ts['pl_mean'])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ResumeStateError(f'{source}: cannot resume: the snapshot does not fit the run '
                                   f'({describe(e)})') from None
        known = {f.name for f in fields(Counters)}
        for key, value in ts['counters'].items():
            if key in known:
                setattr(self.counters, key, value)
        self.sample_gen.set_state(ts['sample_gen'])
        self.stats.load_state_dict(ts.get('stats', [{}] * distributed.world_size())[self.rank])
        if ts.get('augment_gen') is not None:
            return continue_generator(self.augment_gen, ts['augment_gen'])
        return None


def resume_or_transfer(run: Run, log: Callable[[str], None]) -> Optional[dict]:
    """Start `run` from the snapshot its options name, if any: exactly where it left off (one of our
    snapshots, unless --transfer), or from its weights. Returns the training state an exact resume
    continues (None otherwise)."""
    opts = run.opts
    data = load_snapshot(opts.resume, keys=NETWORK_KEYS) if opts.resume else None
    state = data.get('training_state') if data is not None and not opts.transfer else None
    if state is not None:
        note = run.load_state_dict(data, opts.resume)
        if note:
            log(note)
        log(f'resumed exactly from {opts.resume} at {run.counters.cur_nimg / 1000:g} kimg')
    elif data is not None:
        transfer_weights(data, dict(G=run.G, D=run.D, G_ema=run.G_ema), opts.resume, log)
    return state


def transfer_weights(data: dict, networks: dict[str, torch.nn.Module], source: str,
                     log: Callable[[str], None]) -> None:
    """Transfer learning: every parameter and buffer whose name and shape match is copied from the
    snapshot's networks. A generator-only file (a released .pt holds G_ema alone) starts G from G_ema
    and D afresh."""
    for name, module in networks.items():
        found = data.get(name)
        if found is None and name == 'G':
            found = data.get('G_ema')
        if found is None:
            log(f'transfer learning: {source} holds no {name}; it starts from a fresh initialisation')
            continue
        theirs = dict(found.state_dict())
        copied = 0
        with torch.no_grad():
            for key, tensor in module.state_dict().items():
                if key in theirs and theirs[key].shape == tensor.shape:
                    tensor.copy_(theirs[key])
                    copied += 1
        log(f'transfer learning: copied {copied} tensors of {name} from {source}')


# ------------------------------------------------------------------------------------------------
# Random streams.

def rng_states() -> dict:
    """This process's global random states (torch, numpy, every CUDA device)."""
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def set_rng_states(states: dict) -> None:
    """Back to saved global random states. A CPU run's snapshot has no CUDA states; a bigger machine's
    has more than this one has devices."""
    torch.set_rng_state(states['torch'])
    np.random.set_state(states['numpy'])
    if states['cuda'] and torch.cuda.is_available():
        for index, cuda_state in enumerate(states['cuda'][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run side work (grids, metrics) without moving this process's random streams."""
    saved = rng_states()
    try:
        yield
    finally:
        set_rng_states(saved)


def continue_generator(gen: torch.Generator, saved: torch.Tensor) -> Optional[str]:
    """Put `gen` where the saved state left off. A state saved on another kind of device (a CPU run
    continued on a GPU, or back) cannot be set: CPU and CUDA generators keep different states and draw
    different streams. Then `gen` is seeded from the saved state's bytes, so the continuation is still
    reproducible, and the returned line says so."""
    own = gen.get_state()
    if saved.numel() == own.numel():
        gen.set_state(saved.to(own.device))
        return None
    seed = int.from_bytes(hashlib.sha256(saved.cpu().numpy().tobytes()).digest()[:8], 'little') >> 1
    gen.manual_seed(seed)
    return (f'augmentation random stream: the snapshot was written on another kind of device than '
            f'{gen.device.type}; it continues from a seed derived from the saved state, not bit-exactly')


# ------------------------------------------------------------------------------------------------
# Checking a saved state before it is used.

def saved_options(options: Any, source: str) -> TrainingOptions:
    """TrainingOptions from a saved dict (a snapshot's state, training_options.json), or one line why not."""
    def bad(what: str) -> ResumeStateError:
        return ResumeStateError(f'{source}: cannot resume: the saved options {what}')
    if not isinstance(options, dict):
        raise bad('are not a dict')
    known = {f.name for f in fields(TrainingOptions)}
    unknown = sorted(str(k) for k in options if k not in known)
    if unknown:
        raise bad(f'have unknown keys: {", ".join(unknown)}')
    later = {'detector_dir', 'mbstd_by_class', 'transfer'}   # added after the first release: older snapshots lack them
    missing = sorted(f.name for f in fields(TrainingOptions) if f.name not in options and f.name not in later)
    if missing:
        raise bad(f'lack {", ".join(missing)}')
    try:
        return TrainingOptions(**options)
    except (TypeError, ValueError, UserError) as e:
        raise bad(f'are invalid ({describe(e)})') from None


def check_training_state(ts: Any, source: str, data: Optional[dict] = None) -> TrainingOptions:
    """Validate the training state of one of our snapshots; returns the run's options. With the snapshot's
    loaded `data`, the optimizer moments are checked against its networks' parameters too.

    Everything a resume will use is checked here, before a run directory is touched, so that a damaged
    or hand-edited state gives one line naming the snapshot instead of a TypeError mid-start."""
    def bad(what: str) -> ResumeStateError:
        return ResumeStateError(f'{source}: cannot resume: the training state {what}')
    if not isinstance(ts, dict):
        raise bad('is not a dict')
    opts = saved_options(ts.get('options'), source)
    counters = ts.get('counters')
    ints = ('cur_nimg', 'cur_tick', 'batch_idx', 'tick_start_nimg')
    if not isinstance(counters, dict) or not all(isinstance(counters.get(k), int) and counters[k] >= 0 for k in ints):
        raise bad('has malformed counters')
    if counters['batch_idx'] * opts.batch != counters['cur_nimg']:
        raise bad('has inconsistent counters')
    rngs = ts.get('rng')
    if not isinstance(rngs, list) or len(rngs) != opts.gpus:
        raise bad(f'needs one RNG state per process ({opts.gpus})')
    try:
        for rng in rngs:
            torch.Generator().set_state(rng['torch'])
            np.random.RandomState().set_state(rng['numpy'])
        torch.Generator().set_state(ts['sample_gen'])
        augment_gen = ts.get('augment_gen')   # a CUDA generator's state on GPUs: only its type is checked
        if augment_gen is not None and not (isinstance(augment_gen, torch.Tensor) and augment_gen.dtype == torch.uint8):
            raise TypeError('augment_gen is not a byte tensor')
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError) as e:
        raise bad(f'has a malformed RNG state ({describe(e)})') from None
    optimizers = ts.get('optimizers')
    if not isinstance(optimizers, dict) or not all(isinstance(optimizers.get(k), dict) for k in 'GD'):
        raise bad('has malformed optimizer states')
    stats = ts.get('stats', [{}] * opts.gpus)
    if not isinstance(stats, list) or len(stats) != opts.gpus or not all(isinstance(x, dict) for x in stats):
        raise bad('has malformed tick statistics')
    try:
        check_resumed_values(ts, stats, data)
    except ValueError as e:
        raise bad(f'is damaged ({e})') from None
    return opts
