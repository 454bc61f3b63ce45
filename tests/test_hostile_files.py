"""Hostile and broken files (issue 12): no crash, no memory bomb, no code run, one-line errors naming the file."""
import io
import os
import pickle
import subprocess
import sys
import tarfile
import warnings
import zipfile

import numpy as np
import pytest
import torch

from helpers import hostile_pickles as hp
from networks.snapshot import (SnapshotError, _NetworkRecord, export_pt, find_latest_snapshot, load_snapshot,
                               save_snapshot)
from helpers.networks import tiny_networks
from torch_utils import safe_pickle

ZERO_FLAGS = hp.tup(hp.integer(3), hp.text('|'), hp.NONE, hp.NONE, hp.NONE, hp.integer(-1), hp.integer(-1),
                    hp.integer(0))


def assert_one_line_refusal(case, *fragments):
    assert case['outcome'] == 'refused', case
    assert '\n' not in case['message'] and len(case['message']) < 400, case['message']
    for fragment in fragments:
        assert fragment in case['message'], case['message']


def snapshot_with(**networks):
    return hp.program(hp.dictionary(**{key: networks.get(key, hp.NONE) for key in ('G', 'D', 'G_ema')}))


def test_forged_object_arrays_are_refused_without_a_crash(tmp_path):
    """Issue 12.1: dtype state games made ndarray.__setstate__ read raw bytes as pointers (SIGSEGV)."""
    files = {'segfault.pkl': hp.segfault_pickle()}
    states = {   # copies of plain dtypes with flags-only and fields-only state changes, and a void dtype
        'flags': hp.tup(hp.integer(3), hp.text('<'), hp.NONE, hp.NONE, hp.NONE, hp.integer(-1), hp.integer(-1),
                        hp.integer(63)),
        'fields': hp.tup(hp.integer(3), hp.text('|'), hp.NONE, hp.tup(hp.text('a')),
                         b'}' + hp.text('a') + hp.tup(hp.np_dtype('u1', ZERO_FLAGS), hp.integer(0)) + b's',
                         hp.integer(8), hp.integer(1), hp.integer(0))}
    for typestr in ('f8', 'u1'):
        for kind, state in states.items():
            array = hp.np_array(hp.np_dtype(typestr, state), (1,), b'A' * 8)
            files[f'{typestr}_{kind}.pkl'] = snapshot_with(G=hp.call(hp.glob('builtins', 'set'), array))
            files[f'{typestr}_{kind}_bare.pkl'] = snapshot_with(G=array)
    files['v8.pkl'] = snapshot_with(G=hp.np_array(hp.np_dtype('V8', ZERO_FLAGS), (1,), b'A' * 8))
    files['O_bare.pkl'] = snapshot_with(G=hp.np_array(hp.np_dtype('O', ZERO_FLAGS), (1,), b'A' * 8))
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)

    # The same array inside a CIFAR batch: dataset_tool.py and train.py --data read those with the same unpickler.
    batch = hp.program(hp.dictionary(data=hp.np_array(hp.np_dtype('O', ZERO_FLAGS), (1,), b'A' * 8), labels=hp.NONE))
    with tarfile.open(tmp_path / 'cifar-10-python.tar.gz', 'w:gz') as tar:
        info = tarfile.TarInfo('cifar-10-batches-py/data_batch_1')
        info.size = len(batch)
        tar.addfile(info, io.BytesIO(batch))
    report = hp.run_worker([tmp_path / name for name in files] + [('cifar', tmp_path / 'cifar-10-python.tar.gz')])
    assert report['rc'] == 0, report['stderr']   # a signal would be a negative return code
    assert len(report['cases']) == len(files) + 1
    for case in report['cases'][:-1]:   # set() of an array is refused before the array is made (issue 32)
        assert_one_line_refusal(case, os.path.basename(case['path']),
                                'builtins.set on anything but' if 'set' in case['message'] else 'numpy dtype')
        assert 'set' in case['message'] or 'numpy dtype' in case['message'], case['message']
        if case['path'].endswith('_bare.pkl') or case['path'].endswith('v8.pkl'):
            assert 'numpy dtype' in case['message'], case['message']
    assert_one_line_refusal(report['cases'][-1], 'data_batch_1', "numpy dtype 'O'")


