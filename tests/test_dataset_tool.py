"""dataset_tool.py and data/convert.py: every source kind, built here from scratch, converts to the
exact pixels and labels; bad files are reported and skipped; nothing half-written is ever left behind."""
import gzip
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import PIL.Image
import pytest

from data import DatasetError, tfrecord
from data.colour import parse_colour
from data.convert import convert, ensure_dataset, fit_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_set(path):
    """{name: HWC uint8} and dataset.json of a converted zip or folder."""
    if os.path.isdir(path):
        files = {os.path.relpath(os.path.join(r, f), path).replace(os.sep, '/'): open(os.path.join(r, f), 'rb').read()
                 for r, _, fs in os.walk(path) for f in fs}
    else:
        with zipfile.ZipFile(path) as z:
            files = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(files.pop('dataset.json'))
    images = {}
    for name, data in sorted(files.items()):
        img = np.asarray(PIL.Image.open(io.BytesIO(data)))
        images[name] = img[:, :, None] if img.ndim == 2 else img
    return images, meta


def rand_image(rng, h, w, c=3):
    return rng.randint(0, 256, size=(h, w, c) if c > 1 else (h, w), dtype=np.uint8)


def leftovers(folder):
    return [f for f in os.listdir(folder) if f.startswith('.')]


# ---------------------------------------------------------------------------------------------
# Folders and zips.

@pytest.fixture
def messy_folder(tmp_path):
    """Four good images (RGB, RGBA, greyscale, a duplicate), a corrupt JPEG, a text file and a tiny image."""
    rng = np.random.RandomState(0)
    root = tmp_path / 'photos'
    (root / 'sub').mkdir(parents=True)
    rgb = rand_image(rng, 16, 16)
    PIL.Image.fromarray(rgb).save(root / 'a_rgb.png')
    rgba = rand_image(rng, 16, 16, 4)
    PIL.Image.fromarray(rgba, 'RGBA').save(root / 'b_alpha.png')
    grey = rand_image(rng, 16, 16, 1)
    PIL.Image.fromarray(grey, 'L').save(root / 'sub' / 'c_grey.png')
    PIL.Image.fromarray(rgb).save(root / 'sub' / 'd_copy.png')
    buf = io.BytesIO()
    PIL.Image.fromarray(rand_image(rng, 64, 64)).save(buf, format='JPEG', quality=90)
    (root / 'e_corrupt.jpg').write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    (root / 'notes.txt').write_text('not an image')
    PIL.Image.fromarray(rand_image(rng, 2, 2)).save(root / 'f_tiny.png')
    alpha = rgba[:, :, 3:].astype(np.float64) / 255
    composited = np.rint(rgba[:, :, :3] * alpha + 255 * (1 - alpha))
    expected = {'a_rgb.png': rgb, 'b_alpha.png': composited, 'sub/c_grey.png': np.repeat(grey[:, :, None], 3, 2),
                'sub/d_copy.png': rgb}
    return root, expected


def test_folder_with_bad_files(messy_folder, tmp_path):
    root, expected = messy_folder
    report = convert(str(root), str(tmp_path / 'out.zip'), min_size=4, progress=False)
    images, meta = read_set(tmp_path / 'out.zip')
    assert report.written == 4 and len(images) == 4
    assert meta['labels'] is None
    # Sorted source order, NVIDIA's archive names, exact pixels (alpha on white within rounding).
    assert list(images) == [f'00000/img{i:08d}.png' for i in range(4)]
    for got, name in zip(images.values(), sorted(expected)):
        assert got.shape == (16, 16, 3)
        assert np.abs(got.astype(int) - expected[name]).max() <= 1, name
        if name != 'b_alpha.png':
            assert np.array_equal(got, expected[name]), name
    skipped = {os.path.relpath(loc, root): why for loc, why in report.skipped}
    assert set(skipped) == {'e_corrupt.jpg', 'notes.txt', 'f_tiny.png'}
    assert 'unreadable' in skipped['e_corrupt.jpg'] and 'not an image' in skipped['notes.txt']
    assert 'too small' in skipped['f_tiny.png']
    assert [os.path.relpath(a, root) for a, _ in report.duplicates] == [os.path.join('sub', 'd_copy.png')]
    assert leftovers(tmp_path) == []


