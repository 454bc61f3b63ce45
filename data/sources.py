"""Readers for every kind of image source dataset_tool.py accepts.

Each `open_*` returns a `Source`: a count (for the progress bar), an iterator of `Item`s (name, HWC uint8
image or the reason it could not be read, label, attributes) and what is known up front (channels, class
names). Unreadable entries are yielded as items with an error so the converter can report them; only a
source that cannot be opened at all raises DatasetError.

    folder/                       recursive; labels from folder/dataset.json, or sub-folder names (folder_labels)
    archive.zip                   the same inside a zip (NVIDIA-made datasets included)
    *-images-idx3-ubyte[.gz]      (Fashion-)MNIST; labels from the matching *-labels-idx1-ubyte[.gz]
    cifar-10-python.tar.gz        CIFAR-10 training batches (or a folder of extracted data_batch_* files)
    dir/ or *.tfrecords           StyleGAN2-TF dataset: the highest-resolution *-rNN.tfrecords, labels *-rxx.labels
    synthetic:garments[?...]      procedural garments, see `parse_synthetic`
"""
from __future__ import annotations

import gzip
import io
import math
import os
import re
import struct
import tarfile
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from torch_utils import safe_npz, safe_pickle

from . import DatasetError, dataset_json, member_limits, synthetic_garments
from .image_io import ImageDecodeError, check_size, decode_image, is_image_name, mode_channels, open_image
from .tfrecord import TFRecordError, example_to_image, read_records


@dataclass
class Item:
    name: str                              # where it came from, for reports and for labels given by name
    image: Optional[np.ndarray] = None     # HWC uint8; None when unreadable
    label: object = None                   # class index, label vector, or None
    attributes: Optional[dict] = None
    error: Optional[str] = None            # why `image` is None


@dataclass
class Source:
    kind: str
    count: int
    items: Iterator[Item]
    channels: Optional[int] = None         # 1 or 3 when known before decoding everything
    class_names: Optional[list] = None
    close: Callable[[], None] = field(default=lambda: None)


@dataclass
class Labels:
    """What a dataset.json says about the images it names; None where it says nothing."""
    by_name: Optional[dict] = None         # file name -> class index or label vector
    attributes: Optional[dict] = None      # file name -> attribute dict
    class_names: Optional[list] = None


# ---------------------------------------------------------------------------------------------
# Folders and zips of image files.

def _labels_from_json(raw: Optional[bytes], origin: str) -> Labels:
    if raw is None:
        return Labels()
    meta = dataset_json.parse_dataset_json(raw, origin)
    return Labels(dataset_json.entries_by_name(meta, 'labels', origin),
                  dataset_json.entries_by_name(meta, 'attributes', origin), dataset_json.class_names(meta))


def load_labels_file(path: str) -> Labels:
    """Labels (and attributes, class names) from a dataset.json given on its own (dataset_tool --labels)."""
    try:
        with open(path, 'rb') as f:
            raw = member_limits.read_limited(f, member_limits.JSON_LIMIT, 'a dataset.json')
    except OSError as e:
        raise DatasetError(f'{path}: cannot read labels ({e.strerror or e})') from None
    return _labels_from_json(raw, path)


def _scan_channels(names: list[str], opener: Callable[[str], io.IOBase]) -> int:
    """1 if every readable image is greyscale, else 3; reads headers only."""
    for name in names:
        try:
            with opener(name) as f, open_image(f) as image:
                if mode_channels(image.mode) == 3:
                    return 3
        except Exception:   # noqa: BLE001 - unreadable files are reported when they are decoded
            continue
    return 1


def _read_image_file(opener: Callable[[], io.IOBase], declared: int) -> bytes:
    """An image file's bytes, held to what an image of its header's size can need (see member_limits): a few
    KB of deflated zeros behind a valid PNG header must not expand to gigabytes in memory."""
    try:
        with opener() as f, open_image(f) as image:
            limit, what = member_limits.image_size_limit(*image.size), '{}x{} image'.format(*image.size)
    except ImageDecodeError:   # decoding will say why; read no more than any file may hold
        limit, what = member_limits.METADATA_ALLOWANCE, 'a file that is not a readable image'
    member_limits.check_declared(declared, limit, what)
    with opener() as f:
        return member_limits.read_limited(f, limit, what)


