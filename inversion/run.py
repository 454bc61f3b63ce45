"""One inversion from start to finish: method dispatch for a prepared target, and the file-level driver
behind invert.py (load the snapshot, prepare each photo, invert, write every output, log stats)."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from data.member_limits import special_file_reason
from generation.seeds import ClassLabelError, class_label
from networks.snapshot import Source, load_generator, open_network, resolve_source
from torch_utils.cli import UserError, check_output_path
from torch_utils.devices import device_from_option
from torch_utils.jsonl import append_jsonl, read_jsonl
from torch_utils.media import image_uint8, save_image, side_by_side, write_frames

from . import outputs
from .hyperstyle import Inverter, TrainOptions, generator_fingerprint, invert_hyperstyle, load_inverter, train_inverter
from .hypernet import fold_offsets
from .perceptual import Perceptual, load_perceptual
from .preprocess import Target, TargetError, list_targets, load_target
from .projector import LatentStats, ProjectOptions, latent_stats, project
from .pti import TuningOptions, pivotal_tuning
from .quality import psnr, ssim

METHODS = ('project', 'pti', 'hyperstyle')
# NVIDIA's projector runs 1000 steps, PTI's pivot 450. Both start at learning rate 0.1 here: PTI's code
# uses 5e-3 for its pivot, which on generators whose W is spread wider than FFHQ's leaves the pivot near
# w_avg; the pivot is meant to be the best W projection.
PROJECT_STEPS = {'project': 1000, 'pti': 450}
MAX_VIDEO_FRAMES = 150


@dataclasses.dataclass
class Inversion:
    method: str                       # 'project', 'pti' or 'hyperstyle'
    space: str                        # latent space of `ws`
    ws: torch.Tensor                  # [1, num_ws, w_dim]
    image: torch.Tensor               # [1, C, R, R] reconstruction, = G.synthesis(ws, noise_mode='const')
    G: nn.Module                      # the generator that produces `image` from `ws`
    tuned: bool                       # whether G's weights differ from the snapshot's (PTI, HyperStyle)
    noise: dict[str, torch.Tensor]    # optimised noise maps (projection, PTI)
    frames: list[torch.Tensor]        # reconstructions along the way, for --video
    steps: dict[str, int]

    @property
    def tag(self) -> str:
        return {'w': 'project-w', 'w+': 'project-wp'}[self.space] if self.method == 'project' else self.method


@dataclasses.dataclass
class InvertOptions:
    """invert.py's options, one field per command-line option (same names and defaults)."""
    method: str = 'pti'
    network: str = ''
    target: Optional[str] = None
    outdir: str = ''
    mask: Optional[str] = None
    fit: str = 'auto'
    background: Optional[tuple] = None
    space: str = 'w'
    steps: Optional[int] = None                # default: PROJECT_STEPS[method]
    lr: Optional[float] = None                 # default: 0.1
    pti_steps: int = 350
    pti_lr: float = 3e-4
    locality: bool = True
    perceptual: str = 'vgg16'
    perceptual_weight: float = 1.0
    pixel_weight: float = 1.0
    seed: int = 0
    class_idx: Optional[Union[int, str]] = None   # an index or a recorded class name
    video: bool = False
    device: str = 'auto'
    encoder: Optional[str] = None
    encoder_iters: int = 5
    hyper_iters: int = 5
    train_encoder: bool = False
    train_steps: int = 20000
    train_batch: int = 8
    train_lr: float = 1e-4
    w_avg_samples: int = 10000

    # Each stage's recipe takes these options under the same names; None picks the method's default.
    def projection(self) -> ProjectOptions:
        return ProjectOptions(space=self.space, steps=self.steps if self.steps is not None else PROJECT_STEPS[self.method],
                              lr=self.lr if self.lr is not None else ProjectOptions.lr,
                              perceptual_weight=self.perceptual_weight, pixel_weight=self.pixel_weight,
                              w_avg_samples=self.w_avg_samples)

    def tuning(self) -> TuningOptions:
        return TuningOptions(pti_steps=self.pti_steps, pti_lr=self.pti_lr, pixel_weight=self.pixel_weight,
                             perceptual_weight=self.perceptual_weight, locality=self.locality)

    def training(self) -> TrainOptions:
        return TrainOptions(encoder_steps=self.train_steps, hyper_steps=self.train_steps, train_batch=self.train_batch,
                            train_lr=self.train_lr, iterations=3, w_avg_samples=self.w_avg_samples, seed=self.seed)


