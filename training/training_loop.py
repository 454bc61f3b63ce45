"""The one training loop shared by every config (StyleGAN2, StyleGAN3-T, StyleGAN3-R), on CPU or GPUs.

Reading order: `training_loop` (the loop), `train_step` (one step) and `run_phase`, then what they are
built from (`build_run`, the networks and optimisers, the data stream). Around it: training/options.py
(what train.py decides), training/resume.py (the run's state, saved in every snapshot for an exact
resume), training/reporting.py (log, progress, statistics, image grids), training/loss.py.

Each step draws one global batch: reals in a seeded order and latents from a seeded generator that
every rank shares; rank r takes the samples r, r+R, r+2R, ... of it. So the maths does not depend on
the number of processes. Per phase (Gmain, Greg, Dmain, Dreg; the reg phases every k-th step with gain
k), gradients accumulate over `batch_gpu`-sized rounds as a mean over the global batch, are averaged
over ranks and applied by Adam. Then G_ema follows G, and ADA adjusts the augmentation probability.
"""
from __future__ import annotations

import copy
import os
import signal
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np
import torch

from data import DatasetError
from data.dataset import ImageFolderDataset
from networks import discriminator, stylegan2, stylegan3
from networks.snapshot import snapshot_name
from torch_utils import distributed
from torch_utils.cli import UserError
from training.augment import AdaptiveP, AugmentPipe, augment_kwargs_for
from training.loss import LOSSES, LossOptions, StyleGANLoss
from training.options import TrainingOptions
from training.reporting import Reporter, SnapshotGrid
from training.resume import Run, preserved_rng, resume_or_transfer, set_rng_states
from training.run_dir import SnapshotKeeper, tidy_run_dir
from training.stats import StatsCollector
from training.stop import StopFlag


class SnapshotMetrics(Protocol):
    """The metrics train.py hands the loop for its scheduled snapshots (metrics/ sits above training/)."""

    def evaluate(self, G_ema: torch.nn.Module, snapshot_path: str) -> dict[str, dict[str, float]]:
        """Every rank, before the snapshot is written: {metric: {result key: value}}, recorded by rank 0."""

    def written(self, snapshot_path: str) -> Optional[str]:
        """Rank 0, once the snapshot is on disk: a line for the log (the best snapshot so far), if any."""


