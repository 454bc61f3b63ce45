"""Which entries of ws drive which synthesis layers, and the coarse/middle/fine presets built on that.

ws has `num_ws` rows; an edit or a style mix acts on a set of rows. Ranges are half-open [start, stop)
internally; on the command line `A-B` is inclusive (as NVIDIA's `--styles=0-6`).

Presets (what a designer expects: coarse = silhouette and pose, middle = parts such as sleeves and collars,
fine = colour and texture):

* StyleGAN2: by the resolution each w feeds. A w row that feeds both a block's ToRGB and the next block's
  first conv counts at the higher resolution. coarse = rows feeding resolutions up to min(8, R/8)
  (at least 4), middle = up to min(32, R/2) (at least 8), fine = the rest, R being the image resolution.
  For R=1024 this is coarse 0-2, middle 3-6, fine 7-17, so coarse+middle is NVIDIA's default `0-6`; for
  R=32 it is coarse 0 (4x4), middle 1-4 (8-16), fine 5-7 (32 and ToRGB).
* StyleGAN3: layers are not tied to resolutions (every layer is in the final frame), so num_ws is split
  into thirds: coarse [0, n/3), middle [n/3, 2n/3), fine [2n/3, n), rounded down.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from .errors import EditingError

PRESETS = ('coarse', 'middle', 'fine', 'all')


@dataclasses.dataclass(frozen=True)
class StyleLayer:
    """One modulated layer: the ws row it reads, its affine (weight [in_channels, w_dim]) and where it sits."""
    w_index: int
    name: str
    affine: nn.Module
    resolution: int
    is_torgb: bool


def is_stylegan3(G: nn.Module) -> bool:
    return hasattr(G.synthesis, 'layer_names')


def style_layers(G: nn.Module) -> list[StyleLayer]:
    """Every modulated conv / ToRGB layer of G with the index of the w it reads.

    StyleGAN3's Fourier input also has an affine, but it outputs a rotation and translation rather than
    channel styles, so it is not listed (its ws row 0 still exists and can be edited or mixed)."""
    syn = G.synthesis
    out = []
    if is_stylegan3(G):
        for k, name in enumerate(syn.layer_names):
            layer = getattr(syn, name)
            out.append(StyleLayer(k + 1, name, layer.affine, int(syn.img_resolution), bool(layer.is_torgb)))
        return out
    w_idx = 0
    for res in syn.block_resolutions:
        block = getattr(syn, f'b{res}')
        i = w_idx
        for conv in ('conv0', 'conv1'):
            if hasattr(block, conv):
                out.append(StyleLayer(i, f'b{res}.{conv}', getattr(block, conv).affine, int(res), False))
                i += 1
        if hasattr(block, 'torgb'):
            out.append(StyleLayer(w_idx + block.num_conv, f'b{res}.torgb', block.torgb.affine, int(res), True))
        w_idx += block.num_conv
    return out


def w_resolutions(G: nn.Module) -> list[int]:
    """For each ws row, the highest resolution of the layers that read it (StyleGAN3: the image resolution)."""
    res = [0] * G.num_ws
    res[0] = 4 if not is_stylegan3(G) else int(G.img_resolution)
    for layer in style_layers(G):
        res[layer.w_index] = max(res[layer.w_index], layer.resolution)
    return res


def preset_range(G: nn.Module, preset: str) -> tuple[int, int]:
    """[start, stop) of a preset ('coarse', 'middle', 'fine', 'all') for this network; see the module docstring."""
    n = G.num_ws
    if preset == 'all':
        return 0, n
    if preset not in PRESETS:
        raise EditingError(f'unknown layer preset {preset!r} (choose from {", ".join(PRESETS)} or a range like 0-6)')
    if is_stylegan3(G):
        bounds = [0, n // 3, 2 * n // 3, n]
    else:
        r = int(G.img_resolution)
        coarse_max, middle_max = max(4, min(8, r // 8)), max(8, min(32, r // 2))
        res = w_resolutions(G)
        stop_coarse = sum(1 for x in res if x <= coarse_max)
        stop_middle = sum(1 for x in res if x <= middle_max)
        bounds = [0, stop_coarse, stop_middle, n]
    k = ('coarse', 'middle', 'fine').index(preset)
    return bounds[k], bounds[k + 1]


def parse_layers(G: nn.Module, spec: str) -> list[int]:
    """'coarse', 'middle,fine', '0-6', '3', '0-2,8' -> sorted ws row indices (ranges inclusive)."""
    rows: set[int] = set()
    for part in str(spec).split(','):
        part = part.strip().lower()
        if not part:
            continue
        if part in PRESETS:
            start, stop = preset_range(G, part)
        elif (m := re.fullmatch(r'(\d+)(?:-(\d+))?', part)):
            start = int(m.group(1))
            stop = int(m.group(2) or m.group(1)) + 1
            if stop <= start:
                raise EditingError(f'layer range {part!r} is empty (write low-high)')
        else:
            raise EditingError(f'{part!r} is not a layer preset ({", ".join(PRESETS)}) or a range like 0-6')
        if stop > G.num_ws:
            raise EditingError(f'layer range {part!r} is beyond the network\'s {G.num_ws} ws rows (0-{G.num_ws - 1})')
        rows.update(range(start, stop))
    if not rows:
        raise EditingError(f'layer spec {spec!r} selects no layers')
    return sorted(rows)


def parse_layer_range(G: nn.Module, spec: Optional[str]) -> tuple[int, int]:
    """Like `parse_layers`, but the result must be one contiguous [start, stop) range (None = all rows)."""
    if spec is None:
        return 0, G.num_ws
    rows = parse_layers(G, spec)
    if rows != list(range(rows[0], rows[-1] + 1)):
        raise EditingError(f'layer spec {spec!r} is not one contiguous range')
    return rows[0], rows[-1] + 1


def describe_presets(G: nn.Module) -> dict[str, tuple[int, int]]:
    return {p: preset_range(G, p) for p in PRESETS}


def affines_in(G: nn.Module, rows: Iterable[int], include_torgb: bool = False) -> list[StyleLayer]:
    rows = set(rows)
    return [layer for layer in style_layers(G) if layer.w_index in rows and (include_torgb or not layer.is_torgb)]


def broadcast_ws(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """[N, w_dim] or [N, num_ws, w_dim] -> [N, num_ws, w_dim]."""
    if w.ndim == 2:
        return w.unsqueeze(1).repeat(1, num_ws, 1)
    if w.ndim != 3 or w.shape[1] != num_ws:
        raise EditingError(f'expected latents of shape [N, w_dim] or [N, {num_ws}, w_dim], got {list(w.shape)}')
    return w


def rows_mask(num_ws: int, rows: Sequence[int]) -> torch.Tensor:
    mask = torch.zeros(num_ws, dtype=torch.bool)
    mask[list(rows)] = True
    return mask
