"""How to change a latent: moves along named directions (`--edit=NAME:STRENGTH[@LAYERS]`), strips across
strengths, and style mixing; all act on a range of ws rows.

STRENGTH is in units of the standard deviation of W along the direction (the file's `scale`), so 1 is a
typical variation and 3 a strong one, whichever method found the direction.

ws has `num_ws` rows; an edit or a style mix acts on a set of rows. Ranges are half-open [start, stop)
internally; on the command line `A-B` is inclusive (as NVIDIA's `--styles=0-6`). The presets are what a
designer expects: coarse = silhouette and pose, middle = parts such as sleeves and collars, fine = colour
and texture:

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
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from torch_utils.cli import parse_finite

from . import EditingError
from .directions import NAME_PATTERN, Directions

PRESETS = ('coarse', 'middle', 'fine', 'all')


# ---------------------------------------------------------------------------------------------
# Which ws rows.

def w_resolutions(G: nn.Module) -> list[int]:
    """For each ws row, the highest resolution of the layers that read it (StyleGAN3: the image resolution)."""
    res = [0] * G.num_ws
    res[0] = 4 if G.family != 'stylegan3' else int(G.img_resolution)
    for layer in G.synthesis.style_layers():
        res[layer.w_index] = max(res[layer.w_index], layer.resolution)
    return res


def preset_range(G: nn.Module, preset: str) -> tuple[int, int]:
    """[start, stop) of a preset ('coarse', 'middle', 'fine', 'all') for this network; see the module docstring."""
    n = G.num_ws
    if preset == 'all':
        return 0, n
    if preset not in PRESETS:
        raise EditingError(f'unknown layer preset {preset!r} (choose from {", ".join(PRESETS)} or a range like 0-6)')
    if G.family == 'stylegan3':
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


# ---------------------------------------------------------------------------------------------
# Edits along directions.

@dataclasses.dataclass(frozen=True)
class Edit:
    name: str
    strength: float = 1.0
    layers: Optional[str] = None       # preset or A-B range overriding the direction's own rows


_EDIT = re.compile(r'(?P<name>' + NAME_PATTERN.pattern + r')(?::(?P<strength>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))?'
                   r'(?:@(?P<layers>[\w-]+))?')


def parse_edits(text: str) -> list[Edit]:
    """'darker:2,sleeve:-1.5@middle' -> [Edit('darker', 2), Edit('sleeve', -1.5, 'middle')]; strength defaults to 1."""
    edits = []
    for part in text.split(','):
        part = part.strip()
        if not part:
            continue
        m = _EDIT.fullmatch(part)
        if not m:
            raise EditingError(f'{part!r} is not NAME[:STRENGTH][@LAYERS] (e.g. darker:1.5 or sleeve:-2@middle)')
        strength = m.group('strength')
        value = parse_finite(strength, f'strength of {m.group("name")!r}') if strength is not None else 1.0
        edits.append(Edit(m.group('name'), value, m.group('layers')))
    if not edits:
        raise EditingError('no edits given')
    return edits


def edit_rows(d: Directions, edit: Edit, G: Optional[torch.nn.Module] = None) -> tuple[int, int]:
    """[start, stop) of the ws rows an edit moves: its @LAYERS override, else its direction's own range."""
    if edit.layers is None:
        i = d.index(edit.name)
        return int(d.layer_start[i]), int(d.layer_stop[i])
    if G is None:
        raise EditingError('a layer override (@LAYERS) needs the network')
    return parse_layer_range(G, edit.layers)


def edit_offsets(d: Directions, edits: Sequence[Edit], G: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """[num_ws, w_dim] (float64): sum over edits of strength * std * direction on the edit's rows."""
    offset = torch.zeros(d.num_ws, d.w_dim, dtype=torch.float64)
    for e in edits:
        i = d.index(e.name)
        start, stop = edit_rows(d, e, G)
        offset[start:stop] += float(e.strength) * float(d.scale[i]) * torch.from_numpy(d.vectors[i].astype(np.float64))
    return offset


def apply_edits(ws: torch.Tensor, d: Directions, edits: Sequence[Edit], G: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] moved along the edits. Rows no edit touches come back bit-identical."""
    if ws.ndim != 3 or ws.shape[1] != d.num_ws or ws.shape[2] != d.w_dim:
        raise EditingError(f'expected ws of shape [N, {d.num_ws}, {d.w_dim}], got {list(ws.shape)}')
    offset = edit_offsets(d, edits, G)
    touched = (offset != 0).any(dim=1)
    out = ws.clone()
    if touched.any():
        moved = ws[:, touched].to(torch.float64) + offset[touched].to(ws.device)
        out[:, touched] = moved.to(ws.dtype)
    return out


def strip_ws(ws: torch.Tensor, d: Directions, names: Sequence[str], strengths: Sequence[float],
             G: Optional[torch.nn.Module] = None, layers: Optional[Sequence[Optional[str]]] = None) -> torch.Tensor:
    """[N * len(names), len(strengths), num_ws, w_dim]: for each latent and direction, one row across strengths
    (latent-major: latent 0's rows for every direction first)."""
    layers = list(layers) if layers is not None else [None] * len(names)
    rows = []
    for w in ws:
        for name, lay in zip(names, layers):
            rows.append(torch.stack([apply_edits(w[None], d, [Edit(name, s, lay)], G)[0] for s in strengths]))
    return torch.stack(rows)


# ---------------------------------------------------------------------------------------------
# Style mixing: structure from one latent, the chosen rows from another.

def mix_ws(row_ws: torch.Tensor, col_ws: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """[R, C, num_ws, w_dim]: cell (r, c) = row_ws[r] with ws rows `rows` copied from col_ws[c]."""
    if row_ws.shape[1:] != col_ws.shape[1:]:
        raise EditingError(f'row and column latents differ in shape: {list(row_ws.shape[1:])} vs {list(col_ws.shape[1:])}')
    idx = torch.as_tensor(list(rows), dtype=torch.long)
    if len(idx) == 0 or idx.min() < 0 or idx.max() >= row_ws.shape[1]:
        raise EditingError(f'mixing rows must lie in 0-{row_ws.shape[1] - 1}')
    grid = row_ws[:, None].repeat(1, len(col_ws), 1, 1)
    grid[:, :, idx] = col_ws[None, :, idx].to(grid.dtype)
    return grid
