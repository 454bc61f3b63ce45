"""Generating images from seeds: the seeds options name, latents, labels, StyleGAN3 input transforms,
batched synthesis.

Seeds map to latents exactly as NVIDIA's tools do (`np.random.RandomState(seed).randn(1, z_dim)`), so the
same seed gives the same garment here and in the official tools.
"""
from __future__ import annotations

import math
import re
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch

from torch_utils.cli import UserError, parse_finite
from torch_utils.cuda_graph import GraphedFunction
from torch_utils.media import to_uint8

from . import GenerationError


MAX_SEED = 2 ** 32 - 1   # numpy's seed range: seeds map to latents through np.random.RandomState, as NVIDIA's do
MAX_SEEDS = 100_000      # seeds one option may name; a range is measured before it is expanded
# What the networks compute: past these, images are saturated noise, and near float32's 3.4e38 they are NaN, which
# is written as an all-black image. Rotation is exact for any angle; ten turns either way is plenty.
MAX_PSI = 100.0          # |truncation psi|
MAX_TRANSLATE = 1000.0   # |StyleGAN3 input translation| (float32 loses the phases of the Fourier features past ~1e6)
MAX_ROTATE = 3600.0      # |rotation| in degrees


class ClassLabelError(UserError, ValueError):
    """A class index missing for a conditional network, or out of its range."""


class RangeError(UserError):
    """A seed, seed range, truncation, translation or rotation outside what the tools compute. A UserError (the
    scripts print one `error:` line and exit 1) and deliberately not a ValueError, which click would turn into a
    usage message when raised while an option is parsed."""


def check_seed_range(first: int, last: int, count: int = 0) -> None:
    """Seeds first..last, after `count` already named, before any list of them is built."""
    if not 0 <= first <= MAX_SEED or not 0 <= last <= MAX_SEED:
        bad = first if not 0 <= first <= MAX_SEED else last
        raise RangeError(f'seed {bad} is outside 0..{MAX_SEED} (the seeds numpy takes)')
    if count + last - first + 1 > MAX_SEEDS:
        raise RangeError(f'{count + last - first + 1} seeds are more than the {MAX_SEEDS} one option may name '
                         f'(render them in several runs)')


def parse_range(text: Union[str, Sequence[int]], count: int = 0) -> list[int]:
    """'0,1,4-6' -> [0, 1, 4, 5, 6]: seeds, each in 0..MAX_SEED, at most MAX_SEEDS of them with the `count` named
    before (RangeError, checked before a range is expanded)."""
    if not isinstance(text, str):
        values = [int(v) for v in text]
        for v in values:
            check_seed_range(v, v, count)
        return values
    values: list[int] = []
    for part in text.split(','):
        part = part.strip()
        m = re.fullmatch(r'(\d+)-(\d+)', part)
        if m:
            first, last = int(m.group(1)), int(m.group(2))
            if first > last:
                raise ValueError(f'{part!r}: the range is reversed (write {last}-{first})')
            check_seed_range(first, last, count + len(values))
            values.extend(range(first, last + 1))
        elif re.fullmatch(r'\d+', part):
            check_seed_range(int(part), int(part), count + len(values))
            values.append(int(part))
        else:
            raise ValueError(f'{part!r} is not a number or a range like 4-6')
    return values


def parse_vec2(text: Union[str, Sequence[float]]) -> tuple[float, float]:
    """'0.3,1' -> (0.3, 1.0)."""
    if not isinstance(text, str):
        a, b = text
        return float(a), float(b)
    parts = text.split(',')
    if len(parts) != 2:
        raise ValueError(f'{text!r} is not two comma-separated numbers')
    return parse_finite(parts[0], text), parse_finite(parts[1], text)


def parse_sources(text: Union[str, Sequence]) -> list[Union[int, str]]:
    """'0-2,7,shirt.npz' -> [0, 1, 2, 7, 'shirt.npz']: seeds and ranges, and paths of .npz latents files."""
    if not isinstance(text, str):
        return list(text)
    items: list[Union[int, str]] = []
    for part in text.split(','):
        part = part.strip()
        if part.lower().endswith('.npz'):
            items.append(part)
        elif part:
            try:
                items.extend(parse_range(part, count=len(items)))
            except ValueError as e:
                if 'reversed' in str(e):
                    raise GenerationError(str(e)) from None
                raise GenerationError(f'{part!r} is not a seed, a seed range like 4-6, or a latents .npz file') from None
    if not items:
        raise GenerationError('no seeds or latents files given')
    return items


def check_render_numbers(truncation_psi: float = 1, translate: Sequence[float] = (0, 0), rotate: float = 0) -> None:
    """Truncation, translation and rotation within what the network computes (see MAX_PSI)."""
    for name, value, limit in (('--trunc', truncation_psi, MAX_PSI), ('--translate', translate[0], MAX_TRANSLATE),
                               ('--translate', translate[1], MAX_TRANSLATE), ('--rotate', rotate, MAX_ROTATE)):
        if not -limit <= value <= limit:   # NaN fails this too
            raise RangeError(f'{name}={value:g} is outside -{limit:g}..{limit:g}, the range the network computes '
                             f'images in')


def seed_to_z(seed: int, z_dim: int) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim))


def class_choices(G: torch.nn.Module) -> str:
    names = getattr(G, 'class_names', None)
    return f'0-{G.c_dim - 1}' + (f' or one of {", ".join(names)}' if names else '')