def test_drop_duplicates_and_greyscale_only(tmp_path):
    rng = np.random.RandomState(1)
    root = tmp_path / 'grey'
    root.mkdir()
    a, b = rand_image(rng, 8, 8, 1), rand_image(rng, 8, 8, 1)
    for name, img in (('0.png', a), ('1.png', b), ('2.png', a)):
        PIL.Image.fromarray(img, 'L').save(root / name)
    report = convert(str(root), str(tmp_path / 'g'), drop_duplicates=True, progress=False)
    images, _ = read_set(tmp_path / 'g')
    assert report.written == 2 and report.channels == 1 and len(report.duplicates) == 1
    assert [img.shape for img in images.values()] == [(8, 8, 1)] * 2
    assert np.array_equal(images['00000/img00000000.png'][:, :, 0], a)
    assert np.array_equal(images['00000/img00000001.png'][:, :, 0], b)


def test_folder_labels_and_class_names(tmp_path):
    rng = np.random.RandomState(2)
    for cls in ('skirts', 'dresses'):
        (tmp_path / 'src' / cls).mkdir(parents=True)
        for i in range(2):
            PIL.Image.fromarray(rand_image(rng, 8, 8)).save(tmp_path / 'src' / cls / f'{i}.png')
    convert(str(tmp_path / 'src'), str(tmp_path / 'out.zip'), folder_labels=True, progress=False)
    _, meta = read_set(tmp_path / 'out.zip')
    assert meta['class_names'] == ['dresses', 'skirts']
    assert [label for _, label in meta['labels']] == [0, 0, 1, 1]


def nvidia_zip(path, images, labels):
    """A dataset zip laid out exactly as NVIDIA's dataset_tool writes it."""
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED) as z:
        entries = []
        for idx, img in enumerate(images):
            name = f'{idx:08d}'[:5] + f'/img{idx:08d}.png'
            buf = io.BytesIO()
            PIL.Image.fromarray(img).save(buf, format='png', compress_level=0, optimize=False)
            z.writestr(name, buf.getvalue())
            entries.append([name, labels[idx]] if labels is not None else None)
        z.writestr('dataset.json', json.dumps({'labels': entries if labels is not None else None}))


def test_zip_source_keeps_labels_and_resizes(tmp_path):
    rng = np.random.RandomState(3)
    images = [rand_image(rng, 16, 16) for _ in range(5)]
    nvidia_zip(tmp_path / 'in.zip', images, [4, 1, 0, 3, 1])
    convert(str(tmp_path / 'in.zip'), str(tmp_path / 'same.zip'), progress=False)
    got, meta = read_set(tmp_path / 'same.zip')
    assert [np.array_equal(a, b) for a, b in zip(got.values(), images)] == [True] * 5
    assert meta['labels'] == [[f'00000/img{i:08d}.png', v] for i, v in enumerate([4, 1, 0, 3, 1])]
    convert(str(tmp_path / 'in.zip'), str(tmp_path / 'small.zip'), resolution=(8, 8), progress=False)
    got, _ = read_set(tmp_path / 'small.zip')
    want = np.asarray(PIL.Image.fromarray(images[2]).resize((8, 8), PIL.Image.LANCZOS))
    assert np.array_equal(got['00000/img00000002.png'], want)


def test_labels_from_separate_json(tmp_path):
    rng = np.random.RandomState(4)
    (tmp_path / 'src').mkdir()
    for name in ('x.png', 'y.png'):
        PIL.Image.fromarray(rand_image(rng, 8, 8)).save(tmp_path / 'src' / name)
    (tmp_path / 'labels.json').write_text(json.dumps({'labels': [['y.png', [0.5, 1.0]], ['x.png', [2.0, 0.0]]]}))
    report = convert(str(tmp_path / 'src'), str(tmp_path / 'out.zip'), labels_path=str(tmp_path / 'labels.json'),
                     progress=False)
    _, meta = read_set(tmp_path / 'out.zip')
    assert report.labels == 'vector'
    assert [v for _, v in meta['labels']] == [[2.0, 0.0], [0.5, 1.0]]


# ---------------------------------------------------------------------------------------------
# Transforms.

