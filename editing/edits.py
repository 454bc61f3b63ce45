"""Moving ws along named directions: `--edit=NAME:STRENGTH[@LAYERS]`, and strips across strengths.

STRENGTH is in units of the standard deviation of W along the direction (the file's `scale`), so 1 is a
typical variation and 3 a strong one, whichever method found the direction.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional, Sequence

import numpy as np
import torch

from torch_utils.cli import parse_finite

from .errors import EditingError
from .directions import NAME_PATTERN, Directions
from .layers import parse_layer_range


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


def parse_strengths(text: str) -> list[float]:
    """'-3,-1.5,0,1.5,3' -> floats."""
    try:
        values = [parse_finite(v, 'strength') for v in text.split(',') if v.strip()]
    except ValueError as e:
        raise EditingError(f'{text!r} is not a comma-separated list of numbers ({e})') from None
    if not values:
        raise EditingError('no strengths given')
    return values


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