def _image_collection(kind: str, origin: str, names: list[str], read: Callable[[str], bytes],
                      opener: Callable[[str], io.IOBase], json_bytes: Optional[bytes], folder_labels: bool,
                      close: Callable[[], None] = lambda: None, special: Sequence[tuple[str, str]] = ()) -> Source:
    visible = [n for n in names if not any(part.startswith('.') for part in n.split('/')) and n != 'dataset.json']
    images = [n for n in visible if is_image_name(n)]
    others = [n for n in visible if not is_image_name(n)]
    known = _labels_from_json(json_bytes, f'{origin}/dataset.json')
    labels, attributes, class_names = known.by_name, known.attributes, known.class_names
    if folder_labels:
        class_names = sorted({n.split('/')[0] for n in images if '/' in n})
        if not class_names:
            raise DatasetError(f'{origin}: --folder-labels needs images in sub-folders (one per class)')
        labels = {n: class_names.index(n.split('/')[0]) for n in images if '/' in n}

    def items():
        for n, reason in special:
            yield Item(n, error=reason)
        for n in others:
            yield Item(n, error='not an image file')
        for n in images:
            if folder_labels and '/' not in n:
                yield Item(n, error='not inside a class sub-folder')
                continue
            try:
                image = decode_image(read(n))
            except ImageDecodeError as e:
                yield Item(n, error=f'unreadable image ({e})')
                continue
            except OSError as e:
                yield Item(n, error=f'cannot read file ({e})')
                continue
            yield Item(n, image, label=labels.get(n) if labels else None,
                       attributes=attributes.get(n) if attributes else None)
    return Source(kind, len(special) + len(images) + len(others), items(), channels=_scan_channels(images, opener),
                  class_names=class_names, close=close)


def open_folder(path: str, folder_labels: bool = False) -> Source:
    names, special = member_limits.walk_files(path)

    def read(name):
        full = os.path.join(path, name)
        return _read_image_file(lambda: open(full, 'rb'), os.path.getsize(full))
    json_bytes = None
    if 'dataset.json' in names:
        try:
            with open(os.path.join(path, 'dataset.json'), 'rb') as f:
                json_bytes = member_limits.read_limited(f, member_limits.JSON_LIMIT, 'dataset.json')
        except OSError as e:
            raise DatasetError(f'{path}: cannot read dataset.json ({e.strerror or e})') from None
    return _image_collection('folder', path, names, read, lambda n: open(os.path.join(path, n), 'rb'), json_bytes,
                             folder_labels, special=special)


def open_zip(path: str, folder_labels: bool = False) -> Source:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f'{path}: not a readable zip archive ({e})') from None
    names = sorted(n for n in archive.namelist() if not n.endswith('/'))

    def read(name, limit=None):
        info = archive.getinfo(name)
        try:
            if limit is None:
                return _read_image_file(lambda: archive.open(info), info.file_size)
            member_limits.check_declared(info.file_size, limit, name)
            with archive.open(info) as f:
                return member_limits.read_limited(f, limit, name)
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as e:
            raise OSError(str(e)) from None   # a damaged member: report it, keep the others
    try:
        json_bytes = read('dataset.json', member_limits.JSON_LIMIT) if 'dataset.json' in names else None
    except OSError as e:
        raise DatasetError(f'{path}: cannot read dataset.json ({e})') from None
    return _image_collection('zip', path, names, read, archive.open, json_bytes, folder_labels, close=archive.close)


# Pixels read at once from an idx file or from CIFAR batches together (EMNIST's largest split holds 547 MB),
# and the size of one pickled CIFAR batch (CIFAR-10's are 31 MB).
MAX_SOURCE_BYTES = 1 << 30
MAX_CIFAR_BATCH = 64 << 20


# ---------------------------------------------------------------------------------------------
# (Fashion-)MNIST idx files.