def test_constructor_kwargs_cannot_make_the_loader_allocate(tmp_path, fixtures_dir):
    """Issue 12.2: networks were built (3.4 GB, 9.8 GB) before any tensor was compared."""
    huge = dict(z_dim=16384, w_dim=16384, c_dim=0, img_resolution=1024, img_channels=3,
                mapping_kwargs=dict(num_layers=8), channel_base=1 << 16, channel_max=4096)
    tiny = tmp_path / 'tiny.pkl'
    tiny.write_bytes(pickle.dumps(dict(G=_NetworkRecord(dict(family='stylegan2.Generator', init_kwargs=huge,
                                                                state_dict={})), D=None, G_ema=None)))
    assert tiny.stat().st_size < 400
    tree = hp.read_tree(fixtures_dir / 'official_stylegan3-t_64.pkl')
    for key in ('G', 'G_ema'):
        tree[key].args[0]['state']['_init_kwargs'].update(z_dim=16384, w_dim=16384)
    official = tmp_path / 'official_16384.pkl'
    official.write_bytes(hp.write_tree(tree))
    report = hp.run_worker([tiny, official], warm_up=fixtures_dir / 'official_stylegan2_64.pkl')
    assert report['rc'] == 0, report['stderr']
    assert_one_line_refusal(report['cases'][0], 'tiny.pkl', 'missing')
    assert_one_line_refusal(report['cases'][1], 'official_16384.pkl', 'shape')
    assert report['max_rss_mb'] < 1024
    assert not report['canary']


