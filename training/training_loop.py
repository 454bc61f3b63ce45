"""The one training loop shared by every config (StyleGAN2, StyleGAN3-T, StyleGAN3-R), on CPU or GPUs.

Reading order: `TrainingOptions` (what train.py decides), `build_networks`, `training_loop` (the loop
itself), then the helpers it calls (resume, snapshots, grids).

Each step draws one global batch: reals in a seeded order and latents from a seeded generator that
every rank shares; rank r takes the samples r, r+R, r+2R, ... of it. So the maths does not depend on
the number of processes. Per phase (Gmain, Greg, Dmain, Dreg; the reg phases every k-th step with gain
k), gradients accumulate over `batch_gpu`-sized rounds as a mean over the global batch, are averaged
over ranks and applied by Adam. Then G_ema follows G, and ADA adjusts the augmentation probability.

Snapshots hold, besides the networks, everything an exact resume needs: optimizer moments, the ADA
controller, counters, and every RNG state.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterator, Optional

import numpy as np
import torch
from tqdm import tqdm

from networks import discriminator, stylegan2, stylegan3
from networks.generate import image_grid, save_image, to_uint8
from networks.snapshot import load_snapshot, snapshot_name
from torch_utils import distributed
from torch_utils.cli import UserError, describe
from torch_utils.jsonl import append_jsonl
from training.augment import AdaptiveP, AugmentPipe, augment_kwargs_for
from training.dataset import DatasetError, ImageFolderDataset
from training.loss import LOSSES, LossOptions, StyleGANLoss
from training.resume_checks import check_resumed_values
from training.run_dir import SnapshotKeeper, tidy_run_dir
from training.stats import StatsCollector, timestamped
from training.tensorboard import EventWriter, tick_scalars, viewer_note

class OptionError(UserError):
    """Options that cannot train together; the message names them."""


@dataclass
class TrainingOptions:
    """Every setting of a run; saved as training_options.json and inside each snapshot."""
    run_dir: str
    cfg: str                          # stylegan3-t | stylegan3-r | stylegan2
    data: str                         # dataset zip or folder
    gpus: int = 1
    batch: int = 32
    batch_gpu: int = 4
    gamma: float = 8.0
    cond: bool = False
    mirror: bool = False
    aug: str = 'ada'                  # ada | noaug | fixed
    augpipe: str = 'bgc'
    p: float = 0.2                    # augmentation probability for aug=fixed
    target: float = 0.6               # ADA target for sign(D(real))
    ada_kimg: float = 500             # kimg for ADA's p to move from 0 to 1
    ada_interval: int = 4
    resume: Optional[str] = None
    transfer: bool = False            # resume gives weights only (a new run), even from one of our snapshots
    freezed: int = 0
    cbase: int = 32768
    cmax: int = 512
    z_dim: int = 512
    w_dim: int = 512
    map_depth: Optional[int] = None
    glr: Optional[float] = None
    dlr: float = 0.002
    mbstd_group: int = 4
    mbstd_by_class: bool = False      # conditional: D's stddev within each label instead of mixed groups
    loss: str = 'logistic'            # logistic | wgan-gp
    metrics: list = field(default_factory=list)
    detector_dir: Optional[str] = None   # where the metrics' feature networks are (else env / cache / download)
    kimg: float = 25000
    tick: float = 4
    snap: int = 50
    seed: int = 0
    fp32: bool = False
    nobench: bool = False
    workers: int = 3
    ema_kimg: Optional[float] = None  # default: batch * 10 / 32
    ema_rampup: Optional[float] = 0.05
    g_reg_interval: Optional[int] = None
    d_reg_interval: int = 16
    style_mixing_prob: float = 0.0
    pl_weight: float = 0.0
    blur_init_sigma: float = 0.0
    blur_fade_kimg: float = 0.0

    def __post_init__(self):
        if self.cfg not in ('stylegan3-t', 'stylegan3-r', 'stylegan2'):
            raise OptionError(f'unknown cfg {self.cfg!r}')
        if self.batch % self.gpus or (self.batch // self.gpus) % self.batch_gpu:
            raise OptionError(f'--batch={self.batch} must be a multiple of --gpus={self.gpus} times '
                              f'--batch-gpu={self.batch_gpu}')
        if self.mbstd_by_class and not self.cond:
            raise OptionError('--mbstd-by-class=True needs a conditional model (--cond=True)')
        if self.batch_gpu < self.mbstd_group:
            raise OptionError(f'--batch-gpu={self.batch_gpu} (the batch of one process) cannot be smaller than '
                              f'--mbstd-group={self.mbstd_group}')
        if self.ema_kimg is None:
            self.ema_kimg = self.batch * 10 / 32
        if self.glr is None:
            self.glr = 0.002 if self.cfg == 'stylegan2' else 0.0025


def config_defaults(cfg: str, batch: int, resuming: bool) -> dict:
    """Per-config settings of NVIDIA's train.py that are not command-line options."""
    d: dict[str, Any] = {}
    if cfg == 'stylegan2':
        d.update(style_mixing_prob=0.9, pl_weight=2, g_reg_interval=4)
    if cfg == 'stylegan3-r':
        d.update(blur_init_sigma=10, blur_fade_kimg=batch * 200 / 32)
    if resuming:
        d.update(ada_kimg=100, ema_rampup=None, blur_init_sigma=0)
    return d