_IDX_IMAGES = re.compile(r'^(.*)images[-.]idx3-ubyte(\.gz)?$')


def _read_idx(path: str, dims: tuple[int, ...]) -> np.ndarray:
    """An idx array of unsigned bytes with one of `dims` dimensions. The header is checked (dimension count, a size
    computed without overflow, at most MAX_SOURCE_BYTES, no more than a plain file holds) before the data is read,
    and a .gz is decompressed only as far as the header's size: a small .gz that expands to gigabytes is not."""
    opener = gzip.open if path.endswith('.gz') else open
    try:
        with opener(path, 'rb') as f:
            head = f.read(4)
            if len(head) < 4:
                raise DatasetError(f'{path}: too short for an idx file')
            zero, dtype_code, ndim = struct.unpack('>HBB', head)
            if zero != 0 or dtype_code != 0x08:
                raise DatasetError(f'{path}: not an idx file of unsigned bytes (magic {head.hex()})')
            if ndim not in dims:
                raise DatasetError(f'{path}: idx header declares {ndim} dimensions, expected {" or ".join(map(str, dims))}')
            raw_shape = f.read(4 * ndim)
            if len(raw_shape) < 4 * ndim:
                raise DatasetError(f'{path}: truncated idx header')
            shape = struct.unpack(f'>{ndim}I', raw_shape)
            count = math.prod(shape)
            if count > MAX_SOURCE_BYTES:
                raise DatasetError(f'{path}: idx header declares shape {list(shape)}, {count / 2 ** 20:.0f} MiB '
                                   f'(at most {MAX_SOURCE_BYTES >> 20} MiB are read)')
            if opener is open and os.fstat(f.fileno()).st_size < 4 + 4 * ndim + count:
                raise DatasetError(f'{path}: truncated ({os.fstat(f.fileno()).st_size} bytes, header promises '
                                   f'{4 + 4 * ndim + count})')
            data = f.read(count)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f'{path}: cannot read ({e})') from None
    if len(data) < count:
        raise DatasetError(f'{path}: truncated ({4 + 4 * ndim + len(data)} bytes, header promises {4 + 4 * ndim + count})')
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def find_idx_images(path: str) -> Optional[str]:
    """The images file of an idx dataset at `path` (the file itself, or the training images in a folder)."""
    if os.path.isfile(path):
        return path if _IDX_IMAGES.match(os.path.basename(path)) else None
    if not os.path.isdir(path):
        return None
    candidates = sorted(f for f in os.listdir(path) if _IDX_IMAGES.match(f))
    if not candidates:
        return None
    train = [f for f in candidates if f.startswith('train')]
    return os.path.join(path, (train or candidates)[0])


def open_idx(path: str) -> Source:
    images_path = find_idx_images(path)
    if images_path is None:
        raise DatasetError(f'{path}: no *-images-idx3-ubyte[.gz] file')
    images = _read_idx(images_path, (3, 4))
    if images.ndim == 4 and images.shape[3] not in (1, 3):
        raise DatasetError(f'{images_path}: expected [N, H, W] or [N, H, W, C] images, got shape {list(images.shape)}')
    try:
        check_size(images.shape[2], images.shape[1])
    except ImageDecodeError as e:
        raise DatasetError(f'{images_path}: images of {e}') from None
    folder, base = os.path.split(images_path)
    prefix, sep = _IDX_IMAGES.match(base).group(1), '-' if '-idx3' in base else '.'
    labels = None
    for suffix in ('.gz', ''):
        candidate = os.path.join(folder, f'{prefix}labels{sep}idx1-ubyte{suffix}')
        if os.path.isfile(candidate):
            labels = _read_idx(candidate, (1,))
            if labels.shape != (len(images),):
                raise DatasetError(f'{candidate}: {labels.shape[0]} labels for {len(images)} images')
            break
    name = os.path.basename(images_path)

    def items():
        for i, image in enumerate(images):
            yield Item(f'{name}[{i}]', image[:, :, None] if image.ndim == 2 else image,
                       label=None if labels is None else int(labels[i]))
    return Source('idx', len(images), items(), channels=1 if images.ndim == 3 else images.shape[3])


