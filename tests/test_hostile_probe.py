"""The second hostile-input probe (issue 25), finding by finding.

Every hostile file of every finding is read in ONE worker process (tests/helpers/load_worker.py) under an address-space
limit, with an audit-hook canary for programs and code, and after each file a good file of the same kind is
read again and must read as before. Each test then checks its finding's files there (one-line refusal, or a
clean skip with a reason) and runs a representative command line (one `error:` line, exit 1, no signal, peak
memory under 1 GB).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tarfile
import threading
import zipfile
from collections import OrderedDict

import numpy as np
import PIL.Image
import pytest
import torch

from helpers import bombs
from helpers import hostile_pickles as hp
from helpers.cli_peak import assert_one_error_line, run_cli
from networks import stylegan2
from networks.snapshot import (PT_FORMAT, SnapshotError, _NetworkRecord, export_pt, load_snapshot, network_record,
                               resolve_source, save_snapshot)
from helpers.networks import tiny_networks
from data.tfrecord import masked_crc32c

NUM_WS, W_DIM = 6, 8     # of tiny_networks()
DEEP = 300_000           # levels: CPython crashed hashing a tuple nested this deeply
WS_MODE = f'ws {NUM_WS} {W_DIM}'


# ---------------------------------------------------------------------------------------------
# Building the files.

def deep_tuple(depth: int) -> bytes:
    """Opcodes that push a tuple nested `depth` levels deep (TUPLE1 of TUPLE1 of ... None)."""
    return hp.NONE + b'\x85' * depth


def snapshot_program(**extra: bytes) -> bytes:
    return hp.program(hp.dictionary(G=hp.NONE, D=hp.NONE, G_ema=hp.NONE, **extra))


def torch_zip(path, pickle_bytes: bytes) -> None:
    """A torch.save archive whose data.pkl is `pickle_bytes` (and no storages)."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        z.writestr('archive/data.pkl', pickle_bytes)
        z.writestr('archive/byteorder', 'little')
        z.writestr('archive/version', '3\n')


def cifar_tar(path, batches: dict) -> None:
    with tarfile.open(path, 'w:gz') as tar:
        for name, blob in batches.items():
            info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def good_cifar_batch() -> bytes:
    rng = np.random.RandomState(0)
    return pickle.dumps({b'data': rng.randint(0, 255, [4, 3072]).astype(np.uint8), b'labels': [0, 1, 2, 3]},
                        protocol=2)


def png_bytes(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format=kwargs.pop('format', 'PNG'), **kwargs)
    return buffer.getvalue()


def dataset_zip(path, meta, images: int = 2, extra: tuple = ()) -> None:
    """A training-set zip of `images` 16x16 PNGs and a dataset.json holding `meta` (bytes, or JSON-dumped)."""
    rng = np.random.RandomState(1)
    names = [f'00000/img{i:08d}.png' for i in range(images)]
    members = [(n, png_bytes(rng.randint(0, 255, [16, 16, 3]).astype(np.uint8))) for n in names]
    if meta is not None:
        members.append(('dataset.json', meta if isinstance(meta, (bytes, bombs.Deflated)) else
                        json.dumps(meta(names) if callable(meta) else meta).encode()))
    bombs.write_zip(path, members + list(extra))


def expanded_record(z_dim: int) -> dict:
    """A StyleGAN2 generator record at z_dim = w_dim = `z_dim` whose every tensor is one element seen through
    stride 0."""
    kwargs = dict(z_dim=z_dim, c_dim=0, w_dim=z_dim, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), channel_base=64, channel_max=16)
    with torch.device('meta'):
        shapes = {k: (v.shape, v.dtype) for k, v in stylegan2.Generator(**kwargs).state_dict().items()}
    state = OrderedDict((name, torch.zeros([], dtype=dtype).expand(shape)) for name, (shape, dtype) in shapes.items())
    return dict(family='stylegan2.Generator', init_kwargs=kwargs, state_dict=state, training=False)


def latents_npz(path, **arrays) -> None:
    np.savez(path, **arrays)


def tfrecord_with_length(length: int) -> bytes:
    head = struct.pack('<Q', length)
    return head + struct.pack('<I', masked_crc32c(head)) + b'tiny'


def claim_size(blob: bytes, name: str, size: int) -> bytes:
    """A zip archive whose central directory says the member ending in `name` holds `size` bytes."""
    blob, pos = bytearray(blob), 0
    while True:
        pos = blob.index(b'PK\x01\x02', pos)
        length = struct.unpack_from('<H', blob, pos + 28)[0]
        if bytes(blob[pos + 46:pos + 46 + length]).endswith(name.encode()):
            struct.pack_into('<II', blob, pos + 20, size, size)
            return bytes(blob)
        pos += 4


def poison(target: bytes, state: bytes) -> bytes:
    """A snapshot-shaped pickle that sets the state of an allow-listed global before it is refused."""
    return hp.program(hp.dictionary(G=hp.build(target, state), D=hp.NONE, G_ema=hp.NONE))


# ---------------------------------------------------------------------------------------------
# Every file, read in one worker.