# ------------------------------------------------------------------------------------------------
# Networks.

def build_networks(opts: TrainingOptions, img_resolution: int, img_channels: int, c_dim: int):
    common = dict(channel_base=opts.cbase, channel_max=opts.cmax)
    precision = dict(num_fp16_res=0, conv_clamp=None) if opts.fp32 else dict(num_fp16_res=4, conv_clamp=256)
    mapping = dict(num_layers=opts.map_depth or (8 if opts.cfg == 'stylegan2' else 2))
    g_args = dict(z_dim=opts.z_dim, c_dim=c_dim, w_dim=opts.w_dim, img_resolution=img_resolution,
                  img_channels=img_channels, mapping_kwargs=mapping, **precision)
    if opts.cfg == 'stylegan2':
        G = stylegan2.Generator(**g_args, **common, fused_modconv_default='inference_only')
    else:
        extra = dict(magnitude_ema_beta=0.5 ** (opts.batch / (20 * 1e3)))
        if opts.cfg == 'stylegan3-r':
            extra.update(conv_kernel=1, channel_base=opts.cbase * 2, channel_max=opts.cmax * 2, use_radial_filters=True)
        G = stylegan3.Generator(**g_args, **{**common, **extra})
    epilogue = dict(mbstd_group_size=opts.mbstd_group, mbstd_by_class=opts.mbstd_by_class)
    D = discriminator.Discriminator(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
                                    block_kwargs=dict(freeze_layers=opts.freezed), epilogue_kwargs=epilogue,
                                    **common, **precision)
    return G, D


def copy_matching_tensors(src: torch.nn.Module, dst: torch.nn.Module) -> int:
    """Transfer learning: copy every parameter/buffer whose name and shape match; returns how many."""
    theirs = dict(src.state_dict())
    copied = 0
    with torch.no_grad():
        for name, tensor in dst.state_dict().items():
            if name in theirs and theirs[name].shape == tensor.shape:
                tensor.copy_(theirs[name])
                copied += 1
    return copied


@dataclass
class Phase:
    name: str
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int