# ---------------------------------------------------------------------------------------------
# CIFAR-10, pickled batches read with the project's one allow-list unpickler (plain numbers and arrays).

def load_array_pickle(data: bytes, origin: str):
    try:
        return safe_pickle.loads(data, encoding='latin1')   # CIFAR's batches come from Python 2
    except safe_pickle.UnsafePickleError as e:
        raise DatasetError(f'{origin}: {e}') from None


def _cifar_batch(batch, origin: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict):
        raise DatasetError(f'{origin}: not a CIFAR batch (expected a dict)')
    batch = {k.decode('latin1') if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if 'data' not in batch or 'labels' not in batch:
        raise DatasetError(f'{origin}: CIFAR batch lacks "data" or "labels"')
    try:
        data = np.asarray(batch['data'], dtype=np.uint8)
        labels = np.asarray(batch['labels'], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise DatasetError(f'{origin}: CIFAR batch "data"/"labels" are not arrays of numbers ({e})') from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1 or len(labels) != len(data):
        raise DatasetError(f'{origin}: unexpected CIFAR batch shapes {list(data.shape)} / {list(labels.shape)}')
    if labels.size and not 0 <= labels.min() <= labels.max() < 10:
        raise DatasetError(f'{origin}: CIFAR-10 labels outside 0..9 ({labels.min()}..{labels.max()})')
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _batch_number(name: str) -> int:
    return int(re.search(r'data_batch_(\d+)$', name).group(1))


def _cifar_batches(path: str) -> Iterator[tuple[str, bytes]]:
    """(origin, pickled bytes) of each data_batch_N of a folder or tar archive; each at most MAX_CIFAR_BATCH bytes,
    checked before it is read (a tar member's size is in its header)."""
    what = 'a CIFAR batch'
    if os.path.isdir(path):
        top = os.path.realpath(path)
        for f in sorted((f for f in os.listdir(path) if re.search(r'data_batch_\d+$', f)), key=_batch_number):
            origin = f'{path}/{f}'
            reason = member_limits.special_file_reason(os.path.join(path, f), top)
            if reason:
                raise DatasetError(f'{origin}: {reason}')
            with open(os.path.join(path, f), 'rb') as fh:
                yield origin, member_limits.read_limited(fh, MAX_CIFAR_BATCH, what)
        return
    with tarfile.open(path) as tar:
        for m in tar:   # one member at a time: a huge member is refused before the archive is read past it
            if m.isfile() and re.search(r'data_batch_\d+$', m.name):
                member_limits.check_declared(m.size, MAX_CIFAR_BATCH, what)
                yield f'{path}:{m.name}', member_limits.read_limited(tar.extractfile(m), MAX_CIFAR_BATCH, what)


def open_cifar10(path: str) -> Source:
    batches, total = [], 0
    try:
        for origin, data in _cifar_batches(path):
            batches.append((_batch_number(origin), _cifar_batch(load_array_pickle(data, origin), origin)))
            total += batches[-1][1][0].nbytes
            if total > MAX_SOURCE_BYTES:
                raise DatasetError(f'{path}: more than {MAX_SOURCE_BYTES >> 20} MiB of CIFAR images')
    except member_limits.MemberTooLarge as e:
        raise DatasetError(f'{path}: a batch is {e}') from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f'{path}: cannot read ({e})') from None
    if not batches:
        raise DatasetError(f'{path}: no data_batch_N files (expected the CIFAR-10 python version)')
    batches = [b for _, b in sorted(batches, key=lambda nb: nb[0])]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])

    def items():
        for i in range(len(images)):
            yield Item(f'cifar10[{i}]', images[i], label=int(labels[i]))
    return Source('cifar10', len(images), items(), channels=3)