def class_index(G: torch.nn.Module, value: Union[int, str]) -> int:
    """A class given as its index or, where the snapshot records them (G.class_names), its name."""
    names = getattr(G, 'class_names', None)
    text = str(value).strip()
    if names and text in names:
        return names.index(text)
    if not text.lstrip('-').isdigit():
        raise ClassLabelError(f'class {text!r} is not a class of this network ({class_choices(G)})')
    if not 0 <= int(text) < G.c_dim:
        raise ClassLabelError(f'class {text} is out of range: the network has {G.c_dim} classes ({class_choices(G)})')
    return int(text)


def class_label(G: torch.nn.Module, class_idx: Optional[Union[int, str]], batch: int = 1) -> torch.Tensor:
    """One-hot labels for a conditional G (zeros [N, 0] for an unconditional one)."""
    c = torch.zeros([batch, G.c_dim])
    if G.c_dim == 0:
        return c
    if class_idx is None:
        raise ClassLabelError(f'the network is conditional ({G.c_dim} classes): pass --class={class_choices(G)}')
    c[:, class_index(G, class_idx)] = 1
    return c


def input_transform(translate: tuple[float, float] = (0, 0), rotate_deg: float = 0) -> np.ndarray:
    """3x3 matrix that rotates (degrees) and translates the image; StyleGAN3 wants its inverse."""
    a = math.radians(rotate_deg)
    m = np.array([[math.cos(a), math.sin(a), translate[0]],
                  [-math.sin(a), math.cos(a), translate[1]],
                  [0.0, 0.0, 1.0]])
    return m


def set_input_transform(G: torch.nn.Module, translate=(0, 0), rotate_deg: float = 0) -> bool:
    """Point a StyleGAN3 generator's input at the given transform; False if G has no such input."""
    inp = getattr(G.synthesis, 'input', None)
    if inp is None or not hasattr(inp, 'transform'):
        return False
    inp.transform.copy_(torch.from_numpy(np.linalg.inv(input_transform(translate, rotate_deg))))
    return True


@torch.no_grad()
def seeds_to_ws(G: torch.nn.Module, seeds: Sequence[int], truncation_psi: float = 1, class_idx: Optional[int] = None,
                device: Optional[torch.device] = None) -> torch.Tensor:
    """ws [len(seeds), num_ws, w_dim] of the seeds, exactly as `generate_from_seeds` computes them."""
    device = device or next(G.parameters()).device
    z = torch.cat([seed_to_z(s, G.z_dim) for s in seeds]).to(device)
    c = class_label(G, class_idx, len(seeds)).to(device)
    return G.mapping(z, c, truncation_psi=truncation_psi)


@torch.no_grad()
def synthesize(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str = 'const', batch_size: int = 8,
               noise_seeds: Optional[Sequence[int]] = None) -> np.ndarray:
    """[N, H, W, C] uint8 images of ws [N, num_ws, w_dim], in batches.

    With `noise_mode='random'`, image i draws its noise from a generator seeded by `noise_seeds[i]` (default
    0 for all), one image at a time, so that it matches `generate_from_seeds` for the same seed."""
    device = next(G.parameters()).device
    if noise_mode == 'random':
        seeds = list(noise_seeds) if noise_seeds is not None else [0] * len(ws)
        out = []
        for w, seed in zip(ws, seeds):
            torch.manual_seed(seed)
            out.append(to_uint8(G.synthesis(w[None].to(device), noise_mode='random')))
        return np.concatenate(out) if out else np.zeros([0, G.img_resolution, G.img_resolution, G.img_channels], np.uint8)
    out = [to_uint8(G.synthesis(ws[i:i + batch_size].to(device), noise_mode=noise_mode))
           for i in range(0, len(ws), batch_size)]
    return np.concatenate(out) if out else np.zeros([0, G.img_resolution, G.img_resolution, G.img_channels], np.uint8)


@torch.no_grad()
def generate_from_seeds(G: torch.nn.Module, seeds: Sequence[int], truncation_psi: float = 1,
                        class_idx: Optional[int] = None, noise_mode: str = 'const', batch_size: int = 1,
                        device: Optional[torch.device] = None,
                        cuda_graph: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (seed, [H, W, C] uint8 image) for each seed.

    With `noise_mode='random'` each image's noise is drawn from a generator seeded by its own seed, so
    that the image does not depend on which other seeds were in its batch.
    On a GPU, one image at a time and noise not random, the generator is replayed from a CUDA graph
    (`cuda_graph`): same images, without the per-kernel launch cost that dominates at batch 1.
    """
    device = device or next(G.parameters()).device
    if noise_mode == 'random':
        batch_size = 1
    run = lambda z, c: G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)   # noqa: E731
    if cuda_graph and batch_size == 1 and noise_mode != 'random' and torch.device(device).type == 'cuda' \
            and len(seeds) >= 4:   # (capturing costs two warm-up passes)
        run = GraphedFunction(run)
    c_one = class_label(G, class_idx)
    for start in range(0, len(seeds), batch_size):
        chunk = list(seeds[start:start + batch_size])
        z = torch.cat([seed_to_z(s, G.z_dim) for s in chunk]).to(device)
        c = c_one.repeat(len(chunk), 1).to(device)
        if noise_mode == 'random':
            torch.manual_seed(chunk[0])
        img = run(z, c)
        yield from zip(chunk, to_uint8(img))