def training_loop(opts: TrainingOptions, rank: int = 0, device: torch.device = torch.device('cpu'),
                  stop: Optional[StopFlag] = None, metrics: Optional[SnapshotMetrics] = None) -> None:
    world, is_main = distributed.world_size(), rank == 0
    stop = stop if stop is not None else StopFlag()
    report = Reporter(opts, device, enabled=is_main)
    log = report.log
    torch.backends.cudnn.benchmark = not opts.nobench
    torch.backends.cuda.matmul.allow_tf32 = False   # exact fp32 maths, as NVIDIA's loop
    torch.backends.cudnn.allow_tf32 = False

    dataset = open_dataset(opts)
    log(f'dataset: {opts.data}: {len(dataset)} images, {dataset.resolution}x{dataset.resolution}, '
        f'{dataset.num_channels} channels, labels: {dataset.label_dim}')
    run, phases = build_run(opts, dataset, rank, device)
    resumed = resume_or_transfer(run, log)   # the training state an exact resume continues
    for module in (run.G, run.D, run.G_ema, run.augment_pipe):
        if module is not None:
            distributed.broadcast_module_(module)

    c = run.counters
    stream = DataStream(dataset, rank, world, opts.batch // world, opts.seed, c.batch_idx * opts.batch,
                        opts.workers, device)
    grid = SnapshotGrid(dataset, run.G_ema, opts.seed, device) if is_main else None
    snapshots = SnapshotKeeper(opts.run_dir, interrupted_source=opts.resume if resumed is not None and
                               resumed.get('interrupted') else None)
    if is_main:
        tidy_run_dir(opts.run_dir, resume=opts.resume if resumed is not None else None, next_tick=c.cur_tick,
                     cur_nimg=c.cur_nimg)
    if is_main and c.cur_nimg == 0:
        grid.save_reals(os.path.join(opts.run_dir, 'reals.png'))
        grid.save_fakes(os.path.join(opts.run_dir, 'fakes_init.png'))
    if resumed is not None:
        set_rng_states(resumed['rng'][rank])   # last: setting up the data loader drew from the global RNG
    total_nimg = int(opts.kimg * 1000)
    log(f'training for {opts.kimg:g} kimg from {c.cur_nimg / 1000:g} kimg on {world} process(es), device {device}')
    report.begin(c)

    while c.cur_nimg < total_nimg:
        stop.step_from = c.cur_nimg
        train_step(run, phases, stream, dataset, device)
        stop.step_from = c.cur_nimg   # a stop asked from here on (a snapshot being written) ends the next step
        report.step(opts.batch)
        interrupted = stop.agreed()

        # -- end of tick? (tick 0 is the first step alone, as in NVIDIA's loop) ----------------------
        done = c.cur_nimg >= total_nimg
        tick_ends = done or c.cur_tick == 0 or c.cur_nimg >= c.tick_start_nimg + int(opts.tick * 1000)
        if not tick_ends and not interrupted:
            continue
        tick_seconds = report.pause(c)
        scheduled = tick_ends and (done or c.cur_tick % opts.snap == 0)
        if tick_ends:
            augment_p = float(run.augment_pipe.p) if run.augment_pipe is not None else 0
            report.end_tick(run.stats, c, tick_seconds, augment_p)
            # The tick is closed before any snapshot, so that a resume starts the next one.
            c.cur_tick += 1
            c.tick_start_nimg = c.cur_nimg
            c.tick_seconds = 0.0
        else:
            c.tick_seconds = tick_seconds   # an interrupted tick goes on after the resume
        if scheduled or interrupted:
            path = write_snapshot(run, snapshots, grid, metrics, report, scheduled)
        if interrupted:
            during = '' if stop.requested_at is None else \
                f'stop asked during the step from {stop.requested_at / 1000:g} kimg; '
            log(f'interrupted: {during}saved {path} at {c.cur_nimg / 1000:g} kimg; resume with --resume={opts.run_dir}')
        if interrupted or done:
            break
        report.begin_tick(c)
    stop.restore()
    log('done.')


def train_step(run: Run, phases: list[Phase], stream: DataStream, dataset, device: torch.device) -> None:
    """One optimisation step over the global batch: every phase that is due, then G_ema, the counters, ADA."""
    opts, c = run.opts, run.counters
    world = distributed.world_size()
    rounds = opts.batch // world // opts.batch_gpu   # of batch_gpu samples, accumulated
    reals, real_c = stream.next()
    gen_z = torch.randn([len(phases), opts.batch, run.G.z_dim], generator=run.sample_gen).to(device)
    gen_c = random_labels(dataset, len(phases) * opts.batch, run.sample_gen).reshape(len(phases), opts.batch, -1)
    mine = slice(run.rank, opts.batch, world)
    gen_z, gen_c = gen_z[:, mine], gen_c[:, mine].to(device)
    for idx, phase in enumerate(phases):
        if c.batch_idx % phase.interval == 0:
            run_phase(phase, run.loss, reals, real_c, gen_z[idx], gen_c[idx], rounds=rounds, cur_nimg=c.cur_nimg,
                      augment_pipe=run.augment_pipe, augment_gen=run.augment_gen)
    update_ema(run.G, run.G_ema, opts, c.cur_nimg)
    c.cur_nimg += opts.batch
    c.batch_idx += 1
    if run.ada is not None:
        run.ada.step(reduce=distributed.all_reduce_sum_)