def is_cifar10(path: str) -> bool:
    if os.path.isdir(path):
        return any(re.search(r'data_batch_\d+$', f) for f in os.listdir(path))
    name = os.path.basename(path).lower()
    return os.path.isfile(path) and ('cifar' in name or name.endswith(('.tar', '.tar.gz', '.tgz'))) \
        and tarfile.is_tarfile(path)


# ---------------------------------------------------------------------------------------------
# StyleGAN2-TF TFRecords.

def find_tfrecords(path: str) -> Optional[str]:
    """The highest-resolution *.tfrecords file of a StyleGAN2-TF dataset (a folder or one file)."""
    if os.path.isfile(path):
        return path if path.endswith('.tfrecords') else None
    if not os.path.isdir(path):
        return None
    files = [f for f in os.listdir(path) if f.endswith('.tfrecords')]
    if not files:
        return None
    lods = {f: re.search(r'-r(\d+)\.tfrecords$', f) for f in files}
    if all(lods.values()):
        return os.path.join(path, max(files, key=lambda f: int(lods[f].group(1))))
    if len(files) > 1:
        raise DatasetError(f'{path}: several .tfrecords files without -rNN resolution suffixes; name one of them')
    return os.path.join(path, files[0])


def _tfrecord_labels(record_path: str) -> Optional[np.ndarray]:
    folder = os.path.dirname(record_path)
    prefix = re.sub(r'-r\d+\.tfrecords$', '', os.path.basename(record_path))
    path = os.path.join(folder, f'{prefix}-rxx.labels')
    if not os.path.isfile(path):
        return None
    try:
        labels = safe_npz.load_npy(path, 'biuf', shapes=[(None,), (None, None)])
    except safe_npz.NpzError as e:
        raise DatasetError(f'{path}: {e}') from None
    if labels.dtype.kind == 'f' and not np.isfinite(labels).all():
        raise DatasetError(f'{path}: labels hold NaN or infinite values')
    return labels


def _label_value(row: np.ndarray):
    """One-hot rows become class indices (NVIDIA's compact form); anything else stays a vector."""
    row = np.asarray(row)
    if row.ndim == 0:
        return int(row)
    if row.ndim == 1 and np.count_nonzero(row) == 1 and row.max() == 1:
        return int(np.argmax(row))
    return [float(v) for v in row.reshape(-1)]


def count_records(path: str) -> int:
    """Records in a TFRecord file, from the framing alone (for the progress bar)."""
    count = 0
    with open(path, 'rb') as f:
        while True:
            header = f.read(8)
            if len(header) < 8:
                return count
            f.seek(struct.unpack('<Q', header)[0] + 8, os.SEEK_CUR)
            count += 1


def open_tfrecords(path: str) -> Source:
    record_path = find_tfrecords(path)
    if record_path is None:
        raise DatasetError(f'{path}: no .tfrecords file')
    labels = _tfrecord_labels(record_path)
    total = count_records(record_path)
    name = os.path.basename(record_path)

    def items():
        with open(record_path, 'rb') as f:
            index = 0
            try:
                for payload, crc_ok in read_records(f, record_path):
                    item_name = f'{name}[{index}]'
                    label = _label_value(labels[index]) if labels is not None and index < len(labels) else None
                    index += 1
                    if not crc_ok:
                        yield Item(item_name, error='corrupt record (data CRC mismatch)')
                        continue
                    try:
                        image = example_to_image(payload)
                        check_size(image.shape[1], image.shape[0])
                        if label is not None:
                            dataset_json.check_label(label, 'its label')
                    except (ValueError, ImageDecodeError, DatasetError) as e:
                        yield Item(item_name, error=f'bad record ({e})')
                        continue
                    yield Item(item_name, image, label=label)
            except TFRecordError as e:
                yield Item(f'{name}[{index}:]', error=f'{e}; the rest of the file cannot be read')
    return Source('tfrecord', total, items())


# ---------------------------------------------------------------------------------------------
# The synthetic garment set.

SYNTHETIC_DEFAULTS = dict(n=1000, resolution=64, seed=0, classes=None)


