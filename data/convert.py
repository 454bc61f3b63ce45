"""Converting any source into a training set (the library behind dataset_tool.py), and `ensure_dataset`.

Output layout is NVIDIA's: `00000/img00000000.png`, `00000/img00000001.png`, ... in a zip (stored, not
deflated) or a folder, plus `dataset.json` = {"labels": [["00000/img00000000.png", 3], ...] or null}.
We add "attributes" (per-image dicts, e.g. the synthetic garments' ground truth) and "class_names" when
known; NVIDIA's reader ignores both.

Nothing half-written is ever left at `dest`: the set is built under a hidden temporary name in the same
folder and renamed into place only when complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import PIL.Image
from tqdm import tqdm

from torch_utils.download import cache_root

from . import DatasetError, synthetic_garments
from .colour import fill_for
from .sources import Labels, load_labels_file, open_source, parse_synthetic, source_kind
from .image_io import MAX_PIXELS, encode_png, match_channels, place_resized, to_array

TRANSFORMS = ('center-crop', 'center-crop-wide', 'pad')


# ---------------------------------------------------------------------------------------------
# Fitting one image to the output size.

def border_colour(image: np.ndarray) -> np.ndarray:
    """Background estimate: per-channel median of a thin frame around the image (product photos are shot on a
    plain backdrop; the garment rarely touches all four sides)."""
    h, w = image.shape[:2]
    t = max(1, min(h, w) // 64)
    frame = np.concatenate([image[:t].reshape(-1, image.shape[2]), image[-t:].reshape(-1, image.shape[2]),
                            image[:, :t].reshape(-1, image.shape[2]), image[:, -t:].reshape(-1, image.shape[2])])
    return np.median(frame, axis=0).round().astype(np.uint8)


def _crop_to_aspect(image: np.ndarray, aspect: float) -> np.ndarray:
    """Largest centred crop with width/height == aspect."""
    h, w = image.shape[:2]
    if w / h > aspect:
        cw = max(1, int(round(h * aspect)))
        return image[:, (w - cw) // 2:(w - cw) // 2 + cw]
    ch = max(1, int(round(w / aspect)))
    return image[(h - ch) // 2:(h - ch) // 2 + ch]


def _pad_box(h: int, w: int, aspect: float) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the smallest centred canvas with width/height == aspect that holds the image."""
    th, tw = (h, int(np.ceil(h * aspect))) if w / h < aspect else (int(np.ceil(w / aspect)), w)
    return -((tw - w) // 2), -((th - h) // 2), tw, th


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    pil = PIL.Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    return to_array(pil.resize((width, height), PIL.Image.LANCZOS, reducing_gap=3.0))


def fit_image(image: np.ndarray, size: Optional[tuple[int, int]], transform: Optional[str],
              background: Optional[tuple[int, int, int]] = None) -> np.ndarray:
    """Crop/pad/resize an HWC image to `size` = (width, height).

    none              plain resize to `size` (aspect not kept), or unchanged without `size`
    center-crop       centred crop to the aspect of `size`, then resize
    center-crop-wide  the same, then letterboxed onto a square canvas (NVIDIA's mode for wide images)
    pad               pad to the aspect of `size` on the background colour (given, or the border's median),
                      then resize; nothing of the garment is lost. Without `size`, pads to a square.
    """
    h, w = image.shape[:2]
    width, height = size if size is not None else (max(h, w), max(h, w)) if transform == 'pad' else (w, h)
    if width * height > MAX_PIXELS:
        raise ValueError(f'the output would be {width}x{height} pixels (at most {MAX_PIXELS / 1e6:.0f} megapixels)')
    aspect = width / height
    if transform is None:
        return _resize(image, width, height)
    if transform in ('center-crop', 'center-crop-wide'):
        image = _resize(_crop_to_aspect(image, aspect), width, height)
        if transform == 'center-crop-wide' and width != height:
            side = max(width, height)
            fill = fill_for((0,) if background is None else background, image.shape[2])
            if image.shape[:2] != (side, side):
                image = place_resized(image, _pad_box(*image.shape[:2], 1.0), (side, side), fill, _resize)
        return image
    if transform == 'pad':
        fill = border_colour(image) if background is None else fill_for(background, image.shape[2])
        return place_resized(image, _pad_box(h, w, aspect), (width, height), fill, _resize)
    raise ValueError(f'unknown transform {transform!r} (choose from {", ".join(TRANSFORMS)})')


# ---------------------------------------------------------------------------------------------
# Writing atomically.

class AtomicDest:
    """NVIDIA's layout into a .zip or a folder, built under a hidden temporary name and renamed at the end. An
    existing file at `dest` is replaced only with `overwrite` (a zip of thousands of images must not become one of
    ten because the command was run again); a folder only when it is empty. The temporary names carry the
    writing process's id, so that one a killed run left behind is recognised and removed by the next run."""

    def __init__(self, dest: str, overwrite: bool = False, log: Callable[[str], None] = lambda line: None):
        self.dest = os.path.normpath(dest)
        self.is_zip = self.dest.lower().endswith('.zip')
        parent = os.path.dirname(os.path.abspath(self.dest))
        if not self.is_zip and os.path.isdir(self.dest) and os.listdir(self.dest):
            raise DatasetError(f'{dest}: destination folder exists and is not empty')
        if os.path.isdir(self.dest) and self.is_zip:
            raise DatasetError(f'{dest}: is a folder, cannot write a zip there')
        if os.path.lexists(self.dest) and not os.path.isdir(self.dest) and not overwrite:
            raise DatasetError(f'{dest}: exists; pass --overwrite to replace it (it is replaced only once the new '
                               f'set is complete)')
        os.makedirs(parent, exist_ok=True)
        prefix = f'.{os.path.basename(self.dest)}.{os.getpid()}.'
        for stale in _stale_temporaries(parent, os.path.basename(self.dest)):
            log(f'removed {stale}, left behind by an interrupted run')
        if self.is_zip:
            fd, self.tmp = tempfile.mkstemp(dir=parent, prefix=prefix, suffix='.tmp')
            os.close(fd)
            self._zip = zipfile.ZipFile(self.tmp, 'w', compression=zipfile.ZIP_STORED)
        else:
            self.tmp = tempfile.mkdtemp(dir=parent, prefix=prefix, suffix='.tmp')

    def write(self, name: str, data: bytes) -> None:
        if self.is_zip:
            self._zip.writestr(name, data)
            return
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)

    def commit(self) -> None:
        # mkstemp and mkdtemp make the output private (0600/0700); a dataset gets the modes any new file or
        # folder gets, as the folder's own images and sub-folders already do.
        umask = os.umask(0)
        os.umask(umask)
        if self.is_zip:
            self._zip.close()
            os.chmod(self.tmp, 0o666 & ~umask)
        else:
            os.chmod(self.tmp, 0o777 & ~umask)
            if os.path.isdir(self.dest):
                os.rmdir(self.dest)     # empty (checked at start); os.replace cannot replace a folder
        os.replace(self.tmp, self.dest)

    def abort(self) -> None:
        if self.is_zip:
            self._zip.close()
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _stale_temporaries(parent: str, base: str) -> list[str]:
    """Remove the temporary outputs for `base` in `parent` whose writing process is gone; returns their paths."""
    removed = []
    pattern = re.compile(re.escape(f'.{base}.') + r'(\d+)\.\w+\.tmp')
    for name in os.listdir(parent):
        m = pattern.fullmatch(name)
        if m is None or _alive(int(m.group(1))):
            continue
        path = os.path.join(parent, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True   # someone else's process, or a number that cannot be asked about: leave its files alone
    return True


# ---------------------------------------------------------------------------------------------
# Converting.

@dataclass
class ConversionReport:
    source: str
    dest: str
    written: int = 0
    skipped: list = field(default_factory=list)      # [location, reason]
    duplicates: list = field(default_factory=list)   # [location, location of the first copy]
    resolution: Optional[int] = None
    channels: Optional[int] = None
    labels: str = 'none'                              # 'none', 'class' or 'vector'
    seconds: float = 0.0

    def summary(self) -> str:
        head = (f'{self.dest}: wrote {self.written} images ({self.resolution}x{self.resolution}, {self.channels} '
                f'channel{"s" if self.channels != 1 else ""}, labels: {self.labels}); skipped {len(self.skipped)}; '
                f'exact duplicates {len(self.duplicates)}; {self.seconds:.1f} s')
        lines = [head] + [f'  skipped {loc}: {why}' for loc, why in self.skipped]
        lines += [f'  duplicate {loc} (same pixels as {first})' for loc, first in self.duplicates]
        return '\n'.join(lines)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _location(kind: str, source: str, name: str) -> str:
    """Where a user finds an item: a real path for folders, archive:member otherwise."""
    if kind == 'folder':
        return os.path.join(source, name)
    if kind in ('zip', 'cifar10'):
        return f'{source}:{name}'
    return os.path.join(os.path.dirname(source) if os.path.isfile(source) else source, name) \
        if kind in ('idx', 'tfrecord') else name


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _dataset_json(labels: list, attributes: list, class_names: Optional[list], report: ConversionReport) -> bytes:
    """dataset.json of the images written: their labels only if every one has a label (report.labels says of
    which kind), attributes likewise, class names only with labels."""
    have_labels = all(label is not None for _, label in labels)
    meta = {'labels': labels if have_labels else None}
    if have_labels:
        report.labels = 'class' if all(isinstance(v, (int, np.integer)) for _, v in labels) else 'vector'
    if all(a is not None for _, a in attributes):
        meta['attributes'] = attributes
    if class_names and have_labels:
        meta['class_names'] = class_names
    return json.dumps(meta).encode('utf-8')


def convert(source: str, dest: str, *, resolution: Optional[tuple[int, int]] = None, transform: Optional[str] = None,
            max_images: Optional[int] = None, background: Optional[tuple[int, int, int]] = None,
            min_size: Optional[int] = None, folder_labels: bool = False, labels_path: Optional[str] = None,
            drop_duplicates: bool = False, compress_level: int = 1, progress: bool = True, overwrite: bool = False,
            log: Optional[Callable[[str], None]] = None) -> ConversionReport:
    """Convert `source` (see sources.py) into a training set at `dest` (.zip, or a folder).

    Unreadable, truncated, non-image and too-small inputs (shorter side < `min_size`, by default a quarter of
    the output size) are skipped and reported through `log` as they happen; exact pixel duplicates are
    reported (and dropped with `drop_duplicates`). A size mismatch without `resolution`, or an output that is
    not a square power of two, stops the conversion with DatasetError."""
    if transform is not None and transform not in TRANSFORMS:
        raise DatasetError(f'unknown transform {transform!r} (choose from {", ".join(TRANSFORMS)})')
    if transform in ('center-crop', 'center-crop-wide') and resolution is None:
        raise DatasetError(f'--transform={transform} needs --resolution=WxH')
    log = log or (tqdm.write if progress else (lambda line: None))
    start = time.time()
    square_res = resolution[0] if resolution is not None and resolution[0] == resolution[1] else None
    src = open_source(source, folder_labels=folder_labels, resolution=square_res)
    override = load_labels_file(labels_path) if labels_path else Labels()
    if min_size is None:
        min_size = max(resolution) // 4 if resolution else 1
    report = ConversionReport(source=source, dest=dest)
    labels, attributes, seen = [], [], {}
    channels = src.channels
    out_shape = None
    writer = AtomicDest(dest, overwrite=overwrite, log=log)
    try:
        total = src.count if max_images is None else min(src.count, max_images)
        bar = tqdm(src.items, total=total, desc='converting', unit='img', disable=not progress, dynamic_ncols=True)
        for item in bar:
            if max_images is not None and report.written >= max_images:
                break
            where = _location(src.kind, source, item.name)

            def skip(reason):
                report.skipped.append([where, reason])
                log(f'skipped {where}: {reason}')
            if item.image is None:
                skip(item.error or 'unreadable')
                continue
            h, w = item.image.shape[:2]
            if min(h, w) < min_size:
                skip(f'too small ({w}x{h}; minimum side {min_size})')
                continue
            digest = hashlib.sha1(repr(item.image.shape).encode() + item.image.tobytes()).hexdigest()
            if digest in seen:
                report.duplicates.append([where, seen[digest]])
                log(f'duplicate {where} (same pixels as {seen[digest]}){"; dropped" if drop_duplicates else ""}')
                if drop_duplicates:
                    continue
            else:
                seen[digest] = where
            try:
                image = fit_image(item.image, resolution, transform, background)
            except ValueError as e:   # an output beyond the size limit
                skip(str(e))
                continue
            channels = channels or image.shape[2]
            image = match_channels(image, channels)
            if out_shape is None:
                out_shape = image.shape
                if out_shape[0] != out_shape[1] or not _is_pow2(out_shape[0]):
                    raise DatasetError(f'{where}: output would be {out_shape[1]}x{out_shape[0]}; training needs square '
                                       f'power-of-two images (pass e.g. --resolution=256x256 --transform=pad)')
            elif image.shape != out_shape:
                raise DatasetError(f'{where}: {w}x{h} does not match the first image '
                                   f'({out_shape[1]}x{out_shape[0]}); pass --resolution=WxH (and a --transform)')
            idx = report.written
            name = f'{idx // 1000:05d}/img{idx:08d}.png'
            writer.write(name, encode_png(image, compress_level))
            labels.append([name, item.label if override.by_name is None else override.by_name.get(item.name)])
            attributes.append([name, item.attributes if override.attributes is None
                               else override.attributes.get(item.name)])
            report.written += 1
        bar.close()
        if report.written == 0:
            raise DatasetError(f'{source}: no usable images ({len(report.skipped)} skipped)')
        writer.write('dataset.json', _dataset_json(labels, attributes, override.class_names or src.class_names, report))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        src.close()
    report.resolution, report.channels = out_shape[0], out_shape[2]
    report.seconds = round(time.time() - start, 3)
    return report


# ---------------------------------------------------------------------------------------------
# Datasets by name, for train.py and calc_metrics.py.

def cache_dir() -> str:
    """Where built datasets are kept: $SG3C_CACHE/datasets, by default ~/.cache/stylegan3-clothing/datasets."""
    return os.path.join(cache_root(), 'datasets')


def _native_size(spec: str) -> int:
    src = open_source(spec)
    try:
        for item in src.items:
            if item.image is not None:
                return max(item.image.shape[:2])
    finally:
        src.close()
    raise DatasetError(f'{spec}: no readable images')


SYNTHETIC_NAME = 'garments-v{version}-{resolution}px-n{n}-seed{seed}{classes}.zip'   # in the cache
_SYNTHETIC_NAME = re.compile(r'garments-v(\d+)-(\d+)px-n(\d+)-seed(\d+)(?:-([\w+-]+))?\.zip')


def synthetic_spec_of(path: str) -> Optional[str]:
    """The `synthetic:garments?...` spec whose cached zip has this file name (a snapshot records its dataset
    so, and the file may be gone or from another machine), or None where the name is no such zip of the
    garments this version draws."""
    m = _SYNTHETIC_NAME.fullmatch(os.path.basename(path))
    if not m or int(m.group(1)) != synthetic_garments.VERSION:
        return None
    classes = f'&classes={m.group(5).replace("+", ",")}' if m.group(5) else ''
    return f'synthetic:garments?n={m.group(3)}&resolution={m.group(2)}&seed={m.group(4)}{classes}'


def ensure_dataset(spec: str, resolution: Optional[int] = None) -> str:
    """A zip or folder that ImageFolderDataset can read, for any dataset spec.

    - `synthetic:garments[?...]` is rendered once (at `resolution` unless the spec gives one) into the cache;
    - an existing zip or folder is returned unchanged (ImageFolderDataset checks it);
    - idx, CIFAR-10 and TFRecord sources are converted once into the cache, padded to `resolution` (default:
      the next power of two of the images' size).
    Later calls return the cached zip without work."""
    kind = source_kind(spec)
    if kind in ('zip', 'folder'):
        return spec
    if kind == 'synthetic':
        opts = parse_synthetic(spec, resolution)
        classes = '-' + '+'.join(opts['classes']) if opts['classes'] else ''
        name = SYNTHETIC_NAME.format(version=synthetic_garments.VERSION, resolution=opts['resolution'], n=opts['n'],
                                     seed=opts['seed'], classes=classes)
        size, transform = opts['resolution'], None
    else:
        stat = os.stat(spec)
        size = resolution or 1 << max(0, int(np.ceil(np.log2(_native_size(spec)))))
        key = hashlib.sha1(f'{os.path.abspath(spec)}|{stat.st_size}|{stat.st_mtime_ns}|{size}'.encode()).hexdigest()[:12]
        name = f'{kind}-{os.path.basename(os.path.normpath(spec))}-{size}px-{key}.zip'
        transform = 'pad'
    path = os.path.join(cache_dir(), name)
    if not os.path.isfile(path):
        convert(spec, path, resolution=(size, size), transform=transform, min_size=1)
    return path