def run_phase(phase: Phase, loss: StyleGANLoss, reals, real_c, gen_z, gen_c, rounds: int, cur_nimg: int,
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


def write_snapshot(run: Run, snapshots: SnapshotKeeper, grid: Optional[SnapshotGrid],
                   metrics: Optional[SnapshotMetrics], report: Reporter, scheduled: bool) -> str:
    """The snapshot of this step, written by rank 0: a scheduled one with its fakes grid and metrics, or
    one on interruption. Every rank must call it; returns the snapshot's path."""
    opts, nimg = run.opts, run.counters.cur_nimg
    name = snapshot_name(nimg)
    path = os.path.join(opts.run_dir, f'network-snapshot-{name}.pkl')
    error = None
    with preserved_rng():   # grids and metrics must not shift the training's random streams
        data = run.state_dict(interrupted=not scheduled)
        if scheduled and metrics is not None:   # on every rank: each computes its share of the features
            report.metrics(nimg, metrics.evaluate(run.G_ema, path))
        try:
            if grid is not None and scheduled:
                grid.save_fakes(os.path.join(opts.run_dir, f'fakes{name}.png'))
            if run.rank == 0:
                snapshots.write(path, data, scheduled=scheduled)
        except OSError as e:   # disk full, permissions: stop with one line on every rank
            error = e
    if run.rank == 0 and scheduled and metrics is not None and error is None:
        best = metrics.written(path)
        if best:
            report.log(best)
    if distributed.any_rank(error is not None):
        raise UserError(f'{path}: cannot write the snapshot: '
                        f'{error.strerror or error if error is not None else "failed on rank 0"}; '
                        f'the earlier snapshots are intact')
    return path


# ------------------------------------------------------------------------------------------------
# What a run trains with.

def build_run(opts: TrainingOptions, dataset, rank: int, device: torch.device) -> tuple[Run, list[Phase]]:
    """The networks, augmentation, loss and optimisers of a fresh run, and its phases."""
    torch.manual_seed(opts.seed * distributed.world_size() + rank)   # in-network randomness (noise, style mixing)
    sample_gen = torch.Generator().manual_seed(opts.seed)
    G, D = build_networks(opts, dataset.resolution, dataset.num_channels, dataset.label_dim)
    G, D = G.train().requires_grad_(False).to(device), D.train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()

    augment_pipe = ada = None
    augment_gen = torch.Generator(device=device).manual_seed(opts.seed)
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
    run = Run(opts=opts, rank=rank, G=G, D=D, G_ema=G_ema, augment_pipe=augment_pipe, ada=ada, loss=loss,
              optimizers={phase.name[0]: phase.opt for phase in phases}, stats=stats, sample_gen=sample_gen,
              augment_gen=augment_gen, dataset_kwargs=dataset_kwargs(opts, dataset))
    return run, phases


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
# Data: an endless seeded shuffle, shared by all ranks, resumable at any position.

def open_dataset(opts: TrainingOptions) -> ImageFolderDataset:
    """The training set, checked as train.py checks it before creating anything."""
    dataset = ImageFolderDataset(opts.data, use_labels=opts.cond, xflip=opts.mirror, random_seed=opts.seed)
    if opts.cond and not dataset.has_labels:
        raise DatasetError(f'{opts.data}: --cond=True needs labels in dataset.json')
    return dataset


def dataset_kwargs(opts: TrainingOptions, dataset) -> dict:
    kwargs = dict(path=opts.data, resolution=dataset.resolution, use_labels=opts.cond, max_size=None, xflip=opts.mirror,
                  random_seed=opts.seed)
    if opts.cond and dataset.class_names:   # so that generating and the app can say "jacket", not "class 5"
        kwargs['class_names'] = list(dataset.class_names)
    return kwargs


def random_labels(dataset, n: int, gen: torch.Generator) -> torch.Tensor:
    """Labels of random training images, as NVIDIA conditions generated samples."""
    idx = torch.randint(len(dataset), [n], generator=gen)
    if dataset.label_dim == 0:
        return torch.zeros([n, 0])
    return torch.from_numpy(np.stack([dataset.get_label(int(i)) for i in idx])).to(torch.float32)


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