@pytest.fixture(scope='module')
def probe(tmp_path_factory, fixtures_dir, rectangles):
    root = tmp_path_factory.mktemp('probe')
    files: dict[str, tuple] = {}   # name -> (mode, path)

    def add(name: str, mode: str, content=None) -> str:
        path = root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        files[name] = (mode, str(path))
        return str(path)

    # Good files, read again after every hostile file of their mode.
    data = tiny_networks()
    save_snapshot(root / 'good.pkl', data)
    cifar_tar(root / 'good-cifar.tar.gz', {'data_batch_1': good_cifar_batch()})
    dataset_zip(root / 'good-dataset.zip', lambda names: {'labels': [[n, i % 2] for i, n in enumerate(names)]})
    PIL.Image.fromarray(np.random.RandomState(2).randint(0, 255, [20, 30, 3]).astype(np.uint8)).save(root / 'good.png')
    latents_npz(root / 'good-ws.npz', w=np.random.RandomState(3).randn(1, NUM_WS, W_DIM).astype(np.float32))
    from editing.directions import Directions, save_directions
    good_directions = Directions(vectors=np.eye(2, W_DIM, dtype=np.float32), names=['a', 'b'], layer_start=0,
                                 layer_stop=NUM_WS, scale=1.0, method='test', num_ws=NUM_WS, meta={'x': 1})
    save_directions(root / 'good-directions.npz', good_directions)
    good = {'snapshot': root / 'good.pkl', 'cifar': root / 'good-cifar.tar.gz', 'dataset': root / 'good-dataset.zip',
            'source': root / 'good-dataset.zip', 'image': root / 'good.png', 'upload': root / 'good.png',
            'target 16': root / 'good.png', WS_MODE: root / 'good-ws.npz', 'directions': root / 'good-directions.npz',
            'metrics_data': root / 'good.pkl',
            'classifier': os.path.join(hp.REPO, 'pretrained', 'garment-classifier-64x64.pt')}

    # 1. Nesting: a deep tuple as a dict key, a frozenset member, inside an OrderedDict; .pt; CIFAR; JSON.
    add('deep_key.pkl', 'snapshot', snapshot_program(training_set_kwargs=b'}' + deep_tuple(DEEP) + hp.NONE + b's'))
    add('deep_frozenset.pkl', 'snapshot', snapshot_program(training_set_kwargs=b'(' + deep_tuple(DEEP) + b'\x91'))
    add('deep_ordereddict.pkl', 'snapshot', snapshot_program(
        training_set_kwargs=hp.call(hp.glob('collections', 'OrderedDict')) + b'(' + deep_tuple(DEEP) + hp.NONE + b'u'))
    torch_zip(root / 'deep.pt', hp.program(b'}' + deep_tuple(DEEP) + hp.NONE + b's'))
    add('deep.pt', 'snapshot')
    files['deep-classifier'] = ('classifier', str(root / 'deep.pt'))   # the other .pt reader (HyperStyle's is alike)
    cifar_tar(root / 'deep-cifar.tar.gz', {'data_batch_1': hp.program(b'}' + deep_tuple(DEEP) + hp.NONE + b's')})
    add('deep-cifar.tar.gz', 'cifar')
    deep_json = b'{"labels": ' + b'[' * 100_000 + b']' * 100_000 + b'}'
    dataset_zip(root / 'deep-json.zip', deep_json)
    add('deep-json.zip', 'dataset')
    files['deep-json-source'] = ('source', str(root / 'deep-json.zip'))
    save_directions(root / 'deep-meta.npz', good_directions)
    arrays = dict(np.load(root / 'deep-meta.npz'))
    arrays['meta'] = np.array('[' * 100_000 + ']' * 100_000)
    np.savez(root / 'deep-meta.npz', **arrays)
    add('deep-meta.npz', 'directions')

    # 2. Stride-0 and shared storages: 12000-wide networks from kilobytes.
    record = expanded_record(12000)
    (root / 'expand.pkl').write_bytes(pickle.dumps(dict(G=_NetworkRecord(record), D=None, G_ema=None), protocol=4))
    add('expand.pkl', 'snapshot')
    torch.save(dict(format=PT_FORMAT, version=1, networks=dict(G_ema=expanded_record(12000)), training_set_kwargs=None),
               root / 'expand.pt')
    add('expand.pt', 'snapshot')
    overlap = network_record(data['G'])
    key = next(k for k, v in overlap['state_dict'].items() if v.ndim == 2)
    rows, cols = overlap['state_dict'][key].shape
    overlap['state_dict'][key] = torch.zeros(cols + rows).as_strided((rows, cols), (1, 1))
    (root / 'overlap.pkl').write_bytes(pickle.dumps(dict(G=_NetworkRecord(overlap), D=None, G_ema=None)))
    add('overlap.pkl', 'snapshot')
    for name in ('shared.pt', 'aliased.pt'):   # two views of one storage; one tensor under two names
        record = network_record(data['G'])
        first, second = [k for k, v in record['state_dict'].items() if v.shape == (rows, cols)][:2]
        if name == 'shared.pt':
            storage = torch.zeros(rows * cols)
            record['state_dict'][first] = storage.view(rows, cols)
            record['state_dict'][second] = storage.view(rows, cols)
        else:
            record['state_dict'][second] = record['state_dict'][first]
        torch.save(dict(format=PT_FORMAT, version=1, networks=dict(G_ema=record), training_set_kwargs=None),
                   root / name)
        add(name, 'snapshot')

    # 3. State set on allow-listed globals, each refused; the good file must still read the same afterwards.
    add('poison_storage.pkl', 'snapshot', poison(hp.glob('torch', 'FloatStorage'),
                                                 b'}' + hp.text('dtype') + hp.glob('torch', 'int8') + b's'))
    add('poison_defaults.pkl', 'snapshot', poison(hp.glob('torch._utils', '_rebuild_tensor_v2'), hp.tup(
        hp.NONE, b'}' + hp.text('__defaults__') + hp.tup(hp.TRUE) + b's')))
    add('poison_marker.pkl', 'snapshot', poison(hp.glob('numpy', 'ndarray'), b'}' + hp.text('x') + hp.NONE + b's'))
    dtype_poison = hp.program(hp.dictionary(data=hp.build(hp.glob('numpy', 'dtype'), hp.tup(
        hp.NONE, b'}' + hp.text('__setstate__') + hp.NONE + b's')), labels=hp.NONE))
    cifar_tar(root / 'poison-cifar.tar.gz', {'data_batch_1': dtype_poison})
    add('poison-cifar.tar.gz', 'cifar')

    # 4. Latents and directions files.
    good_ws = (root / 'good-ws.npz').read_bytes()
    stored = zipfile.ZipFile(io.BytesIO(good_ws)).infolist()[0]
    flipped = bytearray(good_ws)
    flipped[stored.header_offset + 30 + len(stored.filename) + stored.file_size - 1] ^= 0xFF   # a data byte
    add('crc.npz', WS_MODE, bytes(flipped))
    add('cut.npz', WS_MODE, good_ws[:len(good_ws) // 2])
    npy = zipfile.ZipFile(io.BytesIO(good_ws)).read('w.npy')
    bombs.write_zip(root / 'encrypted.npz', [('w.npy', npy, 0, 1)])
    add('encrypted.npz', WS_MODE)
    bombs.write_zip(root / 'method.npz', [('w.npy', npy, 97, 0)])
    add('method.npz', WS_MODE)
    latents_npz(root / 'structured.npz', w=np.zeros((1, W_DIM), 'f4,i4'))
    add('structured.npz', WS_MODE)
    latents_npz(root / 'datetime.npz', w=np.zeros((1, W_DIM), 'datetime64[s]'))
    add('datetime.npz', WS_MODE)
    bombs.write_zip(root / 'huge-header.npz', [('w.npy', bombs.npy_header('<f4', (2 ** 40, W_DIM)))])
    assert (root / 'huge-header.npz').stat().st_size < 400
    add('huge-header.npz', WS_MODE)
    # [N, w_dim] zeros: 400 MB inflated, repeated over NUM_WS rows before the fix
    count = (400 << 20) // (4 * W_DIM)
    bombs.write_zip(root / 'zeros.npz', [('w.npy', bombs.Deflated(bombs.npy_header('<f4', (count, W_DIM)),
                                                                    bytes(4 * W_DIM * 4096), count // 4096))])
    add('zeros.npz', WS_MODE)
    vector = dict(np.load(root / 'good-directions.npz'))
    vector['num_ws'] = np.arange(3)
    np.savez(root / 'vector-num-ws.npz', **vector)
    add('vector-num-ws.npz', 'directions')

    # 5. Images: a 1x16000 strip, a 13000x13000 16-bit PNG, a 1000x16000 strip that was padded to 16000x16000.
    add('strip.png', 'image', bombs.png(16000, 1))
    assert (root / 'strip.png').stat().st_size < 200
    files['strip-upload'] = ('upload', str(root / 'strip.png'))
    add('huge16.png', 'image', bombs.png(13000, 13000, bit_depth=16))
    files['huge16-upload'] = ('upload', str(root / 'huge16.png'))
    add('wide.png', 'target 16', bombs.png(16000, 1000, colour_type=2))

    # 6. PostScript named .png (with a recording gs on the worker's PATH).
    ps = b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n0 0 moveto 16 16 lineto stroke\nshowpage\n'
    for mode in ('image', 'upload'):
        add(f'postscript-{mode}.png', mode, ps)
    dataset_zip(root / 'postscript.zip', None, extra=(('00000/img00000009.png', ps),))
    add('postscript.zip', 'source')
    (root / 'ps-folder').mkdir()
    (root / 'ps-folder' / 'a.png').write_bytes(ps)
    (root / 'ps-folder' / 'b.png').write_bytes(png_bytes(np.zeros([16, 16, 3], np.uint8)))
    add('ps-folder', 'dataset')

    # 7. Dataset readers.
    dataset_zip(root / 'spaces.zip', bombs.Deflated(b'{"labels": null', b' ' * (1 << 20), 600, b'}'))
    add('spaces.zip', 'dataset')
    dataset_zip(root / 'labels-number.zip', {'labels': 5})
    add('labels-number.zip', 'dataset')
    dataset_zip(root / 'labels-pairs.zip', lambda names: {'labels': [[n] for n in names]})
    add('labels-pairs.zip', 'dataset')
    files['labels-pairs-source'] = ('source', str(root / 'labels-pairs.zip'))
    dataset_zip(root / 'labels-huge.zip', lambda names: {'labels': [[n, 10 ** 9] for n in names]})
    add('labels-huge.zip', 'dataset')
    (root / 'idx-ndim').mkdir()
    add('idx-ndim/train-images-idx3-ubyte', 'source', b'\x00\x00\x08\xff' + bytes(16))
    (root / 'idx-overflow').mkdir()
    add('idx-overflow/train-images-idx3-ubyte', 'source',
        b'\x00\x00\x08\x04' + struct.pack('>4I', 1 << 16, 1 << 16, 1 << 16, 1 << 16) + bytes(16))
    (root / 'idx-gz').mkdir()
    add('idx-gz/train-images-idx3-ubyte.gz', 'source', bombs.Deflated(
        b'\x00\x00\x08\x03' + struct.pack('>3I', 10, 28, 28), bytes(1 << 20), 1200).gzip())
    (root / 'cifar-big').mkdir()
    big = bombs.Deflated(b'', bytes(1 << 20), 1200)
    tar_header = tarfile.TarInfo('cifar-10-batches-py/data_batch_1')
    tar_header.size = big.size
    tar_bytes = tar_header.tobuf(format=tarfile.GNU_FORMAT)
    stream = bombs.Deflated(tar_bytes, bytes(1 << 20), 1200, bytes(1024))
    add('cifar-big/cifar-10-python.tar.gz', 'cifar', stream.gzip())
    (root / 'tf').mkdir()
    add('tf/huge-r02.tfrecords', 'source', tfrecord_with_length(1 << 40))
    (root / 'special').mkdir()
    for i in range(2):
        (root / 'special' / f'{i}.png').write_bytes(png_bytes(np.full([16, 16, 3], 40 * i, np.uint8)))
    os.symlink('/dev/zero', root / 'special' / 'zero.png')
    os.mkfifo(root / 'special' / 'fifo.png')
    os.symlink(root / 'good.png', root / 'special' / 'outside.png')
    add('special', 'source')
    files['special-dataset'] = ('dataset', str(root / 'special'))

    # 8. Snapshots whose training_set_kwargs do not describe a dataset.
    for name, kwargs in (('kwargs-nopath.pkl', {'resolution': 16}), ('kwargs-number.pkl', {'path': 5}),
                         ('kwargs-flag.pkl', {'path': 'x.zip', 'use_labels': 'yes'})):
        save_snapshot(root / name, dict(data, training_set_kwargs=kwargs))
        add(name, 'metrics_data')

    # 12. NaN weights, NaN labels, float images with NaN.
    nan_data = tiny_networks()
    with torch.no_grad():
        next(nan_data['G'].parameters())[0].fill_(float('nan'))
    save_snapshot(root / 'nan.pkl', nan_data)
    add('nan.pkl', 'snapshot')
    dataset_zip(root / 'labels-nan.zip', lambda names: {'labels': [[n, [float('nan')]] for n in names]})
    add('labels-nan.zip', 'dataset')
    nan_image = np.zeros([16, 16], np.float32)
    nan_image[3, 4] = np.nan
    PIL.Image.fromarray(nan_image, 'F').save(root / 'nan.tif')
    add('nan.tif', 'image')
    (root / 'nan-folder').mkdir()
    PIL.Image.fromarray(nan_image, 'F').save(root / 'nan-folder' / 'a.tif')
    PIL.Image.fromarray(np.zeros([16, 16], np.float32), 'F').save(root / 'nan-folder' / 'b.tif')
    add('nan-folder', 'source')
    latents_npz(root / 'nan-noise.npz', w=np.zeros((1, W_DIM), np.float32), **{'noise/x': np.full(4, np.nan, 'f4')})
    add('nan-noise.npz', WS_MODE)

    # Issue 32 (the third probe). 32.1: allow-listed callables that copy, called many times on one memoized value;
    # small here, but each would copy about 500 times the file's size: the budget is what stops them.
    for kind in ('encode', 'frombuffer', 'load_from_bytes', 'easydict', 'size', 'set', 'frozenset'):
        scale = 50_000 if kind in ('encode', 'frombuffer', 'load_from_bytes') else 5_000
        add(f'copy-{kind}.pkl', 'snapshot', snapshot_program(training_set_kwargs=hp.copy_bomb(kind, scale, 500)))
    add('copy-resume.pkl', 'resume', snapshot_program(training_state=hp.copy_bomb('set', 5_000, 500)))
    torch_zip(root / 'copy.pt', hp.program(hp.copy_bomb('encode', 50_000, 500)))
    add('copy.pt', 'snapshot')
    files['copy-classifier'] = ('classifier', str(root / 'copy.pt'))
    cifar_tar(root / 'copy-cifar.tar.gz', {'data_batch_1': hp.program(hp.dictionary(
        data=hp.copy_bomb('encode', 50_000, 500), labels=hp.NONE))})
    add('copy-cifar.tar.gz', 'cifar')
    rows = [0] * 30                        # shared lists, 30**6 items unfolded, pickled by Python in a few KB
    for _ in range(5):
        rows = [rows] * 30
    save_snapshot(root / 'unfold.pkl', dict(data, training_set_kwargs={'path': rows}))   # repr'd by calc_metrics
    add('unfold.pkl', 'metrics_data')
    tree = hp.read_tree(fixtures_dir / 'official_stylegan2_64.pkl')   # plain() walked NVIDIA's kwargs as a tree
    tree['G_ema'].args[0]['state']['_init_kwargs']['mapping_kwargs']['shared'] = rows
    (root / 'unfold-kwargs.pkl').write_bytes(hp.write_tree(tree))
    add('unfold-kwargs.pkl', 'snapshot')
    add('late-fill.pkl', 'snapshot', snapshot_program(training_set_kwargs=hp.late_fill(3000)))
    add('colliding-keys.pkl', 'snapshot', snapshot_program(training_set_kwargs=hp.colliding_keys(2000)))
    hp.overlapping_pt(root / 'overlap-members.pt', 200_000, 20)   # 20 storages on one 200 KB block
    add('overlap-members.pt', 'snapshot')
    files['overlap-members-classifier'] = ('classifier', str(root / 'overlap-members.pt'))
    files['overlap-members-hyperstyle'] = ('hyperstyle', str(root / 'overlap-members.pt'))
    good_pt = root / 'good.pt'
    export_pt(data, good_pt)
    (root / 'claims-4gib.pt').write_bytes(claim_size(good_pt.read_bytes(), 'data.pkl', 0xFFFF0000))
    add('claims-4gib.pt', 'snapshot')
    # 32.2: CPU: an integer of 300 KB as 31 shape entries (math.prod ran for hours); one within 80 bits but past
    # 2**40; frozenset of a large list again and again.
    add('shape-long-int.pkl', 'snapshot', snapshot_program(training_set_kwargs=hp.shape_bomb(300_000, 31)))
    add('shape-huge-dim.pkl', 'snapshot', snapshot_program(training_set_kwargs=hp.shape_bomb(9, 31)))
    add('frozenset-again.pkl', 'snapshot', snapshot_program(training_set_kwargs=hp.copy_bomb('frozenset', 50_000, 200)))

    # The worker, with a Ghostscript that records being started.
    bin_dir = root / 'bin'
    bin_dir.mkdir()
    marker = root / 'gs-was-run'
    (bin_dir / 'gs').write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    (bin_dir / 'gs').chmod(0o755)
    env_path = f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}'
    old_path = os.environ.get('PATH', '')
    os.environ['PATH'] = env_path
    try:
        report = hp.run_worker([files[name] for name in files], good=good, timeout=300)
    finally:
        os.environ['PATH'] = old_path
    cases = {name: case for name, case in zip(files, report['cases'])}
    return dict(report=report, cases=cases, root=root, marker=marker, bin_dir=bin_dir, data=data)


def refused(probe, name: str, *fragments: str) -> dict:
    """The case `name` was refused with one line naming its file and holding `fragments`; the worker was alive
    after it and read its mode's good file as before."""
    report = probe['report']
    assert report['rc'] == 0, f'worker died (rc {report["rc"]}): {report["stderr"][-2000:]}'
    case = probe['cases'][name]
    assert case['outcome'] == 'refused', case
    assert '\n' not in case['message'] and len(case['message']) < 400, case['message']
    assert os.path.basename(case['path'].rstrip('/')) in case['message'], case['message']
    for fragment in fragments:
        assert fragment in case['message'], case['message']
    assert case.get('good', 'same') == 'same', case
    return case


def skipped(probe, name: str, *fragments: str) -> dict:
    """The case `name` loaded, and what it left out it names with the reason."""
    report = probe['report']
    assert report['rc'] == 0, f'worker died (rc {report["rc"]}): {report["stderr"][-2000:]}'
    case = probe['cases'][name]
    assert case['outcome'] == 'loaded', case
    for fragment in fragments:
        assert fragment in case['message'], case['message']
    assert case.get('good', 'same') == 'same', case
    return case


def test_the_worker_survives_every_file_within_memory(probe):
    report = probe['report']
    assert report['rc'] == 0, report['stderr'][-3000:]
    assert len(report['cases']) == len(probe['cases'])
    assert not report['canary'], report['canary']
    assert report['max_rss_mb'] < 1024, report['max_rss_mb']
    print(f'\nprobe figures: {len(report["cases"])} files in one worker, peak resident memory {report["max_rss_mb"]} MB')
    odd = {name: (c['outcome'], c['type'], c['message'][:200]) for name, c in probe['cases'].items()
           if c['outcome'] == 'unexpected' or c.get('good', 'same') != 'same'}
    assert not odd, odd


# ---------------------------------------------------------------------------------------------
# The findings.

def test_1_deep_nesting_is_refused_before_anything_is_hashed(probe, tmp_path):
    for name in ('deep_key.pkl', 'deep_frozenset.pkl', 'deep_ordereddict.pkl', 'deep.pt', 'deep-classifier',
                 'deep-cifar.tar.gz'):
        refused(probe, name, 'nested more than')
    refused(probe, 'deep-json.zip', 'nested 100001 levels deep')
    refused(probe, 'deep-json-source', 'nested 100001 levels deep')
    refused(probe, 'deep-meta.npz', 'meta: JSON nested')
    result = run_cli('gen_images.py', '--network', probe['root'] / 'deep_key.pkl', '--seeds=0', '--outdir', tmp_path,
                     tmp_path=tmp_path)
    assert_one_error_line(result, 'deep_key.pkl', 'nested more than')


def test_2_stride_zero_and_shared_storages_cannot_describe_a_bigger_network(probe, tmp_path):
    for name in ('expand.pkl', 'expand.pt', 'overlap.pkl'):
        refused(probe, name, 'does not cover its storage')
    refused(probe, 'shared.pt', 'share one storage')
    refused(probe, 'aliased.pt', 'one tensor stands for several')
    assert (probe['root'] / 'expand.pkl').stat().st_size < 100_000   # a 1.2 GB generator, before
    result = run_cli('gen_images.py', '--network', probe['root'] / 'expand.pt', '--seeds=0', '--outdir', tmp_path,
                     tmp_path=tmp_path)
    assert_one_error_line(result, 'expand.pt', 'stride-0')


def test_2_a_network_needs_no_more_elements_than_the_file_holds(tmp_path):
    """A family whose constructor makes a buffer the state dict does not carry is caught by the element count."""
    from networks import snapshot

    class Greedy(torch.nn.Module):
        def __init__(self, n: int):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(2))
            self.register_buffer('scratch', torch.zeros(n), persistent=False)
    snapshot.register_family('test.Greedy', Greedy)
    try:
        record = dict(family='test.Greedy', init_kwargs=dict(n=1 << 20), state_dict={'weight': torch.zeros(2)})
        with pytest.raises(SnapshotError, match='needs 1048578 tensor elements, the file holds 2'):
            snapshot.build_network(record)
        assert snapshot.build_network(dict(record, init_kwargs=dict(n=0))).weight.shape == (2,)
    finally:
        del snapshot.FAMILIES['test.Greedy']


def test_3_a_refused_file_changes_nothing_that_later_loads_see(probe, tmp_path):
    refused(probe, 'poison_storage.pkl', 'refusing to set the state of torch.FloatStorage')
    refused(probe, 'poison_defaults.pkl', 'torch._utils._rebuild_tensor_v2')
    refused(probe, 'poison_marker.pkl', 'numpy.ndarray')
    refused(probe, 'poison-cifar.tar.gz', 'numpy.dtype')
    # and in this process too: the shipped model loads as before after each of them
    garments = resolve_source('garments')
    before = {k: v.clone() for k, v in load_snapshot(garments)['G_ema'].state_dict().items()}
    for name in ('poison_storage.pkl', 'poison_defaults.pkl', 'poison_marker.pkl'):
        with pytest.raises(SnapshotError):
            load_snapshot(probe['root'] / name)
        after = load_snapshot(garments)['G_ema'].state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), name
    result = run_cli('gen_images.py', '--network', probe['root'] / 'poison_storage.pkl', '--seeds=0', '--outdir',
                     tmp_path, tmp_path=tmp_path)
    assert_one_error_line(result, 'poison_storage.pkl', 'refusing to set the state')


def test_4_latents_and_directions_files_are_read_through_checked_headers(probe, tmp_path):
    refused(probe, 'crc.npz', 'CRC')
    refused(probe, 'cut.npz')
    refused(probe, 'encrypted.npz', 'encrypted')
    refused(probe, 'method.npz', 'compression method 97')
    refused(probe, 'structured.npz', 'structured array')
    refused(probe, 'datetime.npz', 'dtype <M8[s]')
    refused(probe, 'huge-header.npz', 'has shape [1099511627776, 8]')
    refused(probe, 'zeros.npz', 'MiB')
    refused(probe, 'vector-num-ws.npz', '"num_ws" has shape [3]; expected []')
    save_snapshot(tmp_path / 'tiny.pkl', probe['data'])
    result = run_cli('gen_images.py', '--network', tmp_path / 'tiny.pkl', '--ws', probe['root'] / 'zeros.npz',
                     '--outdir', tmp_path / 'out', tmp_path=tmp_path)
    assert_one_error_line(result, 'zeros.npz', '"w" has shape [13107200, 8]')


def test_5_image_sizes_are_limited_from_the_header_and_resized_before_padding(probe, tmp_path):
    refused(probe, 'strip.png', '16000x1: more than 16 times as long')
    refused(probe, 'strip-upload', '16000x1')
    refused(probe, 'huge16.png', '13000x13000 pixels is more than the 40 megapixels')
    refused(probe, 'huge16-upload', '13000x13000')
    assert probe['cases']['wide.png']['outcome'] == 'loaded'   # padded after resizing: a few MB, not 768
    from data.convert import fit_image
    strip = np.zeros([1000, 16000, 3], np.uint8)
    assert fit_image(strip, (64, 64), 'pad', background=(255, 255, 255)).shape == (64, 64, 3)
    save_snapshot(tmp_path / 'tiny.pkl', probe['data'])
    result = run_cli('invert.py', '--network', tmp_path / 'tiny.pkl', '--target', probe['root'] / 'huge16.png',
                     '--outdir', tmp_path / 'out', '--method=project', '--perceptual=none', '--steps=1',
                     '--w-avg-samples=10', tmp_path=tmp_path)
    assert_one_error_line(result, 'huge16.png', 'megapixels')   # the one photo's own reason
    (tmp_path / 'photos').mkdir()
    for name in ('huge16.png', 'wide.png'):
        (tmp_path / 'photos' / name).write_bytes((probe['root'] / name).read_bytes())
    PIL.Image.fromarray(np.full([24, 20, 3], 90, np.uint8)).save(tmp_path / 'photos' / 'ok.png')
    result = run_cli('dataset_tool.py', '--source', tmp_path / 'photos', '--dest', tmp_path / 'set.zip',
                     '--resolution=16x16', '--transform=pad', '--quiet', tmp_path=tmp_path)
    assert result['rc'] == 0 and result['peak_mb'] < 1024, (result['stderr'][-2000:], result['peak_mb'])
    assert 'skipped' in result['stdout'] and 'huge16.png' in result['stdout'] and 'megapixels' in result['stdout']
    assert 'wrote 1 images' in result['stdout'] or 'wrote 2 images' in result['stdout']


def test_6_no_external_program_reads_an_input(probe, tmp_path):
    for name in ('postscript-image.png', 'postscript-upload.png'):
        refused(probe, name, 'not an image in a format read here')
    skipped(probe, 'postscript.zip', 'img00000009.png', 'not an image in a format read here')
    refused(probe, 'ps-folder', 'a.png')
    assert not probe['report']['canary'] and not probe['marker'].exists()
    env = {'PATH': f'{probe["bin_dir"]}{os.pathsep}{os.environ.get("PATH", "")}'}
    result = run_cli('dataset_tool.py', '--source', probe['root'] / 'ps-folder', '--dest', tmp_path / 'set.zip',
                     '--quiet', env=env, tmp_path=tmp_path)
    assert result['rc'] == 0 and 'skipped' in result['stdout'] and 'a.png' in result['stdout'], result
    save_snapshot(tmp_path / 'tiny.pkl', probe['data'])
    result = run_cli('invert.py', '--network', tmp_path / 'tiny.pkl', '--target', probe['root'] / 'ps-folder' / 'a.png',
                     '--outdir', tmp_path / 'out', '--method=project', '--perceptual=none', '--steps=1',
                     '--w-avg-samples=10', env=env, tmp_path=tmp_path)
    assert_one_error_line(result, 'a.png', 'not an image')
    assert not probe['marker'].exists(), probe['marker'].read_text()


def test_7_dataset_readers_check_sizes_labels_headers_and_special_files(probe, tmp_path):
    refused(probe, 'spaces.zip', 'dataset.json', 'too large')
    refused(probe, 'labels-number.zip', '"labels" must be a list of [file name, value] pairs')
    refused(probe, 'labels-pairs.zip', '"labels" must be a list of [file name, value] pairs')
    refused(probe, 'labels-pairs-source', '"labels" must be a list')
    refused(probe, 'labels-huge.zip', 'is class 1000000000, outside 0..9999')
    refused(probe, 'idx-ndim/train-images-idx3-ubyte', 'declares 255 dimensions')
    refused(probe, 'idx-overflow/train-images-idx3-ubyte', 'at most 1024 MiB')
    assert probe['cases']['idx-gz/train-images-idx3-ubyte.gz']['outcome'] == 'loaded'   # 10 images, no more read
    refused(probe, 'cifar-big/cifar-10-python.tar.gz', 'too large')
    skipped(probe, 'tf/huge-r02.tfrecords', 'declares 1099511627776 bytes, but the file holds 0 more')
    case = skipped(probe, 'special', 'zero.png', 'fifo.png', 'not a regular file', 'outside.png', 'outside the folder')
    assert case['message'].endswith(', 2)'), case['message']   # the two real images
    skipped(probe, 'special-dataset', '(3, 16, 16)')
    dataset_zip(tmp_path / 'huge-labels.zip', lambda names: {'labels': [[n, 10 ** 9] for n in names]})
    result = run_cli('train.py', '--outdir', tmp_path / 'runs', '--cfg=stylegan2', '--data',
                     tmp_path / 'huge-labels.zip', '--cond=1', '--gpus=1', '--batch=4', '--gamma=1', '--metrics=none',
                     '--dry-run', tmp_path=tmp_path)
    assert_one_error_line(result, 'huge-labels.zip', 'outside 0..9999')
    assert not (tmp_path / 'runs').exists()


def test_8_calc_metrics_checks_the_dataset_a_snapshot_names(probe, tmp_path):
    refused(probe, 'kwargs-nopath.pkl', 'name no dataset path; pass --data')
    refused(probe, 'kwargs-number.pkl', 'path=5')
    refused(probe, 'kwargs-flag.pkl', "use_labels='yes'")
    result = run_cli('calc_metrics.py', '--network', probe['root'] / 'kwargs-nopath.pkl', '--metrics=fid50k_full',
                     tmp_path=tmp_path)
    assert_one_error_line(result, 'kwargs-nopath.pkl', 'pass --data')


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory, rectangles):
    """A run of a few steps, with a snapshot that holds the training state."""
    outdir = tmp_path_factory.mktemp('resume')
    result = run_cli('train.py', '--outdir', outdir, '--cfg=stylegan2', '--data', rectangles(8, 16), '--gpus=1',
                     '--batch=4', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=1', '--metrics=none',
                     '--workers=0', '--mbstd-group=2', '--kimg=0.008', '--tick=0.004', '--snap=1', tmp_path=outdir)
    assert result['rc'] == 0, result['stderr'][-2000:]
    run = next(p for p in outdir.iterdir() if p.is_dir())
    return run, sorted(run.glob('network-snapshot-*.pkl'))[-1]


def test_9_resume_checks_optimizer_and_statistics_state_before_touching_the_run(trained_run, tmp_path):
    import shutil
    run, snapshot = trained_run
    tree = hp.read_tree(str(snapshot))
    moments = tree['training_state']['optimizers']['G']['state'][0]
    damages = {
        'shape': lambda t: t['training_state']['optimizers']['G']['state'][0].update(
            exp_avg=moments['exp_avg'].flatten()[:1].clone()),
        'stride0': lambda t: t['training_state']['optimizers']['G']['state'][0].update(
            exp_avg=torch.zeros(1).expand(moments['exp_avg'].shape)),
        'nan': lambda t: t['training_state']['optimizers']['D']['state'][0].update(
            exp_avg_sq=torch.full_like(t['training_state']['optimizers']['D']['state'][0]['exp_avg_sq'], float('nan'))),
        'stats': lambda t: t['training_state']['stats'][0].update({'Loss/G/loss': ['a', 'b', 'c']}),
    }
    expected = {'shape': 'exp_avg of parameter 0 is', 'stride0': 'does not cover its storage', 'nan': 'NaN',
                'stats': 'Loss/G/loss'}
    from training.resume import ResumeStateError, check_training_state
    good_state = load_snapshot(snapshot)
    for kind, damage in damages.items():
        damaged = hp.read_tree(str(snapshot))
        damage(damaged)
        path = tmp_path / f'{kind}-{snapshot.name}'
        path.write_bytes(hp.write_tree(damaged))
        with pytest.raises((ResumeStateError, SnapshotError)) as info:
            data = load_snapshot(path)
            check_training_state(data['training_state'], str(path), data)
        assert '\n' not in str(info.value) and path.name in str(info.value) and expected[kind] in str(info.value)
        again = load_snapshot(snapshot)   # the good snapshot still reads, as it did
        check_training_state(again['training_state'], str(snapshot), again)
        assert all(torch.equal(a, b) for a, b in zip(again['G'].state_dict().values(),
                                                     good_state['G'].state_dict().values()))
    # train.py itself: one line, and the run directory exactly as it was
    copy = tmp_path / 'run'
    shutil.copytree(run, copy)
    (copy / snapshot.name).write_bytes((tmp_path / f'shape-{snapshot.name}').read_bytes())
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in copy.iterdir()}
    result = run_cli('train.py', '--outdir', tmp_path, '--resume', copy, tmp_path=tmp_path)
    assert_one_error_line(result, snapshot.name, 'cannot resume', expected['shape'])
    assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in copy.iterdir()} == before


