"""Detector features of real and generated images, and the cache of real-image statistics.

`FeatureAccumulator` keeps either every feature vector (KID, PR, LS) or the running sums for mean and
covariance (FID), in float64. Real-image statistics are cached in `$SG3C_CACHE/gan-metrics` under a key
made of everything they depend on: the dataset's files (names, sizes, modification times), the dataset
options, the detector file's content hash, the detector call and what was captured. Editing, adding or
removing an image therefore invalidates the entry. Cache files are plain `.npz` (no pickles).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import numpy as np
import torch

from torch_utils import safe_json
from torch_utils.atomic import atomic_write
from torch_utils.distributed import agree, gather_rounds
from torch_utils.download import cache_root

from .detectors import detector_fingerprint
from .options import MetricContext
from .sampling import LatentSource, mapping_kwargs, rounds, synthesis_kwargs, to_rgb_uint8

CACHE_VERSION = 1


class FeatureAccumulator:
    """Features appended batch by batch, up to `max_items`."""

    def __init__(self, capture_all: bool = False, capture_mean_cov: bool = False, max_items: Optional[int] = None):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features: Optional[int] = None
        self._chunks: list[np.ndarray] = []
        self._extras: dict[str, list[np.ndarray]] = {}
        self._sum: Optional[np.ndarray] = None
        self._outer: Optional[np.ndarray] = None

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def room(self, n: int) -> int:
        return n if self.max_items is None else max(0, min(n, self.max_items - self.num_items))

    def append(self, features: np.ndarray, **extras: np.ndarray) -> None:
        """Add a batch [n, F] (rows past `max_items` are dropped); `extras` are kept row-aligned (labels, latents)."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2:
            raise ValueError(f'features must be [N, F], got shape {list(features.shape)}')
        keep = self.room(features.shape[0])
        if keep == 0:
            return
        features = features[:keep]
        if self.num_features is None:
            self.num_features = features.shape[1]
            if self.capture_mean_cov:
                self._sum = np.zeros([self.num_features], dtype=np.float64)
                self._outer = np.zeros([self.num_features, self.num_features], dtype=np.float64)
        elif features.shape[1] != self.num_features:
            raise ValueError(f'feature width changed from {self.num_features} to {features.shape[1]}')
        self.num_items += keep
        if self.capture_all:
            self._chunks.append(features)
            for name, value in extras.items():
                self._extras.setdefault(name, []).append(np.asarray(value)[:keep])
        if self.capture_mean_cov:
            f64 = features.astype(np.float64)
            self._sum += f64.sum(axis=0)
            self._outer += f64.T @ f64

    def features(self) -> np.ndarray:
        if not self.capture_all:
            raise RuntimeError('features were not captured (capture_all=False)')
        return np.concatenate(self._chunks) if self._chunks else np.zeros([0, self.num_features or 0], np.float32)

    def extra(self, name: str) -> np.ndarray:
        return np.concatenate(self._extras[name])

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and (biased, 1/N) covariance, as NVIDIA's FID uses them."""
        if not self.capture_mean_cov:
            raise RuntimeError('mean and covariance were not captured (capture_mean_cov=False)')
        if self.num_items == 0:
            raise ValueError('no features were collected')
        mean = self._sum / self.num_items
        return mean, self._outer / self.num_items - np.outer(mean, mean)

    # -- persistence (npz, no pickles) ---------------------------------------------------------------

    def save(self, path: str) -> None:
        arrays = dict(meta=np.array(json.dumps(dict(capture_all=self.capture_all, capture_mean_cov=self.capture_mean_cov,
                                                    max_items=self.max_items, num_items=self.num_items,
                                                    num_features=self.num_features, extras=sorted(self._extras)))))
        if self.capture_all:
            arrays['features'] = self.features()
            for name in self._extras:
                arrays[f'extra_{name}'] = self.extra(name)
        if self.capture_mean_cov:
            arrays['sum'], arrays['outer'] = self._sum, self._outer
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str) -> 'FeatureAccumulator':
        with np.load(path, allow_pickle=False) as data:
            meta = safe_json.loads(str(data['meta']))
            stats = cls(capture_all=meta['capture_all'], capture_mean_cov=meta['capture_mean_cov'],
                        max_items=meta['max_items'])
            stats.num_items, stats.num_features = meta['num_items'], meta['num_features']
            if stats.capture_all:
                stats._chunks = [data['features']]
                stats._extras = {name: [data[f'extra_{name}']] for name in meta['extras']}
            if stats.capture_mean_cov:
                stats._sum, stats._outer = data['sum'], data['outer']
        return stats


# ---------------------------------------------------------------------------------------------
# Real images.

def dataset_fingerprint(path: str) -> str:
    """Changes whenever a file of the dataset is added, removed, rewritten or touched."""
    path = os.path.abspath(path)
    digest = hashlib.sha1(path.encode())
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                st = os.stat(full)
                digest.update(f'{os.path.relpath(full, path)}|{st.st_size}|{st.st_mtime_ns}\n'.encode())
    else:
        st = os.stat(path)
        digest.update(f'|{st.st_size}|{st.st_mtime_ns}'.encode())
    return digest.hexdigest()


