"""A named set of latent directions in W and its `.npz` file (discovery.py finds them, edits.py applies them).

File layout (read through torch_utils.safe_npz: plain arrays only, checked from their headers):

    directions   [K, w_dim] float32   unit vectors in W
    names        [K] str              editable labels ('pc0', 'darker', 'sleeve_length', ...)
    layer_start  [K] int64            each direction moves ws rows [layer_start, layer_stop)
    layer_stop   [K] int64
    scale        [K] float32          std of W along the direction: STRENGTH 1 moves w by one std
    method       str                  'ganspace', 'sefa', 'supervised', 'classes'
    num_ws, w_dim int                 of the network the directions were found for
    meta         str                  JSON: source network, seed, samples, ...
    stat/<name>  [K]                  per-direction numbers (explained variance, held-out fit score, ...)
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional, Sequence, Union

import numpy as np
import torch

from torch_utils import safe_json
from torch_utils.atomic import atomic_write
from torch_utils.safe_npz import TEXT, NpzArchive

from . import EditingError, read_npz

PathLike = Union[str, os.PathLike]
NAME_PATTERN = re.compile(r'[^\s,:=@]+')   # the characters the --edit syntax reserves are not allowed in names
CHECKS = 'checks'   # meta: {direction name: its held-out check's counts (check.CheckResult)}


@dataclasses.dataclass
class Directions:
    vectors: np.ndarray                 # [K, w_dim] float32, unit norm
    names: list[str]
    layer_start: np.ndarray             # [K] int64
    layer_stop: np.ndarray              # [K] int64
    scale: np.ndarray                   # [K] float32
    method: str
    num_ws: int
    meta: dict = dataclasses.field(default_factory=dict)
    stats: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        self.names = [str(n) for n in self.names]
        k = len(self.names)
        self.layer_start = np.broadcast_to(np.asarray(self.layer_start, dtype=np.int64), [k]).copy()
        self.layer_stop = np.broadcast_to(np.asarray(self.layer_stop, dtype=np.int64), [k]).copy()
        self.scale = np.broadcast_to(np.asarray(self.scale, dtype=np.float32), [k]).copy()
        self.stats = {key: np.asarray(v) for key, v in self.stats.items()}
        self.validate()

    @property
    def w_dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def validate(self) -> None:
        k = len(self.names)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != k:
            raise EditingError(f'directions must be [{k}, w_dim], got {list(self.vectors.shape)}')
        bad = [n for n in self.names if not NAME_PATTERN.fullmatch(n)]
        if bad:
            raise EditingError(f'direction name {bad[0]!r} is empty or contains a space or one of , : = @')
        dup = sorted({n for n in self.names if self.names.count(n) > 1})
        if dup:
            raise EditingError(f'direction name {dup[0]!r} is used twice')
        if np.any(self.layer_start < 0) or np.any(self.layer_stop > self.num_ws) or np.any(self.layer_start >= self.layer_stop):
            raise EditingError(f'layer ranges must satisfy 0 <= start < stop <= num_ws={self.num_ws}')
        if not np.all(np.isfinite(self.vectors)) or not np.all(np.isfinite(self.scale)) or np.any(self.scale <= 0):
            raise EditingError('directions and scales must be finite, scales positive')
        for key, value in self.stats.items():
            if value.shape[:1] != (k,):
                raise EditingError(f'stat {key!r} has shape {list(value.shape)}, expected [{k}, ...]')

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            shown = ', '.join(self.names[:12]) + (', ...' if len(self.names) > 12 else '')
            raise EditingError(f'no direction named {name!r} (have: {shown})') from None

    def vector(self, name: str) -> np.ndarray:
        return self.vectors[self.index(name)]

    def renamed(self, mapping: dict[str, str]) -> 'Directions':
        for old in mapping:
            self.index(old)
        return dataclasses.replace(self, names=[mapping.get(n, n) for n in self.names])

    def with_layers(self, start: int, stop: int, names: Optional[Sequence[str]] = None) -> 'Directions':
        """A copy where the named directions (default: all) act on ws rows [start, stop)."""
        chosen = set(self.names if names is None else names)
        for n in chosen:
            self.index(n)
        sel = np.array([n in chosen for n in self.names])
        return dataclasses.replace(self, layer_start=np.where(sel, start, self.layer_start),
                                   layer_stop=np.where(sel, stop, self.layer_stop))

    def check_network(self, G: torch.nn.Module, origin: str = 'directions') -> None:
        if G.w_dim != self.w_dim or G.num_ws != self.num_ws:
            raise EditingError(f'{origin}: made for w_dim={self.w_dim}, num_ws={self.num_ws}, but the network has '
                             f'w_dim={G.w_dim}, num_ws={G.num_ws}')

    def describe(self) -> list[str]:
        lines = [f'{len(self)} {self.method} directions (w_dim {self.w_dim}, {self.num_ws} ws rows)']
        for i, name in enumerate(self.names):
            extra = ' '.join(f'{k}={float(v[i]):.4g}' for k, v in self.stats.items() if v.ndim == 1)
            lines.append(f'  {name:<20s} layers {self.layer_start[i]}-{self.layer_stop[i] - 1:<3d} '
                         f'std {self.scale[i]:.4g} {extra}'.rstrip())
        return lines


def merge_directions(parts: Sequence[Directions], method: str = 'combined') -> Directions:
    """One Directions set holding every direction of `parts` (names must be distinct); a stat that only some
    parts have is NaN for the others' directions."""
    k_total = sum(len(p) for p in parts)
    found = {name: result for p in parts for name, result in p.meta.get(CHECKS, {}).items()}
    checks = {CHECKS: found} if found else {}
    stats: dict[str, np.ndarray] = {}
    offset = 0
    for p in parts:
        for key, value in p.stats.items():
            if value.ndim != 1:
                continue
            stats.setdefault(key, np.full([k_total], np.nan, dtype=np.float64))[offset:offset + len(p)] = value
        offset += len(p)
    return Directions(vectors=np.concatenate([p.vectors for p in parts]), names=[n for p in parts for n in p.names],
                      layer_start=np.concatenate([p.layer_start for p in parts]),
                      layer_stop=np.concatenate([p.layer_stop for p in parts]),
                      scale=np.concatenate([p.scale for p in parts]), method=method, num_ws=parts[0].num_ws,
                      meta=dict(parts=[dict(method=p.method, names=p.names, **{k: v for k, v in p.meta.items() if k != CHECKS})
                                       for p in parts], **checks), stats=stats)