def test_10_app_numbers_are_bounded_and_long_jobs_hold_no_shared_lock(monkeypatch):
    from app import studio as S
    from networks.snapshot import load_generator
    studio = S.Studio(load_generator(S.resolve_network('garments')), 'garments')
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_ganspace(G, num_samples, num_components, source):
        calls.append(num_samples)
        started.set()
        release.wait(30)
        return 'directions'
    monkeypatch.setattr(S, 'ganspace', slow_ganspace)
    monkeypatch.setattr(S, 'latent_stats', lambda G, n, c=None: ('stats', n))
    with pytest.raises(S.StudioError, match='at most 50000'):
        studio.discover(S.Session(), components=8, samples=200_000)
    assert calls == []
    for bad in (dict(steps=S.MAX_STEPS + 1), dict(steps=10, pti_steps=S.MAX_PTI_STEPS + 1)):
        with pytest.raises(S.StudioError, match='steps lie in'):
            studio.start_inversion(S.Session(), None, 'pti', class_idx=0, **bad)
    with pytest.raises(S.StudioError, match='truncation lies in'):
        studio.seed_garment(0, truncation=1e9, class_idx=0)
    with pytest.raises(S.StudioError, match='seeds lie in'):
        studio.seed_grid(S.Session(), S.MAX_SEED, 2, class_idx=0)
    worker = threading.Thread(target=studio.discover, args=(S.Session(), 8, 5000))
    worker.start()
    try:
        assert started.wait(30)
        other = {}
        stats = threading.Thread(target=lambda: other.update(value=studio.latent_stats(0)))
        stats.start()
        stats.join(10)   # another tab's inversion needs the latent statistics now, not after the discovery
        assert other.get('value') == ('stats', studio.w_avg_samples)
    finally:
        release.set()
        worker.join(30)
    # and the page's own number fields say so too (sliders have a maximum by construction)
    import ast
    tree = ast.parse(open(os.path.join(hp.REPO, 'app', 'page.py')).read())
    numbers = [call for call in ast.walk(tree) if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
               and call.func.attr == 'Number']
    assert len(numbers) == 4 and all('maximum' in {k.arg for k in call.keywords} for call in numbers)