def test_pad_keeps_everything_on_the_background(tmp_path):
    img = np.full([4, 8, 3], 200, np.uint8)
    img[1:3, 1:7] = [10, 20, 30]                            # the "garment", touching nothing
    out = fit_image(img, (8, 8), 'pad')                      # border median = 200: the estimated background
    assert out.shape == (8, 8, 3)
    assert np.array_equal(out[2:6], img) and (out[:2] == 200).all() and (out[6:] == 200).all()
    out = fit_image(img, (8, 8), 'pad', background=(255, 0, 0))
    assert (out[:2] == [255, 0, 0]).all() and np.array_equal(out[2:6], img)
    tall = np.zeros([8, 3, 3], np.uint8)
    out = fit_image(tall, None, 'pad', background=(255, 255, 255))   # no size: pad to a square
    assert out.shape == (8, 8, 3) and (out[:, 2:5] == 0).all() and (out[:, :2] == 255).all() and (out[:, 5:] == 255).all()
    grey = fit_image(tall[:, :, :1], None, 'pad', background=(200, 100, 0))   # an RGB colour on greyscale: its mean
    assert grey.shape == (8, 8, 1) and (grey[:, :2] == 100).all() and (grey[:, 2:5] == 0).all()


def test_one_colour_parser_reads_every_spelling():
    assert parse_colour('auto') is None and parse_colour(' AUTO ') is None
    assert parse_colour('white') == (255, 255, 255) and parse_colour('Grey') == (128, 128, 128)
    assert parse_colour('#F0e1d2') == parse_colour('f0e1d2') == (240, 225, 210)
    assert parse_colour('240,225,210') == parse_colour('240, 225, 210') == (240, 225, 210)
    assert parse_colour('17') == (17, 17, 17)                               # one grey level, as invert.py took
    for bad in ('', 'mauve', '256', '1,2', '1,2,3,4', '1,2,300', '#12345', '-1', '1.5', '\u0661'):
        with pytest.raises(ValueError, match='cannot read colour'):
            parse_colour(bad)


def test_center_crops():
    rng = np.random.RandomState(5)
    img = rand_image(rng, 8, 16)
    assert np.array_equal(fit_image(img, (8, 8), 'center-crop'), img[:, 4:12])
    wide = rand_image(rng, 16, 16)
    out = fit_image(wide, (16, 8), 'center-crop-wide')       # 2:1 band of the middle, letterboxed black
    band = np.asarray(PIL.Image.fromarray(wide[4:12]))
    assert out.shape == (16, 16, 3)
    assert np.array_equal(out[4:12], band) and (out[:4] == 0).all() and (out[12:] == 0).all()


def test_size_errors_stop_without_output(tmp_path):
    rng = np.random.RandomState(6)
    (tmp_path / 'src').mkdir()
    PIL.Image.fromarray(rand_image(rng, 16, 16)).save(tmp_path / 'src' / 'a.png')
    PIL.Image.fromarray(rand_image(rng, 16, 12)).save(tmp_path / 'src' / 'b.png')
    with pytest.raises(DatasetError, match=r'b\.png.*does not match'):
        convert(str(tmp_path / 'src'), str(tmp_path / 'out.zip'), progress=False)
    assert not (tmp_path / 'out.zip').exists() and leftovers(tmp_path) == []
    with pytest.raises(DatasetError, match='power-of-two'):
        convert(str(tmp_path / 'src'), str(tmp_path / 'out'), resolution=(24, 24), transform='pad', progress=False)
    assert not (tmp_path / 'out').exists() and leftovers(tmp_path) == []


def test_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def flaky(image, level=1):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return b'png'
    monkeypatch.setattr('data.convert.encode_png', flaky)
    (tmp_path / 'old.zip').write_bytes(b'previous dataset')
    with pytest.raises(KeyboardInterrupt):
        convert('synthetic:garments?n=5&resolution=16', str(tmp_path / 'old.zip'), progress=False, overwrite=True)
    assert (tmp_path / 'old.zip').read_bytes() == b'previous dataset'
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# (Fashion-)MNIST idx files.

def write_idx(path, array):
    header = struct.pack('>HBB', 0, 0x08, array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if str(path).endswith('.gz') else open)(path, 'wb').write(data)