# ---------------------------------------------------------------------------------------------
# Files.

def save_directions(path: PathLike, d: Directions) -> None:
    """Write `d` as a plain-array .npz (atomic)."""
    d.validate()
    arrays = dict(directions=d.vectors.astype(np.float32), names=np.array(d.names, dtype=str),
                  layer_start=d.layer_start.astype(np.int64), layer_stop=d.layer_stop.astype(np.int64),
                  scale=d.scale.astype(np.float32), method=np.array(d.method), num_ws=np.array(d.num_ws),
                  w_dim=np.array(d.w_dim), meta=np.array(json.dumps(d.meta)))
    for key, value in d.stats.items():
        arrays[f'stat/{key}'] = value
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_directions(path: PathLike) -> Directions:
    """Read a directions .npz; any problem is an EditingError naming the file. Every array is checked from
    its header (kind, shape) before it is read."""
    def read(f: NpzArchive) -> Directions:
        missing = [k for k in ('directions', 'names', 'layer_start', 'layer_stop', 'scale', 'num_ws') if k not in f]
        if missing:
            raise EditingError(f'not a directions file (missing {", ".join(missing)})')
        vectors = f.array('directions', 'f', shapes=[(None, None)])
        k = len(vectors)
        per_direction = [(k,), ()]
        meta = _json_object(f.text('meta')) if 'meta' in f else {}
        return Directions(vectors=vectors, names=list(f.array('names', TEXT, shapes=[(k,)])),
                          layer_start=f.array('layer_start', 'iu', per_direction),
                          layer_stop=f.array('layer_stop', 'iu', per_direction),
                          scale=f.array('scale', 'fiu', per_direction),
                          method=f.text('method') if 'method' in f else 'unknown',
                          num_ws=f.scalar('num_ws', 'iu'), meta=meta,
                          stats={key[len('stat/'):]: f.array(key, 'fiub', [(k,), (k, None)])
                                 for key in f.files if key.startswith('stat/')})
    return read_npz(path, 'directions', read)


def _json_object(text: str) -> dict:
    try:
        meta = safe_json.loads(text)
    except ValueError as e:
        raise EditingError(f'meta: {e}') from None
    if not isinstance(meta, dict):
        raise EditingError('meta: not a JSON object')
    return meta


def orthonormal_sign(vectors: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-magnitude entry is positive: eigen/singular vectors have an arbitrary
    sign, and a fixed convention makes files reproducible."""
    idx = np.argmax(np.abs(vectors), axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), idx])
    signs[signs == 0] = 1
    return vectors * signs[:, None]