def invert(G: nn.Module, target: Target, opts: InvertOptions, *, perceptual: Optional[Perceptual],
           inverter: Optional[Inverter] = None, stats: Optional[LatentStats] = None, progress: bool = True,
           callback: Optional[Callable[[str, int, dict], None]] = None) -> Inversion:
    """Invert one prepared target with `opts.method`; G is left unchanged. `callback(stage, step, losses)` is
    called after every optimisation step ('project', then 'pti'); an exception it raises stops the run."""
    method = opts.method
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    device = next(G.parameters()).device
    image_t = target.image.to(device)
    mask = target.mask.to(device) if target.mask is not None else None

    if method == 'hyperstyle':   # the encoder reads the class off the photo: no label goes in
        if inverter is None:
            raise ValueError('hyperstyle needs a trained inverter (--encoder=PATH)')
        result = invert_hyperstyle(inverter, G, image_t, mask, opts.encoder_iters, opts.hyper_iters)
        tuned_G = fold_offsets(G, result.offsets) if result.offsets else G
        return Inversion(method, 'w+', result.ws, result.image, tuned_G, bool(result.offsets), {},
                         result.frames if opts.video else [], dict(encoder=opts.encoder_iters, hyper=opts.hyper_iters))

    if method == 'pti' and opts.space != 'w':
        raise ValueError('PTI pivots in W (--space=w)')
    c = class_label(G, opts.class_idx).to(device) if G.c_dim else None
    recipe = opts.projection()
    stats = stats or latent_stats(G, opts.w_avg_samples, c=c)
    proj = project(G, image_t, recipe, mask=mask, perceptual=perceptual, c=c, seed=opts.seed, stats=stats,
                   record_steps=opts.video, progress=progress, callback=_stage(callback, 'project'))
    frames = []
    if opts.video:
        every = max(1, recipe.steps // (MAX_VIDEO_FRAMES if method == 'project' else MAX_VIDEO_FRAMES // 2))
        with torch.no_grad():
            for ws in proj.ws_steps[::every]:
                frames.append(proj.G.synthesis(ws[None].to(device), noise_mode='const').cpu())
    if method == 'project':
        with torch.no_grad():
            image = proj.G.synthesis(proj.ws, noise_mode='const')
        return Inversion('project', opts.space, proj.ws, image, proj.G, False, proj.noise, frames,
                         dict(project=recipe.steps))

    tuning = pivotal_tuning(proj.G, image_t, proj.ws, opts.tuning(), mask=mask, perceptual=perceptual, c=c,
                            seed=opts.seed,
                            record_every=max(1, opts.pti_steps // (MAX_VIDEO_FRAMES // 2)) if opts.video else 0,
                            progress=progress, callback=_stage(callback, 'pti'))
    with torch.no_grad():
        image = tuning.G.synthesis(tuning.ws, noise_mode='const')
    frames += tuning.images_steps or []
    return Inversion('pti', 'w', tuning.ws, image, tuning.G, True, proj.noise, frames,
                     dict(project=recipe.steps, pti=tuning.steps))


def _stage(callback, stage: str):
    return None if callback is None else (lambda step, losses: callback(stage, step, losses))


def measure(result: Inversion, target: Target) -> dict:
    """PSNR and SSIM of the reconstruction against the target, inside the mask when there is one."""
    a = target.uint8()
    b = image_uint8(result.image)
    mask = target.mask[0, 0].cpu().numpy() > 0 if target.mask is not None else None
    return dict(psnr=round(psnr(a, b, mask), 3), ssim=round(ssim(a, b, mask), 4))


def write_outputs(result: Inversion, target: Target, outdir: str, *, snapshot: Optional[dict], source: str,
                  video: bool) -> dict[str, str]:
    """Reconstruction, side-by-side, latents, video and tuned snapshot of one inversion; returns their paths."""
    base = os.path.join(outdir, f'{target.name}_{result.tag}')
    target_u8 = target.uint8()
    recon_u8 = image_uint8(result.image)
    files = dict(reconstruction=base + '.png', compare=base + '_compare.png', latents=base + '.npz')
    save_image(recon_u8, files['reconstruction'])
    save_image(side_by_side(target_u8, recon_u8), files['compare'])
    outputs.save_latents(files['latents'], result.ws, result.space, result.noise, method=result.method)
    if video and result.frames:
        files['video'] = base + '.mp4'
        write_frames(files['video'], [side_by_side(target_u8, image_uint8(f)) for f in result.frames],
                     fps=10)
    if result.tuned and snapshot is not None:
        files['snapshot'] = base + outputs.snapshot_suffix(source)
        outputs.save_tuned_snapshot(snapshot, result.G, files['snapshot'], source, method=result.method,
                                    target=target.name)
    return files


def output_names(images: list[str], outdir: str) -> dict[str, str]:
    """The name each photo's outputs start with: its stem, or stem_ext (shirt_jpg) where another photo of
    this run, or an earlier run into the same outdir (invert.jsonl), has the same stem from another file,
    so that shirt.jpg and shirt.png never overwrite each other's results."""
    def stem(path: str) -> str:
        return os.path.splitext(os.path.basename(path))[0]
    taken: dict[str, set[str]] = {}
    for path in images:
        taken.setdefault(stem(path), set()).add(os.path.basename(path))
    for record in read_jsonl(os.path.join(outdir, 'invert.jsonl')):
        if isinstance(record.get('target'), str) and 'skipped' not in record:
            taken.setdefault(stem(record['target']), set()).add(os.path.basename(record['target']))
    return {path: stem(path) if len(taken[stem(path)]) == 1 else os.path.basename(path).replace('.', '_')
            for path in images}


def _inside_folders(image: str, target: str, mask: Optional[str], masks: Optional[str]) -> None:
    """A photo (or mask) of a folder is read only when it is a regular file inside the folder, as dataset_tool.py
    reads folders: a link out of it (to /etc/passwd, say) is skipped with the reason."""
    for path, folder in ((image, target), (mask, masks)):
        if path is not None and folder is not None and os.path.isdir(folder):
            reason = special_file_reason(path, os.path.realpath(folder))
            if reason:
                raise TargetError(f'{path}: {reason}')


def run_inversion(opts: InvertOptions, *, perceptual: Optional[Perceptual] = None,
                  device: Union[str, torch.device] = 'cpu', save_target: bool = True,
                  log: Callable[[str], None] = print, source: Optional[Source] = None) -> list[dict]:
    """Invert one photo or a folder of photos into `opts.network` (read from `source`, where the caller has
    resolved it); unreadable photos are reported and skipped."""
    network, outdir, method = opts.network, opts.outdir, opts.method
    opened = open_network(source or network, device=device, keys=None)   # D and the rest: for a tuned snapshot
    G, snapshot = opened.G, opened.data
    pairs = list_targets(opts.target, opts.mask)
    inverter = load_inverter(opts.encoder, G, device) if method == 'hyperstyle' else None
    if inverter is not None and inverter.info.get('fingerprint') not in (None, ''):
        if inverter.info['fingerprint'] != generator_fingerprint(G):
            log(f'warning: {opts.encoder} was trained for a different snapshot of the same shape; results may be poor')
    try:   # HyperStyle's encoder needs no class; a given one is still checked
        needs_class = G.c_dim and (method != 'hyperstyle' or opts.class_idx is not None)
        c = class_label(G, opts.class_idx).to(device) if needs_class else None
    except ClassLabelError as e:
        raise ClassLabelError(f'{network}: {e}') from None
    os.makedirs(outdir, exist_ok=True)
    stats_path = os.path.join(outdir, 'invert.jsonl')
    names = output_names([p for p, _ in pairs], outdir)
    stats = latent_stats(G, opts.w_avg_samples, c=c) if method != 'hyperstyle' else None
    records = []
    for image_path, mask_path in tqdm(pairs, desc=f'invert ({method})', unit='img', disable=len(pairs) < 2):
        try:
            _inside_folders(image_path, opts.target, mask_path, opts.mask)
            prepared = load_target(image_path, G.img_resolution, G.img_channels, mask_path=mask_path, fit=opts.fit,
                                   background=opts.background, name=names[image_path])
        except TargetError as e:
            if len(pairs) == 1:   # one photo: its reason is the error, said once
                raise
            log(f'skipped: {e}')
            records.append(dict(target=str(image_path), skipped=str(e)))
            continue
        start = time.time()
        result = invert(G, prepared, opts, perceptual=perceptual, inverter=inverter, stats=stats)
        seconds = time.time() - start
        if save_target:
            save_image(prepared.uint8(), os.path.join(outdir, f'{prepared.name}_target.png'))
            if prepared.mask is not None:
                m = (prepared.mask[0, 0].cpu().numpy() * 255).astype(np.uint8)[:, :, None]
                save_image(m, os.path.join(outdir, f'{prepared.name}_mask.png'))
        files = write_outputs(result, prepared, outdir, snapshot=snapshot, source=network, video=opts.video)
        record = dict(target=str(image_path), name=prepared.name, mask=mask_path, method=result.method,
                      space=result.space, network=str(network), seconds=round(seconds, 3), steps=result.steps,
                      perceptual=getattr(perceptual, 'name', None), device=str(device), **measure(result, prepared),
                      files=files)
        append_jsonl(stats_path, record)
        records.append(record)
        log(f'{prepared.name}: {result.tag} PSNR {record["psnr"]:.2f} dB, SSIM {record["ssim"]:.3f}, '
            f'{seconds:.1f} s -> {files["reconstruction"]}')
    return records


def run_job(opts: InvertOptions, log: Callable[[str], None] = print) -> list[dict]:
    """Everything invert.py does: check the options, load the perceptual loss, train a HyperStyle inverter
    if asked, invert the targets. Failures a user can cause raise UserError subclasses."""
    if opts.train_encoder and opts.method != 'hyperstyle':
        raise UserError('--train-encoder belongs to --method=hyperstyle')
    if not opts.train_encoder and not opts.target:
        raise UserError('--target (or --input_image) is required')
    if opts.method == 'pti' and opts.space != 'w':
        raise UserError('PTI pivots in W: leave --space at w')
    if opts.method == 'hyperstyle' and not opts.train_encoder and not opts.encoder:
        raise UserError('--method=hyperstyle needs --encoder=PATH; train one with '
                             '--method=hyperstyle --train-encoder --network=... --outdir=...')
    check_output_path(opts.outdir, '--outdir')
    source = resolve_source(opts.network)
    device = device_from_option(opts.device)
    torch.manual_seed(opts.seed)
    perceptual = load_perceptual(opts.perceptual, device)
    if perceptual is None and opts.pixel_weight <= 0:
        raise UserError('--perceptual=none with --pixel-weight=0 leaves nothing to optimise')
    if opts.train_encoder:
        opts = dataclasses.replace(opts, encoder=opts.encoder or os.path.join(opts.outdir, 'hyperstyle.pt'))
        G = load_generator(source, device=device)
        train_inverter(G, opts.training(), perceptual=perceptual, out_path=opts.encoder,
                       stats_path=os.path.join(os.path.dirname(os.path.abspath(opts.encoder)), 'hyperstyle_train.jsonl'),
                       source=str(opts.network))
        log(f'wrote {opts.encoder}')
        if not opts.target:
            return []
    records = run_inversion(opts, perceptual=perceptual, device=device, log=log, source=source)
    done = [r for r in records if 'skipped' not in r]
    if not done:
        raise UserError(f'{opts.target}: no image could be inverted')
    log(f'inverted {len(done)} image(s) into {opts.outdir}' +
        (f'; skipped {len(records) - len(done)}' if len(done) < len(records) else ''))
    return records