def test_11_calc_metrics_takes_the_short_name_of_a_shipped_model(tmp_path, monkeypatch):
    import calc_metrics
    from metrics.standin import save_standin_detectors
    from helpers.scripts import run_script
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    save_standin_detectors(str(tmp_path / 'det'))
    code, out, err = run_script(calc_metrics.main, '--network=garments', '--metrics=fid16_full', '--quiet',
                                '--data=synthetic:garments?n=16', '--detector-dir', tmp_path / 'det')
    assert code == 0, out + err
    assert 'stylegan2-garments-64x64.pt' in out and 'fid16_full' in out


def test_12_non_finite_weights_labels_and_images_are_refused(probe, tmp_path):
    refused(probe, 'nan.pkl', 'holds NaN or infinite values')
    refused(probe, 'labels-nan.zip', 'NaN and infinity are refused')
    refused(probe, 'nan.tif', 'NaN or infinite')
    skipped(probe, 'nan-folder', 'a.tif', 'NaN or infinite')
    refused(probe, 'nan-noise.npz', 'noise/x', 'NaN')
    result = run_cli('gen_images.py', '--network', probe['root'] / 'nan.pkl', '--seeds=0', '--outdir', tmp_path,
                     tmp_path=tmp_path)
    assert_one_error_line(result, 'nan.pkl', 'NaN')


