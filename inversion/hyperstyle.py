"""Training and running the encoder + hypernetwork pair ("HyperStyle") for one generator snapshot.

Training needs no real photos and no face-specific networks: the generator draws its own training set.
Each batch is G's images of random latents (with style mixing, so that W+ is covered, and random noise,
so that the inverter does not rely on the noise maps), and because those latents are known, the encoder
is also taught to predict them directly (`latent_weight`), which makes a from-scratch encoder train fast.

Stage 1 trains the encoder (ReStyle iterations, e4e's progressive offsets and offset penalty); stage 2
freezes it and trains the hypernetwork on the encoder's latents. The result is one `.pt` file (weights
only, loadable with `torch.load(weights_only=True)`) that records which generator it was trained for.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Optional, Union

import torch
from torch import nn
from tqdm import tqdm

from torch_utils import safe_pickle
from torch_utils.atomic import atomic_write
from torch_utils.cli import UserError
from torch_utils.jsonl import append_jsonl

from .encoder import LatentEncoder, encode
from .hypernet import WeightHypernetwork, modulated_layers, refine, synthesize
from .losses import masked_mse
from .perceptual import Perceptual
from .projector import every_class, latent_stats

FORMAT = 'stylegan3-clothing/inverter'
VERSION = 1


class InverterError(UserError):
    """An inverter file that cannot be used with this generator; the message names the file."""


@dataclasses.dataclass
class Inverter:
    encoder: LatentEncoder
    hypernet: WeightHypernetwork
    w_avg: torch.Tensor          # [1, 1, w_dim]
    info: dict                   # what it was trained for and how

    def to(self, device) -> 'Inverter':
        self.encoder.to(device)
        self.hypernet.to(device)
        self.w_avg = self.w_avg.to(device)
        return self


def generator_fingerprint(G: nn.Module) -> str:
    """Short hash of G's parameters: tells whether an inverter was trained for exactly this snapshot."""
    h = hashlib.sha1()
    for name, p in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to('cpu', torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def generator_shape(G: nn.Module) -> dict:
    return dict(img_resolution=int(G.img_resolution), img_channels=int(G.img_channels), num_ws=int(G.num_ws),
                w_dim=int(G.w_dim), z_dim=int(G.z_dim), c_dim=int(G.c_dim), family=G.family)


def save_inverter(inverter: Inverter, path: Union[str, os.PathLike]) -> None:
    def record(module):
        return dict(init_kwargs=module.init_kwargs,
                    state_dict={k: v.detach().cpu() for k, v in module.state_dict().items()})
    payload = dict(format=FORMAT, version=VERSION, encoder=record(inverter.encoder),
                   hypernet=record(inverter.hypernet), w_avg=inverter.w_avg.detach().cpu(), info=inverter.info)
    atomic_write(path, lambda f: torch.save(payload, f))


def load_inverter(path: Union[str, os.PathLike], G: Optional[nn.Module] = None,
                  device: Union[str, torch.device] = 'cpu') -> Inverter:
    """Read an inverter; with G, check that it was trained for a generator of the same shape."""
    if not os.path.isfile(path):
        raise InverterError(f'{path}: no such file (train one with: invert.py --method=hyperstyle --train-encoder ...)')
    try:
        data = safe_pickle.load_tensor_file(path)   # torch.load's own unpickler crashes on deeply nested data
    except Exception as e:   # zip/pickle errors surface as several exception types
        raise InverterError(f'{path}: not a readable inverter file ({type(e).__name__}: {e})') from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise InverterError(f'{path}: not an inverter file (expected format {FORMAT!r})')
    encoder = LatentEncoder(**data['encoder']['init_kwargs'])
    encoder.load_state_dict(data['encoder']['state_dict'])
    hypernet = WeightHypernetwork(**data['hypernet']['init_kwargs'])
    hypernet.load_state_dict(data['hypernet']['state_dict'])
    inverter = Inverter(encoder.eval().requires_grad_(False), hypernet.eval().requires_grad_(False),
                        data['w_avg'], dict(data.get('info') or {}))
    if G is not None:
        trained = inverter.info.get('generator', {})
        here = generator_shape(G)
        keys = ('img_resolution', 'img_channels', 'num_ws', 'w_dim')
        if any(trained.get(k) != here[k] for k in keys):
            raise InverterError(f'{path}: trained for a generator with ' + ', '.join(f'{k}={trained.get(k)}' for k in keys) +
                                ', but this one has ' + ', '.join(f'{k}={here[k]}' for k in keys))
        names = dict(G.synthesis.named_parameters())
        for name, out_ch, in_ch in hypernet.layers:
            if name not in names or tuple(names[name].shape[:2]) != (out_ch, in_ch):
                raise InverterError(f'{path}: layer {name} of the inverter does not exist in this generator')
    return inverter.to(device)


def sample_training_batch(G: nn.Module, batch: int, gen: torch.Generator, mixing_prob: float = 0.5,
                          truncation_psi: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images in [-1, 1], their W+ latents) drawn from G itself; images carry random per-pixel noise."""
    device = G.mapping.w_avg.device
    z = torch.randn([batch, G.z_dim], generator=gen, device=device)
    c = torch.zeros([batch, G.c_dim], device=device)
    if G.c_dim:
        c[torch.arange(batch), torch.randint(G.c_dim, [batch], generator=gen, device=device)] = 1
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=truncation_psi)
        if mixing_prob > 0 and G.num_ws > 1:
            other = G.mapping(torch.randn([batch, G.z_dim], generator=gen, device=device), c,
                              truncation_psi=truncation_psi)
            cut = torch.randint(1, G.num_ws, [batch], generator=gen, device=device)
            mix = torch.rand([batch], generator=gen, device=device) < mixing_prob
            later = torch.arange(G.num_ws, device=device)[None] >= cut[:, None]
            ws = torch.where((later & mix[:, None])[:, :, None], other, ws)
        noise_seed = int(torch.randint(2 ** 31, [1], generator=gen, device=device))
        devices = [device] if device.type == 'cuda' else []
        with torch.random.fork_rng(devices=devices):   # the synthesis' noise draws from the global RNG
            torch.manual_seed(noise_seed)
            images = G.synthesis(ws, noise_mode='random')
    return images, ws


def _reconstruction(images, targets, perceptual, perceptual_weight, pixel_weight):
    terms = {'mse': masked_mse(images, targets).mean()}
    loss = pixel_weight * terms['mse']
    if perceptual is not None and perceptual_weight > 0:
        terms['perceptual'] = perceptual(images, targets).mean()
        loss = loss + perceptual_weight * terms['perceptual']
    return loss, terms


@dataclasses.dataclass
class TrainOptions:
    """How the encoder and hypernetwork are trained; invert.py --train-encoder sets the fields named as its
    options (train_batch, train_lr, w_avg_samples, seed) and both stages' steps from --train-steps."""
    encoder_steps: int = 20000
    hyper_steps: int = 20000
    train_batch: int = 8
    train_lr: float = 1e-4
    iterations: int = 3
    perceptual_weight: float = 0.8
    pixel_weight: float = 1.0
    latent_weight: float = 1.0
    delta_weight: float = 2e-4
    progressive_interval: int = 2000
    mixing_prob: float = 0.5
    base_channels: int = 32
    max_channels: int = 256
    head_hidden: int = 256
    rank: int = 4
    hyper_layers: Optional[list[str]] = None
    w_avg_samples: int = 10000
    seed: int = 0
    checkpoint_every: int = 1000


def _log(stats_path: Optional[Union[str, os.PathLike]], record: dict) -> None:
    """A line of the training log, if one is kept; a diverging loss is logged as NaN rather than refused."""
    if stats_path:
        append_jsonl(stats_path, record, allow_nan=True)


def train_inverter(G: nn.Module, o: TrainOptions = TrainOptions(), *, perceptual: Optional[Perceptual] = None,
                   out_path: Optional[Union[str, os.PathLike]] = None,
                   stats_path: Optional[Union[str, os.PathLike]] = None, progress: bool = True,
                   source: str = '') -> Inverter:
    """Train an encoder and a hypernetwork for G on G's own images; save to `out_path` as it goes."""
    G = G.eval().requires_grad_(False)
    torch.manual_seed(o.seed)   # initial weights of the encoder and hypernetwork
    gen = torch.Generator(device=G.mapping.w_avg.device).manual_seed(o.seed)
    inverter, w_std = new_inverter(G, o, perceptual, source)
    if stats_path:
        os.makedirs(os.path.dirname(os.path.abspath(stats_path)), exist_ok=True)

    def checkpoint():
        if out_path is not None:
            save_inverter(inverter, out_path)

    _train_encoder(inverter, G, o, gen, w_std, perceptual, stats_path, checkpoint, progress)
    _train_hypernet(inverter, G, o, gen, perceptual, stats_path, checkpoint, progress)
    checkpoint()
    return inverter


def new_inverter(G: nn.Module, o: TrainOptions, perceptual: Optional[Perceptual], source: str) -> tuple[Inverter, torch.Tensor]:
    """An untrained encoder and hypernetwork for G (from the global RNG), and the std of W per dimension, the
    unit of the encoder's latent loss."""
    device = G.mapping.w_avg.device
    stats = latent_stats(G, o.w_avg_samples, c=every_class(G, o.w_avg_samples))   # it trains on every class
    encoder = LatentEncoder(img_resolution=G.img_resolution, img_channels=G.img_channels, num_ws=G.num_ws,
                            w_dim=G.w_dim, base_channels=o.base_channels, max_channels=o.max_channels,
                            head_hidden=o.head_hidden).to(device)
    encoder.w_scale.copy_(stats.w_std_dims.to(device))
    layers = modulated_layers(G)
    if o.hyper_layers:
        unknown = sorted(set(o.hyper_layers) - {n for n, _, _ in layers})
        if unknown:
            raise ValueError(f'unknown generator layers {unknown}; choose from {[n for n, _, _ in layers]}')
        layers = [entry for entry in layers if entry[0] in o.hyper_layers]
    hypernet = WeightHypernetwork(img_resolution=G.img_resolution, img_channels=G.img_channels, layers=layers,
                                  rank=o.rank, base_channels=o.base_channels, max_channels=o.max_channels,
                                  hidden=o.head_hidden).to(device)
    info = dict(generator=generator_shape(G), fingerprint=generator_fingerprint(G), source=str(source),
                options=dict(encoder_steps=o.encoder_steps, hyper_steps=o.hyper_steps, batch_size=o.train_batch,
                             learning_rate=o.train_lr, iterations=o.iterations, perceptual_weight=o.perceptual_weight,
                             pixel_weight=o.pixel_weight, latent_weight=o.latent_weight, delta_weight=o.delta_weight,
                             progressive_interval=o.progressive_interval, mixing_prob=o.mixing_prob, rank=o.rank,
                             perceptual=getattr(perceptual, 'name', None), seed=o.seed),
                encoder_steps_done=0, hyper_steps_done=0)
    return Inverter(encoder, hypernet, stats.w_avg.to(device), info), stats.w_std_dims.to(device)


def _train_encoder(inverter: Inverter, G: nn.Module, o: TrainOptions, gen: torch.Generator, w_std: torch.Tensor,
                   perceptual: Optional[Perceptual], stats_path, checkpoint, progress: bool) -> None:
    """Stage 1: ReStyle iterations from w_avg, each supervised, with e4e's progressive offsets."""
    encoder, w_avg, info = inverter.encoder, inverter.w_avg, inverter.info
    start_image = G.synthesis(w_avg.expand(o.train_batch, G.num_ws, -1), noise_mode='const')
    encoder.train().requires_grad_(True)
    opt = torch.optim.Adam(encoder.parameters(), lr=o.train_lr)
    encoder.active_offsets.fill_(1 if o.progressive_interval > 0 else G.num_ws)
    t0 = time.time()
    for step in tqdm(range(o.encoder_steps), desc='train encoder', unit='step', disable=not progress):
        if o.progressive_interval > 0:
            encoder.active_offsets.fill_(min(G.num_ws, 1 + step // o.progressive_interval))
        targets, ws_true = sample_training_batch(G, o.train_batch, gen, o.mixing_prob)
        ws = w_avg.expand(o.train_batch, G.num_ws, -1)
        image = start_image
        opt.zero_grad(set_to_none=True)
        record = {}
        for it in range(o.iterations):
            # ReStyle: each iteration's prediction is supervised; inputs from earlier iterations are detached.
            delta, offsets = encoder(targets, image.detach(), return_offsets=True)
            ws = ws.detach() + delta
            image = G.synthesis(ws, noise_mode='const')
            loss, terms = _reconstruction(image, targets, perceptual, o.perceptual_weight, o.pixel_weight)
            terms['latent'] = ((ws - ws_true) / w_std).square().mean()
            terms['delta'] = offsets[:, 1:].square().sum(dim=2).mean() if G.num_ws > 1 else torch.zeros([])
            loss = loss + o.latent_weight * terms['latent'] + o.delta_weight * terms['delta']
            (loss / o.iterations).backward()
            record = {k: float(v.detach()) for k, v in terms.items()}
        opt.step()
        info['encoder_steps_done'] = step + 1
        if (step + 1) % max(1, o.checkpoint_every // 10) == 0 or step + 1 == o.encoder_steps:
            _log(stats_path, dict(stage='encoder', step=step + 1, seconds=round(time.time() - t0, 2),
                                  active_offsets=int(encoder.active_offsets), **record))
        if o.checkpoint_every and (step + 1) % o.checkpoint_every == 0:
            checkpoint()
    encoder.active_offsets.fill_(G.num_ws)
    encoder.eval().requires_grad_(False)


def _train_hypernet(inverter: Inverter, G: nn.Module, o: TrainOptions, gen: torch.Generator,
                    perceptual: Optional[Perceptual], stats_path, checkpoint, progress: bool) -> None:
    """Stage 2: the hypernetwork's refinements, on the frozen encoder's latents."""
    hypernet, info = inverter.hypernet, inverter.info
    hypernet.train().requires_grad_(True)
    opt = torch.optim.Adam(hypernet.parameters(), lr=o.train_lr)
    t0 = time.time()
    for step in tqdm(range(o.hyper_steps), desc='train hypernetwork', unit='step', disable=not progress):
        targets, _ = sample_training_batch(G, o.train_batch, gen, o.mixing_prob)
        ws, image = encode(inverter.encoder, G, targets, inverter.w_avg, o.iterations)[-1]
        offsets: dict[str, torch.Tensor] = {}
        opt.zero_grad(set_to_none=True)
        record = {}
        for it in range(o.iterations):
            delta = hypernet(targets, image.detach())
            offsets = {k: (offsets[k].detach() if k in offsets else 0) + v for k, v in delta.items()}
            image = synthesize(G, ws, offsets)
            loss, terms = _reconstruction(image, targets, perceptual, o.perceptual_weight, o.pixel_weight)
            (loss / o.iterations).backward()
            record = {k: float(v.detach()) for k, v in terms.items()}
        opt.step()
        info['hyper_steps_done'] = step + 1
        if (step + 1) % max(1, o.checkpoint_every // 10) == 0 or step + 1 == o.hyper_steps:
            _log(stats_path, dict(stage='hypernet', step=step + 1, seconds=round(time.time() - t0, 2), **record))
        if o.checkpoint_every and (step + 1) % o.checkpoint_every == 0:
            checkpoint()
    hypernet.eval().requires_grad_(False)


@dataclasses.dataclass
class HyperStyleResult:
    ws: torch.Tensor                         # [1, num_ws, w_dim] from the encoder
    offsets: dict[str, torch.Tensor]         # accumulated weight offsets (sample 0)
    image: torch.Tensor                      # final reconstruction
    frames: list[torch.Tensor]               # reconstruction after every encoder and hypernetwork iteration


def invert_hyperstyle(inverter: Inverter, G: nn.Module, target: torch.Tensor, mask: Optional[torch.Tensor] = None,
                      encoder_iters: int = 5, hyper_iters: int = 5) -> HyperStyleResult:
    """One encoder pass plus ReStyle corrections, then HyperStyle's weight refinements."""
    steps = encode(inverter.encoder, G, target, inverter.w_avg, encoder_iters, mask=mask)
    if steps:
        ws, image = steps[-1]
    else:
        ws = inverter.w_avg.expand(target.shape[0], G.num_ws, -1).clone()
        image = synthesize(G, ws)
    refinements = refine(inverter.hypernet, G, target, ws, hyper_iters, mask=mask)
    offsets = refinements[-1][0] if refinements else {}
    if refinements:
        image = refinements[-1][1]
    frames = [img for _, img in steps] + [img for _, img in refinements]
    return HyperStyleResult(ws=ws, offsets=offsets, image=image, frames=frames)