def parse_synthetic(spec: str, resolution: Optional[int] = None) -> dict:
    """'synthetic:garments[?n=1000&resolution=64&seed=0&classes=t-shirt,dress]' -> options.

    `resolution` fills in the resolution when the spec does not give one."""
    m = re.fullmatch(r'synthetic:([\w-]+)(?:\?(.*))?', spec)
    if not m or m.group(1) != 'garments':
        raise DatasetError(f'{spec}: unknown synthetic source (use synthetic:garments[?n=1000&resolution=64&seed=0])')
    options = dict(SYNTHETIC_DEFAULTS, resolution=resolution or SYNTHETIC_DEFAULTS['resolution'])
    try:
        pairs = urllib.parse.parse_qsl(m.group(2) or '', strict_parsing=bool(m.group(2)))
    except ValueError:
        raise DatasetError(f'{spec}: options must look like ?n=1000&resolution=64') from None
    for key, value in pairs:
        if key not in options:
            raise DatasetError(f'{spec}: unknown option {key!r} (n, resolution, seed, classes)')
        if key == 'classes':
            classes = [c.strip() for c in value.split(',') if c.strip()]
            bad = [c for c in classes if c not in synthetic_garments.CLASSES]
            if bad or not classes:
                raise DatasetError(f'{spec}: unknown class {", ".join(bad) or "(none)"} '
                                   f'(choose from {", ".join(synthetic_garments.CLASSES)})')
            options[key] = classes
        else:
            try:
                options[key] = int(value)
            except ValueError:
                raise DatasetError(f'{spec}: {key} must be an integer, not {value!r}') from None
    if options['n'] < 1 or options['resolution'] < 8:
        raise DatasetError(f'{spec}: need n >= 1 and resolution >= 8')
    return options


def open_synthetic(spec: str, resolution: Optional[int] = None) -> Source:
    options = parse_synthetic(spec, resolution)
    attributes = synthetic_garments.garment_attributes(options['n'], options['seed'], options['classes'])

    def items():   # rendered one at a time so that the progress bar moves
        for i, a in enumerate(attributes):
            yield Item(f'garment{i:06d}', synthetic_garments.render_garment(a, options['resolution']),
                       label=a['class_idx'], attributes=a)
    return Source('synthetic', len(attributes), items(), channels=3, class_names=list(synthetic_garments.CLASSES))


# ---------------------------------------------------------------------------------------------

def source_kind(source: str) -> str:
    """Which reader handles `source`: synthetic, idx, cifar10, tfrecord, zip or folder."""
    if source.startswith('synthetic:'):
        return 'synthetic'
    if not os.path.exists(source):
        raise DatasetError(f'{source}: no such file or directory')
    if os.path.isdir(source):
        has_images = any(is_image_name(f) for _, _, files in os.walk(source) for f in files)
        if not has_images:
            if find_idx_images(source):
                return 'idx'
            if find_tfrecords(source):
                return 'tfrecord'
            if is_cifar10(source):
                return 'cifar10'
        return 'folder'
    if find_idx_images(source):
        return 'idx'
    if source.endswith('.tfrecords'):
        return 'tfrecord'
    if zipfile.is_zipfile(source):
        return 'zip'
    if is_cifar10(source):
        return 'cifar10'
    raise DatasetError(f'{source}: unsupported source (a folder, .zip, *-images-idx3-ubyte[.gz], '
                       f'cifar-10-python.tar.gz, .tfrecords, or synthetic:garments)')


def open_source(source: str, folder_labels: bool = False, resolution: Optional[int] = None) -> Source:
    """A Source for any supported kind; `resolution` only matters to synthetic sources (rendered at that size)."""
    kind = source_kind(source)
    if folder_labels and kind not in ('folder', 'zip'):
        raise DatasetError(f'{source}: --folder-labels applies to folders and zips, not {kind} sources')
    if kind == 'synthetic':
        return open_synthetic(source, resolution)
    if kind in ('folder', 'zip'):
        return (open_folder if kind == 'folder' else open_zip)(source, folder_labels=folder_labels)
    return {'idx': open_idx, 'cifar10': open_cifar10, 'tfrecord': open_tfrecords}[kind](source)