# ---------------------------------------------------------------------------------------------
# The third probe (issue 32).

class CanaryVGG(torch.nn.Module):
    """Scripted as a stand-in for a perceptual or metric network: forward writes CANARY through a shared mapping."""

    def __init__(self, canary: str):
        super().__init__()
        self.canary = canary

    def forward(self, img: torch.Tensor, resize_images: bool = False, return_lpips: bool = False) -> torch.Tensor:
        written = torch.from_file(self.canary, shared=True, size=6, dtype=torch.uint8)
        written.fill_(65)
        return img.flatten(1) / 255 + written.sum() * 0


class CanaryInception(torch.nn.Module):
    def __init__(self, canary: str):
        super().__init__()
        self.canary = canary

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        written = torch.from_file(self.canary, shared=True, size=6, dtype=torch.uint8)
        written.fill_(65)
        return img.float().mean(dim=[2, 3]) + written.sum() * 0


def test_32_1_copying_calls_are_charged_to_a_budget_of_the_file_size(probe, tmp_path):
    for name in ('copy-encode.pkl', 'copy-frombuffer.pkl', 'copy-load_from_bytes.pkl', 'copy-easydict.pkl',
                 'copy-size.pkl', 'copy-set.pkl', 'copy-frozenset.pkl', 'copy-resume.pkl', 'copy.pt',
                 'copy-classifier', 'copy-cifar.tar.gz', 'frozenset-again.pkl'):
        refused(probe, name, 'would copy more than its size allows')
    assert (probe['root'] / 'copy-encode.pkl').stat().st_size < 60_000   # 25 MB of copies before the fix
    for name in ('unfold.pkl', 'unfold-kwargs.pkl'):   # walked as trees (repr, plain): 729 million items
        refused(probe, name, 'unfolds to more than its size allows')
    refused(probe, 'late-fill.pkl', 'already held by another')
    refused(probe, 'colliding-keys.pkl', 'dict key that is not a string, bytes or an integer')
    # dataset_tool.py on a CIFAR archive of a few KB whose batch copies a 200 KB string 4000 times
    batch = hp.program(hp.dictionary(data=hp.copy_bomb('encode', 200_000, 4000), labels=hp.NONE))
    cifar_tar(tmp_path / 'cifar-10-python.tar.gz', {'data_batch_1': batch})
    assert (tmp_path / 'cifar-10-python.tar.gz').stat().st_size < 10_000
    result = run_cli('dataset_tool.py', '--source', tmp_path / 'cifar-10-python.tar.gz', '--dest', tmp_path / 'set.zip',
                     '--quiet', tmp_path=tmp_path, timeout=30)
    assert_one_error_line(result, 'data_batch_1', 'would copy more than its size allows')
    assert not (tmp_path / 'set.zip').exists() and not list(tmp_path.glob('.set.zip*'))