def test_malformed_snapshots_give_one_line_errors(tmp_path):
    """Issue 12.3 and 15.4: each of these ended in a traceback or a misleading message."""
    data = tiny_networks()
    cases = {}

    def write(name, payload):
        (tmp_path / name).write_bytes(pickle.dumps(payload, protocol=4))
        cases[name] = None

    from networks.snapshot import network_record
    G_record = network_record(data['G'])
    write('none_and_list.pkl', dict(G=None, D=None, G_ema=[1, 2]))
    write('all_none.pkl', dict(G=None, D=None, G_ema=None))
    bad = dict(G_record, state_dict=dict(G_record['state_dict']))
    bad['state_dict']['mapping.fc0.weight'] = 'not a tensor'
    write('string_parameter.pkl', dict(G=_NetworkRecord(bad), D=None, G_ema=None))
    write('kwargs_not_dict.pkl', dict(G=_NetworkRecord(G_record), D=None, G_ema=None, training_set_kwargs='x.zip'))
    for kind, array in (('object', np.array([1, 'a'], dtype=object)), ('structured', np.zeros(2, 'f4,i4'))):
        odd = dict(G_record, state_dict=dict(G_record['state_dict']))
        odd['state_dict']['mapping.fc0.bias'] = array
        write(f'{kind}_array.pkl', dict(G=_NetworkRecord(odd), D=None, G_ema=None))
    export_pt(data, tmp_path / 'good.pt')
    blob = (tmp_path / 'good.pt').read_bytes()
    for fraction in (10, 50):
        (tmp_path / f'cut{fraction}.pt').write_bytes(blob[:len(blob) * fraction // 100])
        cases[f'cut{fraction}.pt'] = None
    (tmp_path / 'photo.jpg').write_bytes(b'\xff\xd8\xff\xe0\x00\x10JFIF\x00' + bytes(200))
    (tmp_path / 'notes.txt').write_text('hello\n')
    cases.update({'photo.jpg': None, 'notes.txt': None})

    expected = {
        'none_and_list.pkl': 'G_ema is a list, not a network',
        'all_none.pkl': 'holds no network',
        'string_parameter.pkl': 'mapping.fc0.weight is a str, not a tensor',
        'kwargs_not_dict.pkl': 'training_set_kwargs is a str, not a dict',
        'object_array.pkl': "numpy dtype 'O",
        'structured_array.pkl': 'numpy dtype',
        'cut10.pt': 'cut10.pt: ',
        'cut50.pt': 'cut50.pt: ',
        'photo.jpg': 'photo.jpg: not a network snapshot (expected a .pkl from train.py or NVIDIA, a .pt export',
        'notes.txt': 'notes.txt: not a network snapshot',
    }
    for name in cases:
        with pytest.raises(SnapshotError) as info:
            load_snapshot(tmp_path / name)
        message = str(info.value)
        assert '\n' not in message and name in message and expected[name] in message, (name, message)


def test_missing_files_say_no_such_file(tmp_path):
    for call in (load_snapshot, find_latest_snapshot):
        with pytest.raises(SnapshotError, match='nope.pkl: no such file'):
            call(tmp_path / 'nope.pkl')
    assert find_latest_snapshot(tmp_path) is None   # an existing directory without snapshots


def test_code_in_a_nested_storage_is_named_on_one_line(tmp_path, monkeypatch):
    """Issue 12.4: torch's own refusal passed on six lines of advice to load unsafely."""
    monkeypatch.chdir(tmp_path)
    header = b''.join(pickle.dumps(v, protocol=2) for v in (0x1950a86a20f9469cfc6c, 1001, dict(little_endian=True)))
    payload = header + hp.program(hp.call(hp.glob('posix', 'system'), hp.text('touch PWNED')))
    path = tmp_path / 'nested.pkl'
    path.write_bytes(snapshot_with(G=hp.call(hp.glob('torch.storage', '_load_from_bytes'), hp.raw(payload))))
    with pytest.raises(SnapshotError) as info:
        load_snapshot(path)
    message = str(info.value)
    assert '\n' not in message and 'posix.system' in message and 'nested tensor storage' in message
    assert 'carries code' in message and 'weights_only' not in message
    assert not (tmp_path / 'PWNED').exists()


def test_tensor_larger_than_its_storage_is_refused(tmp_path):
    """torch's own rebuild would grow the storage to the size the file names (an allocation bomb)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # TypedStorage is deprecated, but it is what old pickles hold
        storage = torch.zeros(4).storage().__reduce__()[1][0]
    tensor = hp.call(hp.glob('torch._utils', '_rebuild_tensor_v2'),
                     hp.call(hp.glob('torch.storage', '_load_from_bytes'), hp.raw(storage)),
                     hp.integer(0), hp.tup(hp.integer(1 << 30)), hp.tup(hp.integer(1)), hp.FALSE,
                     hp.call(hp.glob('collections', 'OrderedDict')))
    with pytest.raises(safe_pickle.UnsafePickleError, match='does not cover its storage'):
        safe_pickle.loads(hp.program(tensor), safe_pickle.tensor_globals())
    ok = tensor.replace(hp.integer(1 << 30), hp.integer(4))
    assert torch.equal(safe_pickle.loads(hp.program(ok), safe_pickle.tensor_globals()), torch.zeros(4))


def test_protocol_2_builtin_names_are_mapped():
    """Issue 12.8: Python 2 style pickles name `__builtin__.set`."""
    blob = pickle.dumps({'s': {1, 2}, 'f': frozenset('ab'), 'b': b'xy'}, protocol=2)
    assert b'__builtin__' in blob
    assert safe_pickle.loads(blob) == {'s': {1, 2}, 'f': frozenset('ab'), 'b': b'xy'}


def test_arrays_and_scalars_round_trip_through_the_safe_unpickler():
    values = [np.arange(6, dtype='>i4').reshape(2, 3), np.asfortranarray(np.ones((2, 3), np.float16)),
              np.zeros((0, 3), bool), np.complex64(1 + 2j), np.float64(0.5), np.random.RandomState(0).get_state()]
    for protocol in (2, 4, 5):
        loaded = safe_pickle.loads(pickle.dumps(values, protocol=protocol))
        for a, b in zip(loaded[:5], values[:5]):
            assert np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b)
        assert np.array_equal(loaded[5][1], values[5][1])
    short = hp.np_array(hp.np_dtype('i8', ZERO_FLAGS), (4,), bytes(24))
    with pytest.raises(safe_pickle.UnsafePickleError, match='needs 32 bytes, the file holds 24'):
        safe_pickle.loads(hp.program(short))


def test_augment_pipes_load_through_the_family_registry(tmp_path):
    """networks/ no longer imports training/: training.augment registers the AugmentPipe family itself."""
    from training.augment import AugmentPipe
    data = tiny_networks()
    data['augment_pipe'] = AugmentPipe(xflip=1, rotate90=1, brightness=1)
    data['augment_pipe'].p.fill_(0.3)
    save_snapshot(tmp_path / 'ada.pkl', data)
    loaded = load_snapshot(tmp_path / 'ada.pkl')
    assert isinstance(loaded['augment_pipe'], AugmentPipe) and float(loaded['augment_pipe'].p) == pytest.approx(0.3)
    script = ('import sys; from networks.snapshot import load_snapshot; d = load_snapshot(sys.argv[1]); '
              'print(d["augment_pipe"] is None, d["G_ema"] is not None, "training.augment" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'ada.pkl')], capture_output=True, text=True,
                         cwd=hp.REPO, env=dict(os.environ, PYTHONPATH=hp.REPO), check=True).stdout.split()
    assert out == ['True', 'True', 'False']
    sources = [os.path.join(hp.REPO, 'networks', f) for f in os.listdir(os.path.join(hp.REPO, 'networks'))
               if f.endswith('.py')]
    assert not [f for f in sources if 'training' in ''.join(
        line for line in open(f) if line.lstrip().startswith(('import ', 'from ')))]


def test_nvidia_augment_pipe_loads_through_the_registry(tmp_path, fixtures_dir):
    """An NVIDIA snapshot trained with ADA holds a persistent AugmentPipe: rebuilt as ours, p kept."""
    from collections import OrderedDict

    from training.augment import AugmentPipe
    kwargs = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                  lumaflip=1, hue=1, saturation=1)
    buffers = OrderedDict(AugmentPipe(**kwargs).state_dict())
    buffers['p'] = torch.tensor(0.25)
    meta = dict(type='class', version=6, module_src='raise SystemExit("never run")', class_name='AugmentPipe',
                state=dict(_parameters=OrderedDict(), _buffers=buffers, _modules=OrderedDict(), training=True,
                           _non_persistent_buffers_set=set(), _init_args=(), _init_kwargs=kwargs))
    tree = hp.read_tree(fixtures_dir / 'official_stylegan2_64.pkl')
    tree['augment_pipe'] = hp.Stub('torch_utils.persistence', '_reconstruct_persistent_obj', (meta,))
    (tmp_path / 'ada.pkl').write_bytes(hp.write_tree(tree))
    pipe = load_snapshot(tmp_path / 'ada.pkl')['augment_pipe']
    assert isinstance(pipe, AugmentPipe) and float(pipe.p) == 0.25 and pipe.init_kwargs['hue'] == 1


def test_zip_member_bombs_are_skipped_with_a_reason(tmp_path):
    """Issue 12.7: a valid PNG followed by 1 GiB of zeros (1 MB deflated) made the readers take 2+ GB."""
    from data.image_io import encode_png
    png = encode_png(np.full((32, 32, 3), 128, np.uint8))
    path = tmp_path / 'bomb.zip'
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
        for i in range(3):
            z.writestr(f'img{i}.png', png)
        with z.open('big.png', 'w', force_zip64=True) as f:
            f.write(png)
            chunk = bytes(1 << 24)
            for _ in range(16):   # 256 MiB; the limit for a 32x32 image is about 16 MiB
                f.write(chunk)
    report = hp.run_worker([('source', path), ('dataset', path)])
    assert report['rc'] == 0, report['stderr']
    for case in report['cases']:
        assert case['outcome'] == 'loaded', case
        assert 'big.png' in case['message'] and 'too large' in case['message'], case['message']
        assert case['message'].count('(3, 32, 32)') == 3 or case['mode'] == 'source'
    assert report['max_rss_mb'] < 1024, report['max_rss_mb']


def test_filter_design_is_bounded_when_the_memory_limit_cannot_apply(tmp_path):
    """With several threads (the web app) the loader cannot lower RLIMIT_AS, so the NumPy filter design that
    StyleGAN3's constructor runs outside the meta device must refuse absurd tap counts by itself."""
    import threading

    from networks.stylegan3 import MAX_FILTER_TAPS, design_lowpass_filter
    with pytest.raises(ValueError, match='taps'):
        design_lowpass_filter(MAX_FILTER_TAPS + 1, cutoff=1, width=1, fs=8, radial=True)
    kwargs = dict(z_dim=8, w_dim=8, c_dim=0, img_resolution=1024, img_channels=3, channel_base=64, channel_max=8,
                  mapping_kwargs=dict(num_layers=1), filter_size=64, lrelu_upsampling=16, num_layers=14)
    path = tmp_path / 'taps.pkl'
    path.write_bytes(pickle.dumps(dict(G=_NetworkRecord(dict(family='stylegan3.Generator', init_kwargs=kwargs,
                                                             state_dict={})), D=None, G_ema=None)))
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        with pytest.raises(SnapshotError, match='taps') as info:
            load_snapshot(path)
    finally:
        release.set()
        other.join()
    assert '\n' not in str(info.value) and 'taps.pkl' in str(info.value)