def make_phases(opts: TrainingOptions, G, D) -> list[Phase]:
    phases = []
    for prefix, module, lr, reg_interval in (('G', G, opts.glr, opts.g_reg_interval),
                                             ('D', D, opts.dlr, opts.d_reg_interval)):
        params = [p for p in module.parameters()]
        if reg_interval is None:
            phases.append(Phase(prefix + 'both', module, torch.optim.Adam(params, lr=lr, betas=(0.0, 0.99), eps=1e-8), 1))
            continue
        # Lazy regularisation: the main phase's Adam is scaled as if the reg phase were applied every step.
        ratio = reg_interval / (reg_interval + 1)
        opt = torch.optim.Adam(params, lr=lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
        phases.append(Phase(prefix + 'main', module, opt, 1))
        phases.append(Phase(prefix + 'reg', module, opt, reg_interval))
    return phases


# ------------------------------------------------------------------------------------------------
# Data order: an endless seeded shuffle, shared by all ranks, resumable at any position.

class GlobalOrderSampler(torch.utils.data.Sampler):
    """Yields this rank's dataset indices of the global sample stream, starting at global position `start`."""

    def __init__(self, size: int, rank: int, world: int, seed: int, start: int = 0):
        self.size, self.rank, self.world, self.seed, self.start = size, rank, world, seed, start

    def __iter__(self):
        pos = self.start + self.rank
        epoch, order = -1, None
        while True:
            if pos // self.size != epoch:
                epoch = pos // self.size
                order = np.random.RandomState((self.seed + epoch) % 2 ** 32).permutation(self.size)
            yield int(order[pos % self.size])
            pos += self.world


def _ignore_interrupts(worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the training process's to handle


class DataStream:
    """Per-rank batches of (uint8 images, labels) from a DataLoader over GlobalOrderSampler."""

    def __init__(self, dataset, rank: int, world: int, per_rank: int, seed: int, start: int, workers: int,
                 device: torch.device):
        sampler = GlobalOrderSampler(len(dataset), rank, world, seed, start)
        self.loader = iter(torch.utils.data.DataLoader(
            dataset, sampler=sampler, batch_size=per_rank, num_workers=workers, pin_memory=device.type == 'cuda',
            prefetch_factor=2 if workers > 0 else None, persistent_workers=workers > 0,
            worker_init_fn=_ignore_interrupts if workers > 0 else None))
        self.device = device

    def next(self):
        img, c = next(self.loader)
        return (img.to(self.device).to(torch.float32) / 127.5 - 1), c.to(self.device)


# ------------------------------------------------------------------------------------------------
# The loop.

def training_loop(opts: TrainingOptions, rank: int = 0, device: torch.device = torch.device('cpu'),
                  stop: Optional['StopFlag'] = None) -> None:
    world = distributed.world_size()
    is_main = rank == 0
    log = RunLog(opts.run_dir, enabled=is_main)
    stop = stop if stop is not None else StopFlag()
    torch.backends.cudnn.benchmark = not opts.nobench
    torch.backends.cuda.matmul.allow_tf32 = False   # exact fp32 maths, as NVIDIA's loop
    torch.backends.cudnn.allow_tf32 = False

    dataset = open_dataset(opts)
    log(f'dataset: {opts.data}: {len(dataset)} images, {dataset.resolution}x{dataset.resolution}, '
        f'{dataset.num_channels} channels, labels: {dataset.label_dim}')

    torch.manual_seed(opts.seed * world + rank)   # in-network randomness (StyleGAN2 noise, style mixing), per rank
    sample_gen = torch.Generator().manual_seed(opts.seed)  # latents and labels, shared by every rank
    G, D = build_networks(opts, dataset.resolution, dataset.num_channels, dataset.label_dim)
    G, D = G.train().requires_grad_(False).to(device), D.train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()

    augment_pipe = ada = None
    augment_gen = torch.Generator(device=device).manual_seed(opts.seed)   # shared by every rank, as sample_gen
    if opts.aug != 'noaug':
        augment_pipe = AugmentPipe(**augment_kwargs_for(opts.augpipe)).train().requires_grad_(False).to(device)
        augment_pipe.p.fill_(opts.p if opts.aug == 'fixed' else 0)
        if opts.aug == 'ada':
            ada = AdaptiveP(augment_pipe, batch_size=opts.batch, target=opts.target, interval=opts.ada_interval,
                            speed_kimg=opts.ada_kimg)

    stats = StatsCollector(device)
    loss_options = LossOptions(r1_gamma=opts.gamma, style_mixing_prob=opts.style_mixing_prob,
                               pl_weight=opts.pl_weight, blur_init_sigma=opts.blur_init_sigma,
                               blur_fade_kimg=opts.blur_fade_kimg)
    loss = LOSSES[opts.loss](G, D, loss_options, augment_pipe=augment_pipe, report=stats.report,
                        observe_real=ada.observe if ada is not None else None)
    phases = make_phases(opts, G, D)
    state = Counters()

    resume_data = load_snapshot(opts.resume) if opts.resume else None
    resume_state = resume_data.get('training_state') if resume_data is not None and not opts.transfer else None
    if resume_state is not None:
        note = restore_exactly(resume_data, opts, G, D, G_ema, augment_pipe, ada, phases, loss, state, sample_gen,
                               augment_gen)
        if note:
            log(note)
        stats.load_state_dict(resume_state.get('stats', [{}] * world)[rank])
        log(f'resumed exactly from {opts.resume} at {state.cur_nimg / 1000:g} kimg')
    elif resume_data is not None:
        for name, module in (('G', G), ('D', D), ('G_ema', G_ema)):
            # A generator-only file (a released .pt holds G_ema alone) starts G from G_ema and D afresh.
            source = resume_data.get(name)
            if source is None and name == 'G':
                source = resume_data.get('G_ema')
            if source is None:
                log(f'transfer learning: {opts.resume} holds no {name}; it starts from a fresh initialisation')
                continue
            n = copy_matching_tensors(source, module)
            log(f'transfer learning: copied {n} tensors of {name} from {opts.resume}')
    del resume_data
    for module in (G, D, G_ema, augment_pipe):
        if module is not None:
            distributed.broadcast_module_(module)

    per_rank = opts.batch // world
    rounds = per_rank // opts.batch_gpu
    stream = DataStream(dataset, rank, world, per_rank, opts.seed, state.batch_idx * opts.batch, opts.workers, device)
    grid = SnapshotGrid(dataset, G_ema, opts.seed, device) if is_main else None
    snapshots = SnapshotKeeper(opts.run_dir, interrupted_source=opts.resume if resume_state is not None and
                               resume_state.get('interrupted') else None)
    if is_main:
        tidy_run_dir(opts.run_dir, resume=opts.resume if resume_state is not None else None,
                     next_tick=state.cur_tick, cur_nimg=state.cur_nimg)
    if is_main and state.cur_nimg == 0:
        grid.save_reals(os.path.join(opts.run_dir, 'reals.png'))
        grid.save_fakes(os.path.join(opts.run_dir, 'fakes_init.png'))

    if resume_state is not None:
        restore_rng(resume_state['rng'], rank)
    total_nimg = int(opts.kimg * 1000)
    tick_nimg = int(opts.tick * 1000)
    log(f'training for {opts.kimg:g} kimg from {state.cur_nimg / 1000:g} kimg on {world} process(es), device {device}')
    events = EventWriter(opts.run_dir) if is_main else None
    if is_main:
        log(viewer_note(os.path.dirname(os.path.abspath(opts.run_dir))))
    tick_start_time = time.time()
    bar = make_bar(state, tick_nimg, total_nimg, opts.batch) if is_main else None

    while state.cur_nimg < total_nimg:
        # -- one optimisation step over the global batch -----------------------------------------
        stop.step_from = state.cur_nimg
        reals, real_c = stream.next()
        gen_z = torch.randn([len(phases), opts.batch, G.z_dim], generator=sample_gen).to(device)
        gen_c = random_labels(dataset, len(phases) * opts.batch, sample_gen).reshape(len(phases), opts.batch, -1)
        mine = slice(rank, opts.batch, world)
        gen_z, gen_c = gen_z[:, mine], gen_c[:, mine].to(device)

        for idx, phase in enumerate(phases):
            if state.batch_idx % phase.interval != 0:
                continue
            run_phase(phase, loss, reals, real_c, gen_z[idx], gen_c[idx], rounds=rounds, cur_nimg=state.cur_nimg,
                      augment_pipe=augment_pipe, augment_gen=augment_gen)

        update_ema(G, G_ema, opts, state.cur_nimg)
        state.cur_nimg += opts.batch
        state.batch_idx += 1
        stop.step_from = state.cur_nimg   # a stop asked from here on (a snapshot being written) ends the next step
        if ada is not None:
            ada.step(reduce=distributed.all_reduce_sum_)
        if bar is not None:
            bar.update(opts.batch)
        interrupted = stop.agreed()

        # -- end of tick? (tick 0 is the first step alone, as in NVIDIA's loop) --------------------
        done = state.cur_nimg >= total_nimg
        tick_ends = done or state.cur_tick == 0 or state.cur_nimg >= state.tick_start_nimg + tick_nimg
        if not tick_ends and not interrupted:
            continue
        if bar is not None:
            bar.close()
        tick_seconds = state.tick_seconds + time.time() - tick_start_time
        scheduled = False
        if tick_ends:
            tick_stats = close_tick(stats, state, tick_seconds, augment_pipe, device)
            log(tick_line(state, tick_stats, opts))
            if is_main:
                append_jsonl(os.path.join(opts.run_dir, 'stats.jsonl'), timestamped(tick_stats), durable=True, allow_nan=True)
                events.scalars(state.cur_nimg, tick_scalars(tick_stats))
            scheduled = done or state.cur_tick % opts.snap == 0
            # The tick is closed before any snapshot, so that a resume starts the next one.
            state.cur_tick += 1
            state.tick_start_nimg = state.cur_nimg
            state.tick_seconds = 0.0
        else:
            state.tick_seconds = tick_seconds   # an interrupted tick goes on after the resume

        if scheduled or interrupted:
            name = snapshot_name(state.cur_nimg)
            path = os.path.join(opts.run_dir, f'network-snapshot-{name}.pkl')
            error = None
            with preserved_rng(device):   # grids and metrics must not shift the training's random streams
                training_state = capture_state(opts, state, phases, ada, loss, sample_gen, augment_gen, stats,
                                               interrupted=not scheduled)
                if scheduled and opts.metrics:   # on every rank: each computes its share of the features
                    run_metrics(opts, G_ema, path, rank, device, log, events, state.cur_nimg)
                try:
                    if is_main and scheduled:
                        grid.save_fakes(os.path.join(opts.run_dir, f'fakes{name}.png'))
                    if is_main:
                        snapshots.write(path, dict(G=G, D=D, G_ema=G_ema, augment_pipe=augment_pipe,
                                                   training_set_kwargs=dataset_kwargs(opts, dataset),
                                                   training_state=training_state), scheduled=scheduled)
                except OSError as e:   # disk full, permissions: stop with one line on every rank
                    error = e
            if is_main and scheduled and opts.metrics and error is None:
                note_best(opts.run_dir, log)
            if distributed.any_rank(error is not None):
                raise SnapshotWriteError(f'{path}: cannot write the snapshot: '
                                         f'{error.strerror or error if error is not None else "failed on rank 0"}; '
                                         f'the earlier snapshots are intact')
            if interrupted:
                during = ('' if stop.requested_at is None else
                          f'stop asked during the step from {stop.requested_at / 1000:g} kimg; ')
                log(f'interrupted: {during}saved {path} at {state.cur_nimg / 1000:g} kimg; '
                    f'resume with --resume={opts.run_dir}')
        if interrupted or done:
            break
        tick_start_time = time.time()
        bar = make_bar(state, tick_nimg, total_nimg, opts.batch) if is_main else None
    stop.restore()
    log('done.')


def open_dataset(opts: TrainingOptions) -> ImageFolderDataset:
    """The training set, checked as train.py checks it before creating anything."""
    dataset = ImageFolderDataset(opts.data, use_labels=opts.cond, xflip=opts.mirror, random_seed=opts.seed)
    if opts.cond and not dataset.has_labels:
        raise DatasetError(f'{opts.data}: --cond=True needs labels in dataset.json')
    return dataset


def run_phase(phase: 'Phase', loss: StyleGANLoss, reals, real_c, gen_z, gen_c, rounds: int, cur_nimg: int,
              augment_pipe: Optional[AugmentPipe] = None, augment_gen: Optional[torch.Generator] = None) -> None:
    """One phase over this rank's share of the global batch, then one optimizer step.

    Round r of `rounds` takes this rank's samples r, r+rounds, ..., so that in global terms every
    round holds samples s, s+S, s+2S, ... (s = rank + r * world, S = rounds * world) whatever the
    process count: minibatch-std groups (strided, as NVIDIA's) and the path-length subset then
    contain the same images as in one process. Every round restarts the augmentation generator and
    takes its rows of draws made for the whole batch, so each image gets the augmentation it would
    get in one process with one round."""
    world, rank = distributed.world_size(), distributed.rank()
    phase.opt.zero_grad(set_to_none=True)
    phase.module.requires_grad_(True)
    start = augment_gen.get_state() if augment_gen is not None else None
    for r in range(rounds):
        if augment_pipe is not None and augment_gen is not None:
            augment_gen.set_state(start)
            augment_pipe.draw_from(augment_gen, share=(rank + r * world, rounds * world))
        part = slice(r, None, rounds)
        loss.accumulate_gradients(phase.name, reals[part], real_c[part], gen_z[part], gen_c[part],
                                  gain=phase.interval / rounds, cur_nimg=cur_nimg)
    phase.module.requires_grad_(False)
    distributed.average_gradients_([p for p in phase.module.parameters()])
    phase.opt.step()


def close_tick(stats: StatsCollector, state: 'Counters', tick_seconds: float, augment_pipe, device) -> dict:
    """Report the tick's progress and timing; returns the tick's statistics (every rank must call it)."""
    state.total_seconds += tick_seconds
    tick_kimg = (state.cur_nimg - state.tick_start_nimg) / 1000
    stats.report('Progress/tick', state.cur_tick)
    stats.report('Progress/kimg', state.cur_nimg / 1000)
    stats.report('Progress/augment', float(augment_pipe.p) if augment_pipe is not None else 0)
    stats.report('Timing/total_sec', state.total_seconds)
    stats.report('Timing/sec_per_tick', tick_seconds)
    stats.report('Timing/sec_per_kimg', tick_seconds / max(tick_kimg, 1e-8))
    stats.report('Resources/peak_gpu_mem_gb', torch.cuda.max_memory_allocated(device) / 2 ** 30
                 if device.type == 'cuda' else 0)
    stats.report('Resources/cpu_mem_gb', resident_memory_gb())
    return stats.collect()


class SnapshotWriteError(UserError):
    """A snapshot could not be written (disk full, permissions); the earlier ones are untouched."""


# ------------------------------------------------------------------------------------------------
# Pieces of the step.

@dataclass
class Counters:
    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0
    total_seconds: float = 0.0
    tick_seconds: float = 0.0     # time already spent in the current tick (before an interruption)


def random_labels(dataset, n: int, gen: torch.Generator) -> torch.Tensor:
    """Labels of random training images, as NVIDIA conditions generated samples."""
    idx = torch.randint(len(dataset), [n], generator=gen)
    if dataset.label_dim == 0:
        return torch.zeros([n, 0])
    return torch.from_numpy(np.stack([dataset.get_label(int(i)) for i in idx])).to(torch.float32)


@torch.no_grad()
def update_ema(G, G_ema, opts: TrainingOptions, cur_nimg: int) -> None:
    """G_ema follows G with a half-life of ema_kimg (ramped up over the first images of a fresh run)."""
    ema_nimg = opts.ema_kimg * 1000
    if opts.ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * opts.ema_rampup)
    beta = 0.5 ** (opts.batch / max(ema_nimg, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


# ------------------------------------------------------------------------------------------------
# Exact resume.

def _rng_states() -> dict:
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Run side work (grids, metrics) without moving this process's random streams."""
    saved = _rng_states()
    try:
        yield
    finally:
        torch.set_rng_state(saved['torch'])
        np.random.set_state(saved['numpy'])
        if saved['cuda']:
            torch.cuda.set_rng_state_all(saved['cuda'])


def capture_state(opts, state: 'Counters', phases, ada, loss, sample_gen, augment_gen, stats, interrupted: bool) -> dict:
    """Everything besides the networks that continues the run bit for bit. Every rank must call it.

    `interrupted` marks a snapshot taken in the middle of a tick (Ctrl-C): it carries the tick's
    running statistics and is not part of the run's snapshot schedule."""
    optimizers = {phase.name[0]: phase.opt.state_dict() for phase in phases}   # main and reg share one Adam
    return dict(options=asdict(opts), counters=asdict(state), optimizers=optimizers,
                ada=ada.state_dict() if ada is not None else None, pl_mean=loss.pl_mean.detach().cpu(),
                sample_gen=sample_gen.get_state(), augment_gen=augment_gen.get_state().cpu(),
                rng=distributed.all_gather_object(_rng_states()),
                stats=distributed.all_gather_object(stats.state_dict()), interrupted=interrupted)


class ResumeStateError(UserError):
    """A snapshot whose training state cannot continue a run."""


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


def restore_exactly(data, opts, G, D, G_ema, augment_pipe, ada, phases, loss, state, sample_gen,
                    augment_gen) -> Optional[str]:
    """Everything of the run where the snapshot left it; a line to log where that cannot be exact."""
    ts = data['training_state']
    saved = ts['options']
    if (saved['cfg'], saved['batch'], distributed.world_size()) != (opts.cfg, opts.batch, len(ts['rng'])):
        raise ResumeStateError(f'{opts.resume}: exact resume needs the same --cfg, --batch and --gpus as the run '
                               f'({saved["cfg"]}, batch {saved["batch"]}, gpus {len(ts["rng"])})')
    try:
        for name, module in (('G', G), ('D', D), ('G_ema', G_ema)):
            module.load_state_dict(data[name].state_dict())
        if augment_pipe is not None and data.get('augment_pipe') is not None:
            augment_pipe.load_state_dict(data['augment_pipe'].state_dict())
        for phase in phases:
            phase.opt.load_state_dict(ts['optimizers'][phase.name[0]])
        if ada is not None and ts['ada'] is not None:
            ada.load_state_dict(ts['ada'])
        loss.pl_mean.copy_(ts['pl_mean'])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ResumeStateError(f'{opts.resume}: cannot resume: the snapshot does not fit the run ({describe(e)})') from None
    known = {f.name for f in fields(Counters)}
    for key, value in ts['counters'].items():
        if key in known:
            setattr(state, key, value)
    sample_gen.set_state(ts['sample_gen'])
    if ts.get('augment_gen') is not None:
        return continue_generator(augment_gen, ts['augment_gen'])
    return None


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


def restore_rng(data_rng: list, rank: int) -> None:
    """Last thing before the first step: setting up data loaders draws from the global RNG."""
    rng = data_rng[rank]
    torch.set_rng_state(rng['torch'])
    np.random.set_state(rng['numpy'])
    if rng['cuda'] and torch.cuda.is_available():   # a CPU run's snapshot has none; a bigger machine's has more
        for index, cuda_state in enumerate(rng['cuda'][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def dataset_kwargs(opts: TrainingOptions, dataset) -> dict:
    kwargs = dict(path=opts.data, resolution=dataset.resolution, use_labels=opts.cond, max_size=None, xflip=opts.mirror,
                  random_seed=opts.seed)
    if opts.cond and dataset.class_names:   # so that generating and the app can say "jacket", not "class 5"
        kwargs['class_names'] = list(dataset.class_names)
    return kwargs


# ------------------------------------------------------------------------------------------------
# Reporting.

class RunLog:
    """Prints and appends to log.txt (rank 0 only)."""

    def __init__(self, run_dir: str, enabled: bool):
        self.path = os.path.join(run_dir, 'log.txt')
        self.enabled = enabled

    def __call__(self, line: str) -> None:
        if not self.enabled:
            return
        tqdm.write(line)
        with open(self.path, 'a') as f:
            f.write(line + '\n')


def make_bar(state: Counters, tick_nimg: int, total_nimg: int, batch: int):
    # A tick (and the run) ends at the first whole batch that reaches its image count.
    images = -(-max(min(tick_nimg, total_nimg - state.cur_nimg), 1) // batch) * batch if state.cur_tick else batch
    return tqdm(total=images, desc=f'tick {state.cur_tick}', unit='img', leave=False, dynamic_ncols=True)


def tick_line(state: Counters, s: dict, opts: TrainingOptions) -> str:
    def mean(name):
        return s[name]['mean'] if name in s else float('nan')
    sec_per_kimg = mean('Timing/sec_per_kimg')
    eta = max(opts.kimg - state.cur_nimg / 1000, 0) * sec_per_kimg
    return (f'tick {state.cur_tick:<5d} kimg {state.cur_nimg / 1000:<8.3f} '
            f'sec/kimg {sec_per_kimg:<7.2f} eta {format_seconds(eta):<10s} '
            f'G {mean("Loss/G/loss"):+.3f} D {mean("Loss/D/loss"):+.3f} '
            f'real {mean("Loss/scores/real"):+.3f} fake {mean("Loss/scores/fake"):+.3f} '
            f'augment {mean("Progress/augment"):.3f}')


def format_seconds(s: float) -> str:
    s = int(s)
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m {s % 60:02d}s'
    return f'{s // 3600}h {s // 60 % 60:02d}m'


def resident_memory_gb() -> float:
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 30
    except (OSError, ValueError):
        return 0.0


class SnapshotGrid:
    """Fixed reals and latents for the reals.png / fakesNNNNNN.png grids."""

    def __init__(self, dataset, G_ema, seed: int, device: torch.device, max_side: int = 16):
        res = dataset.resolution
        self.cols = int(np.clip(7680 // res, 7, max_side))
        self.rows = int(np.clip(4320 // res, 4, max_side))
        n = min(self.cols * self.rows, len(dataset))
        idx = np.random.RandomState(seed).permutation(len(dataset))[:n]
        self.dataset, self.idx = dataset, idx
        self.G_ema, self.device = G_ema, device
        gen = torch.Generator().manual_seed(seed)
        self.z = torch.randn([n, G_ema.z_dim], generator=gen)
        self.c = torch.from_numpy(np.stack([dataset.get_label(int(i)) for i in idx])).to(torch.float32) \
            if dataset.label_dim else torch.zeros([n, 0])

    def save_reals(self, path: str) -> None:
        images = [self.dataset[int(i)][0].transpose(1, 2, 0) for i in self.idx]
        save_image(image_grid(images, self.cols), path)

    @torch.no_grad()
    def save_fakes(self, path: str, batch: int = 32) -> None:
        images = []
        for z, c in zip(self.z.split(batch), self.c.split(batch)):
            images.extend(to_uint8(self.G_ema(z.to(self.device), c.to(self.device), noise_mode='const')))
        save_image(image_grid(images, self.cols), path)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)   # what StopFlag turns into a snapshot and a clean exit


class StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a snapshot and ends the run cleanly.

    Installed as early as possible (train.py does it before anything is created), so that an early
    Ctrl-C still ends in a snapshot after the first step. `external` is an event a launching parent
    process sets when it got the signal while this process could not hear it yet (starting up)."""

    def __init__(self, external: Any = None):
        self.requested = False
        self.external = external
        # The loop keeps `step_from` at cur_nimg where the step in progress (or the next one) starts; the
        # handler records it, so that the log shows the run stopped after exactly that step.
        self.step_from: Optional[int] = None
        self.requested_at: Optional[int] = None
        self.previous = {}
        for sig in STOP_SIGNALS:
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not the main thread
                pass

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:   # a second Ctrl-C aborts at once; a repeated SIGTERM
            raise KeyboardInterrupt                      # (a scheduler's reminder) still lets the snapshot finish
        if not self.requested:
            self.requested_at = self.step_from
        self.requested = True
        if distributed.rank() == 0:
            tqdm.write('stopping after this step; a snapshot will be written (Ctrl-C again to abort)')

    def agreed(self) -> bool:
        """True when any rank was asked to stop (all ranks must call this every step)."""
        if self.external is not None and self.external.is_set():
            self.requested = True
        return distributed.any_rank(self.requested)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run_metrics(opts, G_ema, snapshot_path, rank, device, log, events=None, cur_nimg: int = 0) -> None:
    from metrics.api import calc_metric, report_metric   # imported lazily: detectors load only when asked
    for metric in opts.metrics:
        result = calc_metric(metric, G=G_ema, data=opts.data, mirror=opts.mirror, num_gpus=distributed.world_size(),
                             rank=rank, device=device, detector_dir=opts.detector_dir)
        if rank == 0:
            report_metric(result, run_dir=opts.run_dir, snapshot_pkl=os.path.basename(snapshot_path))
            log(f'{metric}: {result["results"]}')
            if events is not None:
                events.scalars(cur_nimg, {f'Metrics/{k}': v for k, v in result['results'].items()})


def note_best(run_dir: str, log) -> None:
    """Rank best.json's snapshots again once the new snapshot is on disk (metrics run before it is written,
    and only snapshots that exist can be best), and log the best."""
    from metrics.best import best_line, update_best
    update_best(run_dir)
    line = best_line(run_dir)
    if line:
        log(line)