@pytest.mark.parametrize('gz', [True, False])
def test_idx(tmp_path, gz):
    rng = np.random.RandomState(7)
    images, labels = rng.randint(0, 256, size=(6, 16, 16)), rng.randint(0, 10, size=6)
    ext = '.gz' if gz else ''
    write_idx(tmp_path / f'train-images-idx3-ubyte{ext}', images)
    write_idx(tmp_path / f'train-labels-idx1-ubyte{ext}', labels)
    write_idx(tmp_path / f't10k-images-idx3-ubyte{ext}', images[:2] // 2)     # the folder form takes train
    for source in (tmp_path, tmp_path / f'train-images-idx3-ubyte{ext}'):
        dest = tmp_path / f'out-{source.name}.zip'
        report = convert(str(source), str(dest), progress=False)
        got, meta = read_set(dest)
        assert report.channels == 1 and report.written == 6
        for img, want in zip(got.values(), images):
            assert img.shape == (16, 16, 1) and np.array_equal(img[:, :, 0], want)
        assert [v for _, v in meta['labels']] == labels.tolist()


# ---------------------------------------------------------------------------------------------
# CIFAR-10 tarball.

def cifar_tarball(path, batches):
    with tarfile.open(path, 'w:gz') as tar:
        for i, batch in enumerate(batches, 1):
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f'cifar-10-batches-py/data_batch_{i}')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_cifar10(tmp_path):
    rng = np.random.RandomState(8)
    data = rng.randint(0, 256, size=(5, 3072)).astype(np.uint8)
    labels = [3, 1, 4, 1, 5]
    # One batch keyed by str (as Python 2 pickles read with latin1), one by bytes (as pickled from Python 3).
    cifar_tarball(tmp_path / 'cifar-10-python.tar.gz', [{'data': data[:3], 'labels': labels[:3]},
                                                       {b'data': data[3:], b'labels': np.asarray(labels[3:])}])
    convert(str(tmp_path / 'cifar-10-python.tar.gz'), str(tmp_path / 'c.zip'), progress=False)
    got, meta = read_set(tmp_path / 'c.zip')
    assert len(got) == 5 and [v for _, v in meta['labels']] == labels
    for img, row in zip(got.values(), data):
        assert np.array_equal(img, row.reshape(3, 32, 32).transpose(1, 2, 0))


class _Evil:
    def __reduce__(self):
        return (print, ('this must never run',))


def test_cifar_unpickler_refuses_code(tmp_path, capsys):
    cifar_tarball(tmp_path / 'cifar-10-python.tar.gz', [{'data': _Evil(), 'labels': [0]}])
    with pytest.raises(DatasetError, match=r'refusing to load global (__builtin__|builtins)\.print'):
        convert(str(tmp_path / 'cifar-10-python.tar.gz'), str(tmp_path / 'c.zip'), progress=False)
    assert 'must never run' not in capsys.readouterr().out
    assert not (tmp_path / 'c.zip').exists()


# ---------------------------------------------------------------------------------------------
# StyleGAN2-TF TFRecords, written by this test's own encoder.