def test_32_1_overlapping_archive_members_cannot_add_up_to_more_than_the_archive(probe, tmp_path):
    for name in ('overlap-members.pt', 'overlap-members-classifier', 'overlap-members-hyperstyle'):
        refused(probe, name, 'more than the archive holds besides the members read before it')
    refused(probe, 'claims-4gib.pt', 'data.pkl declares 4294901760 bytes')
    result = run_cli('gen_images.py', '--network', probe['root'] / 'overlap-members.pt', '--seeds=0', '--outdir',
                     tmp_path / 'out', tmp_path=tmp_path, timeout=30)
    assert_one_error_line(result, 'overlap-members.pt', 'overlapping or forged members')
    assert not (tmp_path / 'out').exists()


def test_32_2_long_integers_and_huge_shape_entries_are_refused_before_any_product(probe, tmp_path):
    refused(probe, 'shape-long-int.pkl', 'refusing an integer of 2399999 bits (at most 80)')
    refused(probe, 'shape-huge-dim.pkl', 'malformed array shape', 'at most 1099511627776 each')
    result = run_cli('gen_images.py', '--network', probe['root'] / 'shape-long-int.pkl', '--seeds=0', '--outdir',
                     tmp_path / 'out', tmp_path=tmp_path, timeout=30)
    assert_one_error_line(result, 'shape-long-int.pkl', 'integer of 2399999 bits')


