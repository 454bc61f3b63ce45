"""The training set: images (and labels) of a zip or folder, read lazily as uint8 CHW arrays.

Reads NVIDIA's dataset_tool layout and ours (`00000/img00000000.png` + `dataset.json`), and also any
folder or zip of images as they are, provided they all share one square power-of-two size. Labels come
from `dataset.json` ({"labels": [[file name, class index or vector], ...]}); class indices become one-hot
vectors. Same constructor arguments and behaviour as NVIDIA's `ImageFolderDataset`:

- `max_size` keeps a random subset chosen by `random_seed` (NVIDIA's selection: shuffle, take, sort);
- `xflip` appends a mirrored copy of every image, doubling the set as `--mirror` does;
- `shuffle` (ours) permutes the order by `random_seed`, identically in every process.

Zip handles are opened on first use in each process, so the dataset can be handed to DataLoader workers
(forked or spawned) safely.
"""
from __future__ import annotations

import os
import sys
import zipfile
import zlib
from typing import Optional

import numpy as np
import torch

from . import DatasetError, dataset_json, member_limits
from .image_io import ImageDecodeError, decode_image, is_image_name, match_channels, mode_channels, open_image

__all__ = ['ImageFolderDataset']


class ImageFolderDataset(torch.utils.data.Dataset):

    def __init__(self, path: str, resolution: Optional[int] = None, use_labels: bool = False, xflip: bool = False,
                 max_size: Optional[int] = None, random_seed: int = 0, shuffle: bool = False):
        self.path = str(path)
        self._use_labels = use_labels
        self._zip = None
        self._zip_pid = None
        self.skipped: list[tuple[str, str]] = []   # (file, reason) of files left out
        if os.path.isdir(self.path):
            self._kind = 'dir'
            names, special = member_limits.walk_files(self.path)
            for name, reason in special:
                self._skip(name, reason)
        elif os.path.isfile(self.path):
            if not zipfile.is_zipfile(self.path):
                raise DatasetError(f'{self.path}: not a folder or a zip archive (convert it with dataset_tool.py)')
            self._kind = 'zip'
            names = self._archive().namelist()
        else:
            raise DatasetError(f'{self.path}: no such dataset')
        self._all_names = set(names)
        self._names = sorted(n for n in names if is_image_name(n) and not os.path.basename(n).startswith('.'))
        if not self._names:
            raise DatasetError(f'{self.path}: no images found')
        self.name = os.path.splitext(os.path.basename(os.path.normpath(self.path)))[0]
        self._scan_headers(resolution)
        self._meta = self._read_meta()
        self._raw_labels = self._parse_labels() if use_labels else None

        order = np.arange(len(self._names), dtype=np.int64)
        if max_size is not None and max_size < order.size:
            np.random.RandomState(random_seed % (1 << 32)).shuffle(order)
            order = np.sort(order[:max_size])
        if shuffle:
            order = order[np.random.RandomState(random_seed % (1 << 32)).permutation(order.size)]
        self._raw_idx = np.tile(order, 2) if xflip else order
        self._xflip = np.repeat(np.array([False, True]), order.size) if xflip else np.zeros(order.size, dtype=bool)

    # -- files -----------------------------------------------------------------------------------

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():   # a zip handle must not be shared across fork
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DatasetError(f'{self.path}: cannot open the zip archive ({e})') from None
            self._zip_pid = os.getpid()
        return self._zip

    def _open(self, name: str):
        if self._kind == 'dir':
            return open(os.path.join(self.path, name), 'rb')
        return self._archive().open(name)

    def _member_size(self, name: str) -> int:
        if self._kind == 'dir':
            return os.path.getsize(os.path.join(self.path, name))
        return self._archive().getinfo(name).file_size

    def _skip(self, name: str, reason: str) -> None:
        self.skipped.append((name, reason))
        print(f'{self.path}: skipped {name}: {reason}', file=sys.stderr)

    def _scan_headers(self, resolution: Optional[int]) -> None:
        """Reads every header (not the pixels) so that a bad dataset fails now, naming the first odd file.
        Files larger than an image of their size can be (e.g. a zip bomb behind a valid header) are skipped
        and reported, as dataset_tool.py skips unreadable images."""
        first_size, colour, kept = None, False, []
        for name in self._names:
            try:
                with self._open(name) as f, open_image(f) as image:
                    size, mode = image.size, image.mode
                member_limits.check_declared(self._member_size(name), member_limits.image_size_limit(*size),
                                             '{}x{} image'.format(*size))
            except member_limits.MemberTooLarge as e:
                self._skip(name, str(e))
                continue
            except Exception as e:   # noqa: BLE001 - any failure here is one unreadable file
                raise DatasetError(f'{self.path}: cannot read {name} ({type(e).__name__}: {e})') from None
            kept.append(name)
            if first_size is None:
                first_size = size
                w, h = size
                if w != h or w & (w - 1):
                    raise DatasetError(f'{self.path}: {name} is {w}x{h}; training needs square power-of-two images '
                                       f'(convert with dataset_tool.py --resolution=256x256 --transform=pad)')
                if resolution is not None and w != resolution:
                    raise DatasetError(f'{self.path}: images are {w}x{h} but resolution {resolution} was asked for')
            elif size != first_size:
                raise DatasetError(f'{self.path}: {name} is {size[0]}x{size[1]} but {kept[0]} is '
                                   f'{first_size[0]}x{first_size[1]}; all images must have the same size '
                                   f'(convert with dataset_tool.py --resolution=...)')
            colour = colour or mode_channels(mode) == 3
        if not kept:
            raise DatasetError(f'{self.path}: no usable images ({len(self.skipped)} skipped)')
        self._names = kept
        self.resolution = first_size[0]
        self.num_channels = 3 if colour else 1   # greyscale images in a colour set are expanded when read

    def _read_meta(self) -> dict:
        if 'dataset.json' not in self._all_names:
            return {}
        origin = f'{self.path}/dataset.json'
        try:
            with self._open('dataset.json') as f:   # the same cap as dataset_tool.py's; zip members can lie
                member_limits.check_declared(self._member_size('dataset.json'), member_limits.JSON_LIMIT, 'dataset.json')
                raw = member_limits.read_limited(f, member_limits.JSON_LIMIT, 'dataset.json')
        except (OSError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as e:
            raise DatasetError(f'{origin}: cannot read ({e})') from None
        return dataset_json.parse_dataset_json(raw, origin)

    def _by_name(self, key: str) -> Optional[list]:
        table = dataset_json.entries_by_name(self._meta, key, f'{self.path}/dataset.json')
        if table is None:
            return None
        missing = [n for n in self._names if n not in table]
        if missing:
            raise DatasetError(f'{self.path}: dataset.json "{key}" has no entry for {missing[0]}')
        return [table[n] for n in self._names]

    def _parse_labels(self) -> Optional[np.ndarray]:
        values = self._by_name('labels')
        return None if values is None else dataset_json.label_array(values, f'{self.path}/dataset.json')

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        name = self._names[raw_idx]
        try:
            with self._open(name) as f:   # bounded again here: a zip header can under-declare a member
                limit = member_limits.image_size_limit(self.resolution, self.resolution)
                image = decode_image(member_limits.read_limited(f, limit, f'a {self.resolution}px image'))
        except (ImageDecodeError, OSError) as e:
            raise DatasetError(f'{self.path}: cannot read {name} ({e})') from None
        if image.shape[:2] != (self.resolution, self.resolution):
            raise DatasetError(f'{self.path}: {name} is {image.shape[1]}x{image.shape[0]}, '
                               f'expected {self.resolution}x{self.resolution}')
        return match_channels(image, self.num_channels).transpose(2, 0, 1)

    # -- Dataset API -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._raw_idx.size)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        image = self._load_raw_image(int(self._raw_idx[idx]))
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        if self._raw_labels is None:
            return np.zeros([0], dtype=np.float32)
        label = self._raw_labels[self._raw_idx[idx]]
        if self._raw_labels.dtype == np.int64:
            onehot = np.zeros(self.label_dim, dtype=np.float32)
            onehot[label] = 1
            return onehot
        return label.copy()

    def get_details(self, idx: int) -> dict:
        """Which file, mirrored or not, and its raw label, of item `idx`."""
        raw = int(self._raw_idx[idx])
        return dict(raw_idx=raw, fname=self._names[raw], xflip=bool(self._xflip[idx]),
                    raw_label=None if self._raw_labels is None else self._raw_labels[raw].copy())

    def get_attributes(self, idx: int) -> Optional[dict]:
        """Per-image attributes from dataset.json "attributes" (the synthetic garments' ground truth), or None."""
        if not hasattr(self, '_attributes'):
            self._attributes = self._by_name('attributes')
        return None if self._attributes is None else self._attributes[self._raw_idx[idx]]

    @property
    def class_names(self) -> Optional[list]:
        return dataset_json.class_names(self._meta)

    @property
    def image_shape(self) -> list[int]:
        return [self.num_channels, self.resolution, self.resolution]

    @property
    def label_shape(self) -> list[int]:
        if self._raw_labels is None:
            return [0]
        if self._raw_labels.dtype == np.int64:
            return [int(self._raw_labels.max()) + 1]
        return list(self._raw_labels.shape[1:])

    @property
    def label_dim(self) -> int:
        return self.label_shape[0]

    @property
    def has_labels(self) -> bool:
        return self.label_dim != 0

    @property
    def has_onehot_labels(self) -> bool:
        return self._raw_labels is not None and self._raw_labels.dtype == np.int64

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        self._zip = None

    def __getstate__(self):
        return dict(self.__dict__, _zip=None, _zip_pid=None)

    def __del__(self):
        try:
            self.close()
        except Exception:   # noqa: BLE001 - interpreter shutdown
            pass
