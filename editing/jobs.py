"""The writers behind the editing jobs (commands.py drives them): discover directions, edit, style-mix,
interpolate. Each takes parsed values, writes its files atomically and returns what it wrote."""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import torch

from torch_utils.atomic import atomic_write_bytes

from networks.generate import image_grid, save_image, synthesize

from .errors import EditingError
from . import discovery, labels as labelling
from .directions import Directions, save_directions
from .edits import Edit, apply_edits, edit_rows, strip_ws
from .layers import parse_layer_range, parse_layers
from .mixing import mixing_grid
from .sources import Latents, resolve_sources
from .video import render_interpolation

METHODS = ('ganspace', 'sefa', 'supervised')


def _write_json(path: str, data: dict) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2).encode())


def discover(G: torch.nn.Module, method: str, out_path: str, samples: Optional[int] = None, components: int = 32,
             layers: Optional[str] = None, labels_from: Optional[str] = None, seed: int = 0,
             class_idx: Optional[int] = None, truncation_psi: float = 1, include_torgb: bool = False,
             source: str = '') -> Directions:
    """Find directions with `method` and save them to `out_path`."""
    layer_range = parse_layer_range(G, layers) if layers else None
    if method == 'ganspace':
        d = discovery.ganspace(G, num_samples=samples or 10000, num_components=components, seed=seed,
                               layers=layer_range, class_idx=class_idx, source=source)
    elif method == 'sefa':
        d = discovery.sefa(G, num_components=components, layers=layer_range, include_torgb=include_torgb,
                           num_samples=samples or 2000, seed=seed, class_idx=class_idx, source=source)
    elif method == 'supervised':
        d = _supervised(G, labels_from, samples or 2000, seed, layer_range, class_idx, truncation_psi, source)
    else:
        raise EditingError(f'unknown discovery method {method!r} (choose from {", ".join(METHODS)})')
    save_directions(out_path, d)
    return d


def _supervised(G, labels_from, samples, seed, layer_range, class_idx, truncation_psi, source) -> Directions:
    if not labels_from:
        raise EditingError('--discover=supervised needs --labels-from (garments[:NAMES], module:function, FILE.json or classes)')
    if labels_from == 'classes':
        return discovery.class_directions(G, num_samples=samples, seed=seed, layers=layer_range, source=source)
    if labelling.is_label_file(labels_from):
        seeds, labels = labelling.load_seed_labels(labels_from)
        ws = resolve_sources(G, seeds, truncation_psi, class_idx).ws
        return discovery.directions_from_labels(G, ws[:, 0].double().numpy(), labels, seed=seed, layers=layer_range,
                                                meta=dict(source=source, labels=labels_from, seeds=len(seeds)))
    labeller, name = labelling.resolve_labeller(labels_from)
    return discovery.supervised(G, labeller, num_samples=samples, seed=seed, layers=layer_range, class_idx=class_idx,
                                truncation_psi=truncation_psi, source=source, labeller_name=name)


def edit_latents(G: torch.nn.Module, latents: Latents, directions: Optional[Directions],
                 edits: Optional[Sequence[Edit]]) -> Latents:
    """The latents moved along the edits (unchanged without edits)."""
    if not edits:
        return latents
    ws = apply_edits(latents.ws, directions, edits, G)
    return Latents(ws, latents.labels, latents.noise_seeds, latents.noise)


def write_images(G: torch.nn.Module, latents: Latents, outdir: str, suffix: str = '', noise_mode: str = 'const',
                 batch_size: int = 8, grid: bool = False) -> list[str]:
    """One PNG per latent, `<label><suffix>.png`, and optionally grid<suffix>.png."""
    images = synthesize(G, latents.ws, noise_mode=noise_mode, batch_size=batch_size, noise_seeds=latents.noise_seeds)
    paths = []
    for label, image in zip(latents.labels, images):
        paths.append(os.path.join(outdir, f'{label}{suffix}.png'))
        save_image(image, paths[-1])
    if grid and len(images):
        paths.append(os.path.join(outdir, f'grid{suffix}.png'))
        save_image(image_grid(list(images)), paths[-1])
    return paths


def write_edit_strip(G: torch.nn.Module, latents: Latents, directions: Directions, edits: Sequence[Edit],
                     strengths: Sequence[float], outdir: str, noise_mode: str = 'const', batch_size: int = 8) -> list[str]:
    """edit-strip.png: a row per (latent, direction), a column per strength; also one strip per latent and
    edit-strip.json naming the rows and columns."""
    names, lays = [e.name for e in edits], [e.layers for e in edits]
    for name in names:
        directions.index(name)
    grid_ws = strip_ws(latents.ws, directions, names, strengths, G, lays)
    n_rows, n_cols = grid_ws.shape[:2]
    noise_seeds = [s for s in latents.noise_seeds for _ in names for _ in strengths]
    images = synthesize(G, grid_ws.reshape(-1, *grid_ws.shape[2:]), noise_mode=noise_mode, batch_size=batch_size,
                        noise_seeds=noise_seeds)
    paths = [os.path.join(outdir, 'edit-strip.png')]
    save_image(image_grid(list(images), cols=n_cols), paths[0])
    per = len(names) * n_cols
    for i, label in enumerate(latents.labels):
        paths.append(os.path.join(outdir, f'{label}-strip.png'))
        save_image(image_grid(list(images[i * per:(i + 1) * per]), cols=n_cols), paths[-1])
    rows = [dict(latent=label, direction=name, layers=list(map(int, _rows_of(directions, name, lay, G))))
            for label in latents.labels for name, lay in zip(names, lays)]
    _write_json(os.path.join(outdir, 'edit-strip.json'), dict(strengths=list(strengths), rows=rows))
    return paths


def _rows_of(d: Directions, name: str, layers: Optional[str], G) -> tuple[int, int]:
    return edit_rows(d, Edit(name, 1.0, layers), G)


def write_mixing(G: torch.nn.Module, rows: Latents, cols: Latents, styles: str, outdir: str,
                 noise_mode: str = 'const', batch_size: int = 8) -> list[str]:
    """mix-grid.png (rows keep everything but `styles`, which come from the columns) and mix-grid.json."""
    mixed_rows = parse_layers(G, styles)
    grid = mixing_grid(G, rows.ws, cols.ws, mixed_rows, noise_mode=noise_mode, batch_size=batch_size)
    paths = [os.path.join(outdir, 'mix-grid.png'), os.path.join(outdir, 'mix-grid.json')]
    save_image(grid, paths[0])
    _write_json(paths[1], dict(rows=rows.labels, cols=cols.labels, styles=styles, ws_rows_from_columns=mixed_rows,
                               num_ws=int(G.num_ws)))
    return paths


def write_video(G: torch.nn.Module, keys: Latents, path: str, frames_per_key: int = 60, kind: str = 'cubic',
                loop: bool = True, fps: float = 30, noise_mode: str = 'const', batch_size: int = 8,
                grid: tuple[int, int] = (1, 1)) -> int:
    return render_interpolation(G, keys.ws, path, frames_per_key=frames_per_key, kind=kind, loop=loop, fps=fps,
                                noise_mode=noise_mode, batch_size=batch_size, grid=grid)