def metrics_cache_dir() -> str:
    return os.path.join(cache_root(), 'gan-metrics')


def _cache_file(opts: MetricContext, dataset_name: str, detector_name: str, detector_path: str,
                detector_kwargs: dict, stats_kwargs: dict) -> str:
    key = dict(version=CACHE_VERSION, dataset=dataset_fingerprint(opts.dataset_kwargs['path']),
               dataset_kwargs={k: v for k, v in sorted(opts.dataset_kwargs.items()) if k != 'path'},
               detector=detector_fingerprint(detector_path), detector_kwargs=detector_kwargs, stats=stats_kwargs)
    digest = hashlib.md5(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return os.path.join(metrics_cache_dir(), f'{dataset_name}-{detector_name}-{digest}.npz')


def dataset_features(opts: MetricContext, detector_name: str, detector_kwargs: dict, max_items: Optional[int] = None,
                     capture_all: bool = False, capture_mean_cov: bool = False, capture_labels: bool = False,
                     batch_size: int = 64, desc: str = 'real features') -> FeatureAccumulator:
    """Detector features of (the first `max_items` of) the dataset, from the cache when possible."""
    dataset = opts.open_dataset()
    detector, detector_path = opts.detector(detector_name)
    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    stats_kwargs = dict(capture_all=capture_all, capture_mean_cov=capture_mean_cov, capture_labels=capture_labels,
                        max_items=num_items)

    cache_file = None
    if opts.cache:
        cache_file = _cache_file(opts, dataset.name, detector_name, detector_path, detector_kwargs, stats_kwargs)
        if agree(opts.rank == 0 and os.path.isfile(cache_file), opts.device):
            return FeatureAccumulator.load(cache_file)

    stats = FeatureAccumulator(capture_all=capture_all, capture_mean_cov=capture_mean_cov, max_items=num_items)
    num_batches = (num_items - 1) // batch_size + 1
    my_batches = [(b, real) for b, real in rounds(num_batches, opts.num_gpus, opts.rank)]
    sampler = [list(range(b * batch_size, min((b + 1) * batch_size, num_items))) for b, _ in my_batches]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=opts.num_workers,
                                         pin_memory=opts.device.type == 'cuda', collate_fn=_stack)
    with opts.bar(num_items, desc) as bar, torch.no_grad():
        for (_, real), (images, labels) in zip(my_batches, loader):
            images = images.to(opts.device)
            if images.shape[1] == 1:
                images = images.repeat([1, 3, 1, 1])
            rows = detector(images, **detector_kwargs).to(torch.float32)
            width = rows.shape[1]
            if capture_labels:
                rows = torch.cat([rows, labels.to(rows.device, torch.float32)], dim=1)
            for part in gather_rounds(rows, rows.shape[0] if real else 0, batch_size):
                part = part.cpu().numpy()
                before = stats.num_items
                if capture_labels:
                    stats.append(part[:, :width], labels=part[:, width:])
                else:
                    stats.append(part)
                bar.update(stats.num_items - before)

    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats


def _stack(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*items)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


# ---------------------------------------------------------------------------------------------
# Generated images.

def generator_features(opts: MetricContext, detector_name: str, detector_kwargs: dict, num_items: int,
                       capture_all: bool = False, capture_mean_cov: bool = False, capture_latents: bool = False,
                       batch_size: int = 64, desc: str = 'generated features') -> FeatureAccumulator:
    """Detector features of `num_items` generated images (with their z and w if `capture_latents`)."""
    G = opts.generator_copy()
    source = LatentSource(opts, G, 'features')
    detector, _ = opts.detector(detector_name)
    stats = FeatureAccumulator(capture_all=capture_all, capture_mean_cov=capture_mean_cov, max_items=num_items)
    num_batches = (num_items - 1) // batch_size + 1
    batch_gen = max(1, min(opts.batch_gen, batch_size))
    with opts.bar(num_items, desc) as bar, torch.no_grad():
        for index, real in rounds(num_batches, opts.num_gpus, opts.rank):
            z, c, _ = source.draw(index, batch_size)
            images, ws = [], []
            for zs, cs in zip(z.split(batch_gen), c.split(batch_gen)):
                if capture_latents:
                    w = G.mapping(zs, cs, **mapping_kwargs(opts.G_kwargs))
                    img = G.synthesis(w, **synthesis_kwargs(opts.G_kwargs))
                    ws.append(w[:, -1])
                else:
                    img = G(zs, cs, **opts.G_kwargs)
                images.append(to_rgb_uint8(img))
            rows = detector(torch.cat(images), **detector_kwargs).to(torch.float32)
            width = rows.shape[1]
            if capture_latents:
                rows = torch.cat([rows, z.to(rows.device, torch.float32), torch.cat(ws).to(rows.device, torch.float32)], 1)
            for part in gather_rounds(rows, rows.shape[0] if real else 0, batch_size):
                part = part.cpu().numpy()
                before = stats.num_items
                if capture_latents:
                    stats.append(part[:, :width], z=part[:, width:width + G.z_dim], w=part[:, width + G.z_dim:])
                else:
                    stats.append(part)
                bar.update(stats.num_items - before)
            if stats.is_full():
                break
    return stats