def test_32_3_torchscript_runs_only_when_known_or_named(tmp_path, monkeypatch):
    """A scripted 'vgg16.pt' whose forward writes a file: refused by invert.py (and by the detector loader of
    calc_metrics and train.py, and the app's perceptual option) with one line saying it is code and how to accept
    it; the canary is never written. Named in $SG3C_TRUST_TORCHSCRIPT it runs, and the canary shows that the test
    would see it."""
    monkeypatch.delenv('SG3C_TRUST_TORCHSCRIPT', raising=False)
    canary = tmp_path / 'canary'
    torch.jit.script(CanaryVGG(str(canary))).save(str(tmp_path / 'vgg16.pt'))
    det = tmp_path / 'det'
    det.mkdir()
    torch.jit.script(CanaryInception(str(canary))).save(str(det / 'inception-2015-12-05.pt'))
    save_snapshot(tmp_path / 'tiny.pkl', tiny_networks())
    PIL.Image.fromarray(np.full([16, 16, 3], 90, np.uint8)).save(tmp_path / 'photo.png')
    invert = ['invert.py', '--network', tmp_path / 'tiny.pkl', '--target', tmp_path / 'photo.png', '--outdir',
              tmp_path / 'out', '--method=project', '--steps=1', '--w-avg-samples=10']
    result = run_cli(*invert, f'--perceptual={tmp_path / "vgg16.pt"}', tmp_path=tmp_path, timeout=60)
    assert_one_error_line(result, 'vgg16.pt', 'a TorchScript file is executable code', 'SG3C_TRUST_TORCHSCRIPT=')
    from app.serve import load_perceptual_for_app
    from inversion.perceptual import PerceptualUnavailable, load_perceptual
    from metrics.detectors import DetectorError, load_detector
    from app.studio import StudioError
    with pytest.raises(DetectorError, match='inception-2015-12-05.pt: a TorchScript file is executable code'):
        load_detector('inception', torch.device('cpu'), detector_dir=str(det))   # calc_metrics --detector-dir
    monkeypatch.setenv('SG3C_DETECTOR_DIR', str(tmp_path))   # the cached vgg16.pt that --perceptual=vgg16 takes
    with pytest.raises(PerceptualUnavailable, match='executable code'):
        load_perceptual('vgg16')
    with pytest.raises(StudioError, match='executable code'):
        load_perceptual_for_app(str(tmp_path / 'vgg16.pt'), 'cpu')
    assert not canary.exists() and not (tmp_path / 'out').exists()
    monkeypatch.setenv('SG3C_TRUST_TORCHSCRIPT', str(tmp_path / 'vgg16.pt'))
    loss = load_perceptual(str(tmp_path / 'vgg16.pt'))
    loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    assert canary.read_bytes() == b'AAAAAA'   # named, it ran: the checks above would have seen the write


