"""Labellers for supervised directions: functions from generated images to named labels.

`--labels-from` accepts
    garments[:NAME,NAME...]   measurements of the synthetic garments read from pixels (default: all):
                              darkness, sleeve, coverage, pattern, and class:<garment> (0/1 labels named class_<garment>, from a
                              nearest-centroid classifier on silhouettes fitted to rendered garments)
    package.module:function   a user function: [N, H, W, C] uint8 -> {name: [N]} (or one [N] array)
    FILE.json                 hand labels of seeds: {"name": {"seed": value, ...}, ...}
    classes                   a conditional network's classes (mean-w directions, no images needed)
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import Callable, Optional

import numpy as np
import PIL.Image

from data import synthetic_garments as sg
from torch_utils import safe_json

from . import EditingError

LABELS_LIMIT = 64 << 20   # hand labels of seeds: a few thousand entries

GARMENT_MEASURES = ('darkness', 'sleeve', 'coverage', 'pattern')
CENTROID_GRID = 16


def _silhouettes(images: np.ndarray, grid: int = CENTROID_GRID) -> np.ndarray:
    """[N, grid*grid] garment-mask fractions on a coarse grid (the class is in the outline)."""
    masks = sg.garment_mask(images).astype(np.float32)
    n, h, w = masks.shape
    if h % grid == 0 and w % grid == 0:
        small = masks.reshape(n, grid, h // grid, grid, w // grid).mean(axis=(2, 4))
    else:
        small = np.stack([np.asarray(PIL.Image.fromarray(m).resize((grid, grid), PIL.Image.BILINEAR)) for m in masks])
    return small.reshape(n, -1)


@functools.lru_cache(maxsize=4)
def _class_centroids(resolution: int, num: int = 600, seed: int = 12345) -> np.ndarray:
    images, attrs = sg.render_garments(num, resolution=resolution, seed=seed)
    features = _silhouettes(images)
    labels = sg.attribute_table(attrs, 'class_idx')
    return np.stack([features[labels == k].mean(0) for k in range(len(sg.CLASSES))])


def classify_garments(images: np.ndarray) -> np.ndarray:
    """[N] garment class index (into synthetic_garments.CLASSES) of each image, by nearest silhouette centroid."""
    images = np.asarray(images)
    centroids = _class_centroids(int(images.shape[1]))
    features = _silhouettes(images)
    return np.argmin(((features[:, None] - centroids[None]) ** 2).sum(-1), axis=1)


def garment_measures(images: np.ndarray, names: Optional[list[str]] = None) -> dict[str, np.ndarray]:
    """Attribute measurements of garment images; `names` picks some of darkness, sleeve, coverage, pattern,
    class, class:<garment>."""
    images = np.asarray(images)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    names = names or list(GARMENT_MEASURES) + ['class']
    out: dict[str, np.ndarray] = {}
    predicted = None
    for name in names:
        if name == 'darkness':
            out[name] = sg.measure_darkness(images)
        elif name == 'sleeve':
            out[name] = sg.measure_sleeve_extent(images)
        elif name == 'coverage':
            out[name] = sg.measure_coverage(images)
        elif name == 'pattern':
            out[name] = sg.measure_pattern_features(images)[:, 0]
        elif name == 'class' or name.startswith('class:'):
            if predicted is None:
                predicted = classify_garments(images)
            wanted = sg.CLASSES if name == 'class' else [name[len('class:'):]]
            for cls in wanted:
                if cls not in sg.CLASSES:
                    raise EditingError(f'unknown garment class {cls!r} (choose from {", ".join(sg.CLASSES)})')
                out[f'class_{cls}'] = (predicted == sg.CLASSES.index(cls)).astype(np.float64)
        else:
            raise EditingError(f'unknown garment measure {name!r} (choose from {", ".join(GARMENT_MEASURES)}, class, class:<garment>)')
    return out


def _as_label_dict(result, name: str) -> dict[str, np.ndarray]:
    if isinstance(result, dict):
        return {str(k): np.asarray(v, dtype=np.float64) for k, v in result.items()}
    return {name: np.asarray(result, dtype=np.float64)}


def garment_names(spec: str) -> Optional[list[str]]:
    """The measures a `garments[:NAMES]` spec names (all of them for plain `garments`), checked; None for
    any other spec."""
    if spec != 'garments' and not spec.startswith('garments:'):
        return None
    names = [n.strip() for n in spec[len('garments:'):].split(',') if n.strip()] if ':' in spec else []
    names = names or list(GARMENT_MEASURES) + ['class']
    garment_measures(np.full([1, 16, 16, 3], 255, np.uint8), names)   # fail now on a bad name, not after sampling
    return names


def resolve_labeller(spec: str) -> tuple[Callable[[np.ndarray], dict], str]:
    """(labeller, description) for a `garments[:...]` or `module:function` spec."""
    names = garment_names(spec)
    if names is not None:
        return (lambda images: garment_measures(images, names)), spec
    module_name, sep, func_name = spec.partition(':')
    if not sep or not module_name or not func_name:
        raise EditingError(f'{spec!r}: use garments[:NAMES], package.module:function, FILE.json or classes')
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise EditingError(f'{spec!r}: cannot import the labeller ({e})') from None
    return (lambda images: _as_label_dict(func(images), func_name)), spec


def load_seed_labels(path: str) -> tuple[list[int], dict[str, np.ndarray]]:
    """Hand labels {"name": {"seed": value}} -> (sorted seeds, {name: [len(seeds)] values, NaN where unlabelled})."""
    try:
        raw = safe_json.load_file(path, LABELS_LIMIT)
    except OSError as e:
        raise EditingError(f'{path}: cannot read ({e.strerror or e})') from None
    except ValueError as e:
        raise EditingError(f'{path}: not valid JSON ({e})') from None
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict) for v in raw.values()):
        raise EditingError(f'{path}: expected {{"label name": {{"seed": value, ...}}, ...}}')
    try:
        seeds = sorted({int(s) for table in raw.values() for s in table})
        labels = {}
        for name, table in raw.items():
            values = {int(s): float(v) for s, v in table.items()}
            labels[str(name)] = np.array([values.get(s, np.nan) for s in seeds])
    except (TypeError, ValueError):
        raise EditingError(f'{path}: seeds must be integers and labels numbers') from None
    return seeds, labels


def is_label_file(spec: str) -> bool:
    return spec.lower().endswith('.json') or os.path.isfile(spec)