def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    crc = crc32c_bitwise(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def pb(number: int, payload: bytes) -> bytes:   # length-delimited field
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def example(image_chw: np.ndarray, packed: bool = True) -> bytes:
    shape = image_chw.shape
    ints = pb(1, b''.join(varint(v) for v in shape)) if packed else b''.join(varint(1 << 3) + varint(v) for v in shape)
    entries = [pb(1, b'shape') + pb(2, pb(3, ints)),                   # Feature.int64_list
               pb(1, b'data') + pb(2, pb(1, pb(1, image_chw.tobytes())))]  # Feature.bytes_list
    return pb(1, b''.join(pb(1, e) for e in entries))


def record(payload: bytes, corrupt: bool = False) -> bytes:
    length = struct.pack('<Q', len(payload))
    return length + struct.pack('<I', masked(length)) + payload + struct.pack('<I', masked(payload) ^ int(corrupt))


def test_crc32c_matches_reference():
    assert tfrecord.crc32c(b'123456789') == 0xE3069283 == crc32c_bitwise(b'123456789')
    data = np.random.RandomState(9).bytes(70_001)   # long enough for the chunked fast path
    assert tfrecord.crc32c(data) == crc32c_bitwise(data) == tfrecord.crc32c_bytewise(data)


def test_tfrecords(tmp_path):
    rng = np.random.RandomState(10)
    big = rng.randint(0, 256, size=(4, 3, 8, 8)).astype(np.uint8)
    small = big[:, :, ::2, ::2].copy()
    with open(tmp_path / 'ds-r02.tfrecords', 'wb') as f:
        f.write(b''.join(record(example(x)) for x in small))
    with open(tmp_path / 'ds-r03.tfrecords', 'wb') as f:
        f.write(record(example(big[0])) + record(example(big[1], packed=False)) +
                record(example(big[2]), corrupt=True) + record(example(big[3])))
    np.save(open(tmp_path / 'ds-rxx.labels', 'wb'), np.eye(5, dtype=np.float32)[[4, 0, 2, 1]])
    report = convert(str(tmp_path), str(tmp_path / 'out.zip'), progress=False)
    got, meta = read_set(tmp_path / 'out.zip')
    assert report.resolution == 8 and report.written == 3
    assert [os.path.basename(loc) for loc, _ in report.skipped] == ['ds-r03.tfrecords[2]']
    for img, want in zip(got.values(), big[[0, 1, 3]]):
        assert np.array_equal(img, want.transpose(1, 2, 0))
    assert [v for _, v in meta['labels']] == [4, 0, 1]


def test_truncated_tfrecord_reports_the_rest(tmp_path):
    img = np.zeros([3, 4, 4], np.uint8)
    data = record(example(img)) + record(example(img + 1))
    (tmp_path / 'x.tfrecords').write_bytes(data[:-10])
    report = convert(str(tmp_path / 'x.tfrecords'), str(tmp_path / 'out.zip'), progress=False)
    assert report.written == 1 and 'truncated' in report.skipped[0][1]


# ---------------------------------------------------------------------------------------------
# Synthetic source, ensure_dataset, and the command line.

def test_synthetic_source_and_ensure_dataset(tmp_path, monkeypatch):
    from data.synthetic_garments import render_garments
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    path = ensure_dataset('synthetic:garments?n=12&seed=3', resolution=16)
    assert path.startswith(str(tmp_path / 'cache' / 'datasets')) and path.endswith('.zip')
    got, meta = read_set(path)
    images, attrs = render_garments(12, 16, seed=3)
    assert [np.array_equal(a, b) for a, b in zip(got.values(), images)] == [True] * 12
    assert [v for _, v in meta['labels']] == [a['class_idx'] for a in attrs]
    assert [v for _, v in meta['attributes']] == attrs
    mtime = os.stat(path).st_mtime_ns
    assert ensure_dataset('synthetic:garments?n=12&seed=3', resolution=16) == path and os.stat(path).st_mtime_ns == mtime
    assert ensure_dataset(str(tmp_path / 'cache')) == str(tmp_path / 'cache')      # existing folder: as is
    with pytest.raises(DatasetError, match='no such'):
        ensure_dataset(str(tmp_path / 'missing.zip'))
    with pytest.raises(DatasetError, match='unknown option'):
        ensure_dataset('synthetic:garments?colour=red')


def test_ensure_dataset_converts_idx_once(tmp_path, monkeypatch):
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    write_idx(tmp_path / 'train-images-idx3-ubyte', np.full([3, 28, 28], 7))
    path = ensure_dataset(str(tmp_path / 'train-images-idx3-ubyte'))
    got, meta = read_set(path)
    assert [img.shape for img in got.values()] == [(32, 32, 1)] * 3 and meta['labels'] is None


def run_tool(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, 'dataset_tool.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_cli(messy_folder, tmp_path):
    root, _ = messy_folder
    r = run_tool('--source', root, '--dest', tmp_path / 'out.zip', '--resolution=8x8', '--transform=pad',
                 '--report', tmp_path / 'report.json')
    assert r.returncode == 0, r.stderr
    assert f'skipped {root / "e_corrupt.jpg"}' in r.stderr + r.stdout
    assert 'wrote 5 images (8x8, 3 channels' in r.stdout
    report = json.loads((tmp_path / 'report.json').read_text())
    assert report['written'] == 5 and len(report['skipped']) == 2          # min size is 8 // 4 = 2: tiny is kept
    r = run_tool('--source', tmp_path / 'nothing', '--dest', tmp_path / 'x.zip')
    assert r.returncode != 0 and 'no such file or directory' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_tool('--source', root, '--dest', tmp_path / 'x.zip', '--transform=center-crop')
    assert r.returncode != 0 and 'needs --resolution' in r.stderr
    r = run_tool('--source', root, '--dest', tmp_path / 'x.zip', '--background=mauve')
    assert r.returncode == 2 and "--background" in r.stderr and "cannot read colour 'mauve'" in r.stderr


def test_cli_refuses_what_it_cannot_write_before_reading(messy_folder, tmp_path):
    root, _ = messy_folder
    r = run_tool('--source', root, '--dest', tmp_path / 'set.tar', '--resolution=8x8')
    assert r.returncode != 0 and '.tar archives are not written' in r.stderr and '--dest' in r.stderr
    assert not (tmp_path / 'set.tar').exists() and os.listdir(tmp_path) == ['photos']
    for size in ('24x24', '16x8'):   # reported against the option, before any image is read
        r = run_tool('--source', tmp_path / 'does-not-exist', '--dest', tmp_path / 'set.zip', f'--resolution={size}')
        assert r.returncode != 0 and '--resolution' in r.stderr and 'power-of-two' in r.stderr, r.stderr
    r = run_tool('--source', root, '--dest', tmp_path / 'wide.zip', '--resolution=8x4', '--transform=center-crop-wide')
    assert r.returncode == 0, r.stderr


def test_outputs_get_the_usual_modes(messy_folder, tmp_path):
    root, _ = messy_folder
    old = os.umask(0o022)
    try:
        for dest in ('folder', 'set.zip'):
            r = run_tool('--source', root, '--dest', tmp_path / dest, '--resolution=8x8', '--transform=pad')
            assert r.returncode == 0, r.stderr
    finally:
        os.umask(old)
    assert (tmp_path / 'folder').stat().st_mode & 0o777 == 0o755
    assert (tmp_path / 'folder' / '00000').stat().st_mode & 0o777 == 0o755
    assert (tmp_path / 'folder' / 'dataset.json').stat().st_mode & 0o777 == 0o644
    assert (tmp_path / 'set.zip').stat().st_mode & 0o777 == 0o644


def test_a_dest_below_a_file_is_refused_before_reading(messy_folder, tmp_path):
    # It said "File exists" (the misleading text of makedirs) after reading the source.
    root, _ = messy_folder
    (tmp_path / 'afile').write_text('')
    for dest in (tmp_path / 'afile' / 'x.zip', tmp_path / 'afile' / 'folder'):
        r = run_tool('--source', root, '--dest', dest, '--resolution=8x8', '--quiet')
        assert r.returncode == 1 and r.stderr.strip() == f'error: --dest={dest}: {tmp_path / "afile"} is a file, not a folder', r.stderr


def test_an_existing_dest_file_is_replaced_only_with_overwrite(tmp_path):
    """Issue 32: a rerun with another source silently turned a 3000-image zip into a 10-image one."""
    dest = tmp_path / 'set.zip'
    r = run_tool('--source', 'synthetic:garments?n=6&resolution=16', '--dest', dest, '--quiet')
    assert r.returncode == 0, r.stderr
    before = dest.read_bytes()
    r = run_tool('--source', 'synthetic:garments?n=2&resolution=16', '--dest', dest, '--quiet')
    errors = [line for line in r.stderr.splitlines() if line.startswith('error:')]
    assert r.returncode == 1 and len(errors) == 1 and 'exists; pass --overwrite' in errors[0], r.stderr
    assert 'Traceback' not in r.stderr and dest.read_bytes() == before and leftovers(tmp_path) == []
    r = run_tool('--source', 'synthetic:garments?n=2&resolution=16', '--dest', dest, '--quiet', '--overwrite')
    assert r.returncode == 0, r.stderr
    assert len(read_set(dest)[0]) == 2


def test_a_killed_conversion_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    """Issue 32: kill -9 while writing left .set.zip.*.tmp that no rerun removed."""
    import signal
    import time
    dest = tmp_path / 'set.zip'
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'dataset_tool.py'), '--source',
                             'synthetic:garments?n=5000&resolution=32', '--dest', str(dest), '--quiet'], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not any(p.stat().st_size > 50_000 for p in tmp_path.glob('.set.zip.*.tmp')):
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    stale = leftovers(tmp_path)
    assert len(stale) == 1 and stale[0].startswith(f'.set.zip.{proc.pid}.') and not dest.exists(), stale
    (tmp_path / '.set.zip.12.x.tmp.keep').write_bytes(b'not ours')   # other names are left alone
    r = run_tool('--source', 'synthetic:garments?n=2&resolution=16', '--dest', dest)
    assert r.returncode == 0, r.stderr
    assert f'removed {tmp_path / stale[0]}, left behind by an interrupted run' in r.stdout + r.stderr
    assert leftovers(tmp_path) == ['.set.zip.12.x.tmp.keep'] and len(read_set(dest)[0]) == 2