def test_32_4_snapshot_discovery_takes_regular_files_and_json_is_depth_limited(tmp_path):
    run = tmp_path / 'runs' / '00000-x'
    run.mkdir(parents=True)
    os.mkfifo(run / 'network-snapshot-000004.pkl')   # open() on it waited forever
    result = run_cli('gen_images.py', '--network', run, '--seeds=0', '--outdir', tmp_path / 'out', tmp_path=tmp_path,
                     timeout=30)
    assert_one_error_line(result, str(run), 'holds no network-snapshot-*.pkl')
    save_snapshot(run / 'network-snapshot-000008.pkl', tiny_networks())
    (run / 'best.json').write_text('{"snapshot": ' + '[' * 100_000 + ']' * 100_000 + '}')
    result = run_cli('gen_images.py', '--network', f'{run}:best', '--seeds=0', '--outdir', tmp_path / 'out',
                     tmp_path=tmp_path, timeout=30)
    assert_one_error_line(result, 'best.json', 'nested 100001 levels deep')
    (run / 'best.json').unlink()
    os.mkfifo(run / 'best.json')
    with pytest.raises(SnapshotError, match='best.json: not a best.json of this toolkit .not a regular file'):
        resolve_source(f'{run}:best')
    assert not (tmp_path / 'out').exists()


def test_32_5_seeds_and_rendering_numbers_are_bounded_in_one_line(tmp_path):
    import gen_images
    import gen_video
    import style_mixing
    from helpers.scripts import run_script
    save_snapshot(tmp_path / 'tiny.pkl', tiny_networks())
    net = ['--network', tmp_path / 'tiny.pkl', '--outdir', tmp_path / 'out']
    cases = [(gen_images, ['--seeds=4294967296'], 'seed 4294967296 is outside 0..4294967295'),
             (gen_images, ['--seeds=0-99999999999999999999999'], 'is outside 0..4294967295'),
             (gen_images, ['--seeds=0', '--trunc=1e308'], '--trunc=1e+308 is outside -100..100'),
             (gen_images, ['--seeds=0', '--trunc=1e38'], '--trunc=1e+38 is outside'),
             (gen_images, ['--seeds=0', '--trunc=-1e38'], '--trunc=-1e+38 is outside'),
             (gen_images, ['--seeds=0', '--translate=1e308,0'], '--translate=1e+308 is outside -1000..1000'),
             (gen_images, ['--seeds=0', '--rotate=1e308'], '--rotate=1e+308 is outside'),
             (style_mixing, ['--rows=4294967296', '--cols=1'], 'seed 4294967296 is outside'),
             (gen_video, ['--seeds=0,4294967296'], 'seed 4294967296 is outside'),
             (gen_video, ['--seeds=0-1', '--fps=1e308'], '--fps=1e+308 is outside 1..1000')]
    for script, args, message in cases:
        code, out, err = run_script(script.main, *net, *args)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], (args, err)
    # the whole list was built first: MemoryError after minutes
    result = run_cli('gen_images.py', *net, '--seeds=0-999999999', tmp_path=tmp_path, timeout=30)
    assert_one_error_line(result, '1000000000 seeds are more than the 100000')
    assert not (tmp_path / 'out').exists()


def test_32_6_numpy_warnings_never_precede_the_error_line(tmp_path):
    import warnings
    data = tiny_networks('stylegan3')
    for name, change in (('cutoff', dict(first_cutoff=-1)), ('zero-w', dict(w_dim=0))):
        record = network_record(data['G'])
        record['init_kwargs'].update(change)
        (tmp_path / f'{name}.pkl').write_bytes(pickle.dumps(dict(G=None, D=None, G_ema=_NetworkRecord(record))))
        with warnings.catch_warnings(record=True) as seen, pytest.raises(SnapshotError):
            warnings.simplefilter('always')
            load_snapshot(tmp_path / f'{name}.pkl')
        assert not [w for w in seen if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in seen]
    result = run_cli('gen_images.py', '--network', tmp_path / 'cutoff.pkl', '--seeds=0', '--outdir', tmp_path / 'out',
                     tmp_path=tmp_path, timeout=60)
    assert result['stderr'].startswith('error: ') and 'Warning' not in result['stderr'], result['stderr'][-2000:]
    assert_one_error_line(result, 'cutoff.pkl', 'constructor arguments not understood')
