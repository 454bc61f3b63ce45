"""Fuzzing the loaders: seeded mutations of NVIDIA-format fixtures and of our own snapshots and .pt exports
(byte flips, truncations, swapped opcodes, and structural mutations of the unpickled tree: kwargs, dtypes,
shapes, types), and mechanism by mechanism (issue 25): nesting depth, stride-0, overlapping and shared
storages, state set on allow-listed globals, .npy headers in latents and directions files, image headers;
(issue 32) copying calls against the loading budget.
All are loaded in one worker process under a memory cap with an audit-hook canary, and after each case a good
file of the same kind is read again and must read as before.

Every case must end either loaded or refused with a one-line error: never a signal, never another exception
type, never a MemoryError, never code run, never a change to what later loads see; the worst resident memory
is reported.
"""
import copy
import io
import os
import pickletools
import random
import struct
import time
import zipfile
import zlib

import numpy as np
import PIL.Image
import pytest
import torch

from helpers import bombs
from helpers import hostile_pickles as hp
from networks.snapshot import _SNAPSHOT_GLOBALS, export_pt, save_snapshot
from helpers.networks import tiny_networks

_KWARG_KEYS = ('_init_kwargs', 'init_kwargs')
_OPCODES = [op.code.encode('latin1') for op in pickletools.opcodes]


def _opcode_positions(blob: bytes) -> list:
    positions = []
    try:
        for _, _, pos in pickletools.genops(blob):
            positions.append(pos)
    except Exception:   # noqa: BLE001 - a .pt archive is not a bare pickle: flip anywhere then
        pass
    return positions


def byte_flip(rng: random.Random, blob: bytes) -> bytes:
    data = bytearray(blob)
    positions = _opcode_positions(blob) or range(len(data))
    for _ in range(rng.randint(1, 4)):
        pos = min(rng.choice(positions) + rng.choice((0, 0, 1, 2, 5)), len(data) - 1)
        data[pos] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
    return bytes(data)


def truncate(rng: random.Random, blob: bytes) -> bytes:
    return blob[:rng.randrange(1, len(blob))]


def swap_opcodes(rng: random.Random, blob: bytes) -> bytes:
    data = bytearray(blob)
    positions = _opcode_positions(blob)
    if len(positions) < 2:
        return byte_flip(rng, blob)
    if rng.random() < 0.5:
        a, b = rng.sample(positions, 2)
        data[a], data[b] = data[b], data[a]
    else:
        data[rng.choice(positions)] = ord(rng.choice(_OPCODES))
    return bytes(data)


def _slots(tree, kwargs: bool = False, out=None, seen=None):
    """(container, key, inside kwargs) for every dict item and list element of a raw snapshot tree."""
    out, seen = ([] if out is None else out), (set() if seen is None else seen)
    if id(tree) in seen:
        return out
    seen.add(id(tree))
    if isinstance(tree, hp.Stub):
        return _slots(tree.args, kwargs, out, seen)
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.append((tree, key, kwargs))
            _slots(value, kwargs or key in _KWARG_KEYS, out, seen)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out.append((tree, i, kwargs))
            _slots(value, kwargs, out, seen)
    return out


def _tensor_variants(t: torch.Tensor) -> list:
    variants = [lambda: t.flatten(), lambda: t.unsqueeze(0), lambda: t[:0] if t.ndim else t.reshape(1),
                lambda: t.to(torch.int64), lambda: t.to(torch.bool), lambda: t.to(torch.float16),
                lambda: t.numpy().copy(), lambda: 'tensor', lambda: None, lambda: t.tolist()[:3] if t.ndim else 7]
    if t.is_floating_point():
        variants += [lambda: t.to(torch.complex64), lambda: t.transpose(0, -1) if t.ndim > 1 else t.repeat(2)]
    return variants


def _value_variants(old) -> list:
    variants = [lambda: None, lambda: 'x', lambda: -1, lambda: 0, lambda: 1 << 40, lambda: 16384, lambda: 3.5,
                lambda: float('inf'), lambda: [], lambda: {}, lambda: [1] * 100, lambda: (1, 2), lambda: True,
                lambda: np.float32(2), lambda: np.zeros(3, 'f4'), lambda: np.array([None, 1], object),
                lambda: np.zeros(2, 'f4,i4'), lambda: torch.zeros(2), lambda: {'a': {'b': {'c': {'d': {}}}}}]
    if isinstance(old, int) and not isinstance(old, bool):
        variants += [lambda: old * 2, lambda: old + 1, lambda: old * 64, lambda: -old, lambda: float(old)]
    return variants


def structural(rng: random.Random, tree):
    """A deep copy of `tree` with one or two slots changed, deleted or added."""
    tree = copy.deepcopy(tree)
    slots = _slots(tree)
    for _ in range(rng.randint(1, 2)):
        kind = rng.choice(('kwargs', 'kwargs', 'tensor', 'tensor', 'any'))
        pool = [s for s in slots if (kind == 'kwargs' and s[2]) or
                (kind == 'tensor' and isinstance(s[0][s[1]], torch.Tensor)) or kind == 'any'] or slots
        container, key, _ = rng.choice(pool)
        old = container[key]
        action = rng.random()
        if action < 0.1 and isinstance(container, dict):
            del container[key]
        elif action < 0.15 and isinstance(container, dict):
            container[f'extra{rng.randrange(100)}'] = rng.choice(_value_variants(None))()
        else:
            variants = _tensor_variants(old) if isinstance(old, torch.Tensor) else _value_variants(old)
            container[key] = rng.choice(variants)()
        slots = _slots(tree)
    return hp.write_tree(tree)


def _own_sources(folder) -> dict:
    """Our own small snapshots in each format, with an augment pipe and training-state-like extras."""
    from training.augment import AugmentPipe
    sources = {}
    for family in ('stylegan2', 'stylegan3'):
        data = tiny_networks(family, c_dim=2 if family == 'stylegan2' else 0)
        data['augment_pipe'] = AugmentPipe(xflip=1, rotate90=1, scale=1)
        data['training_state'] = dict(counters=dict(cur_nimg=8), rng=[dict(numpy=np.random.RandomState(0).get_state(),
                                                                          torch=torch.get_rng_state())])
        save_snapshot(folder / f'own_{family}.pkl', data)
        sources[f'own_{family}.pkl'] = folder / f'own_{family}.pkl'
    export_pt(tiny_networks('stylegan2'), folder / 'own.pt')
    sources['own.pt'] = folder / 'own.pt'
    return sources


def make_cases(folder, fixtures_dir, seed: int, own_cases: int, fixture_cases: int) -> list:
    rng = random.Random(seed)
    sources = _own_sources(folder)
    fixtures = [fixtures_dir / 'official_stylegan2_32_c3.pkl', fixtures_dir / 'official_stylegan3-r_64.pkl']
    trees = {}
    paths = []
    plan = [(rng.choice(list(sources.values())), i) for i in range(own_cases)] + \
           [(fixtures[i % len(fixtures)], i) for i in range(fixture_cases)]
    for source, i in plan:
        blob = source.read_bytes()
        operations = [byte_flip, truncate, swap_opcodes]
        if source.suffix == '.pkl':
            operations.append(structural)
        operation = operations[i % len(operations)]
        if operation is structural:
            if source not in trees:
                trees[source] = hp.read_tree(str(source))
            mutated = structural(rng, trees[source])
        else:
            mutated = operation(rng, blob)
        path = folder / f'case{len(paths):04d}_{operation.__name__}_{source.stem}{source.suffix}'
        path.write_bytes(mutated)
        paths.append(path)
    # Code injected into a structural mutation: must be refused, and the canary must stay silent.
    for i, source in enumerate(list(sources.values())[:2]):
        tree = copy.deepcopy(trees.get(source) or hp.read_tree(str(source)))
        tree['G'] = hp.Stub('posix', 'system', ('touch FUZZ_CANARY',))
        path = folder / f'inject{i}.pkl'
        path.write_bytes(hp.write_tree(tree))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Mechanisms of issue 25. Opcodes are spliced in where a placeholder string was pickled (protocol 3: no frames).

PLACE = 'FUZZ_SPLICE_HERE'
NUM_WS, W_DIM = 6, 8   # of tiny_networks()
WS_MODE = f'ws {NUM_WS} {W_DIM}'


def _splice(rng: random.Random, tree, opcodes) -> bytes:
    """`tree` pickled with the opcodes in place of one of its slots; `opcodes` may be a function of the memo index
    from which the spliced opcodes may use the memo (past every index used before them)."""
    tree = copy.deepcopy(tree)
    container, key, _ = rng.choice(_slots(tree))
    container[key] = PLACE
    blob = hp.write_tree(tree, protocol=3)
    assert blob.count(hp.text(PLACE)) == 1
    if callable(opcodes):
        at = blob.index(hp.text(PLACE))
        opcodes = opcodes(sum(1 for _, _, pos in pickletools.genops(blob) if pos < at))
    return blob.replace(hp.text(PLACE), opcodes)


def _deep(depth: int) -> bytes:
    return hp.NONE + b'\x85' * depth


_NESTS = {
    'tuple': lambda d: _deep(d),
    'list': lambda d: b'(' * d + hp.NONE + b'l' * d,
    'dict_key': lambda d: b'}' + _deep(d) + hp.NONE + b's',
    'frozenset': lambda d: b'(' + _deep(d) + b'\x91',
    'set': lambda d: b'\x8f(' + _deep(d) + b'\x90',
    'ordereddict': lambda d: hp.call(hp.glob('collections', 'OrderedDict')) + b'(' + _deep(d) + hp.NONE + b'u',
}


def nesting(rng: random.Random, tree) -> tuple[bytes, str]:
    depth = rng.choice((rng.randint(1, 150), rng.randint(190, 260), rng.randint(1000, 300_000)))
    kind = rng.choice(sorted(_NESTS))
    return _splice(rng, tree, _NESTS[kind](depth)), f'{kind}{depth}'


def storages(rng: random.Random, tree) -> tuple[bytes, str]:
    tree = copy.deepcopy(tree)
    tensors = [(c, k) for c, k, _ in _slots(tree) if isinstance(c[k], torch.Tensor) and c[k].numel() > 1]
    container, key = rng.choice(tensors)
    t = container[key]
    kind = rng.choice(('expand', 'overlap', 'offset', 'larger', 'alias', 'dense'))
    if kind == 'overlap' and sum(n > 1 for n in t.shape) < 2:   # strides of 1 overlap only across two dimensions
        kind = 'expand'
    if kind == 'expand':
        container[key] = torch.zeros([], dtype=t.dtype).expand(t.shape)
    elif kind == 'overlap':
        container[key] = torch.zeros(t.numel(), dtype=t.dtype).as_strided(t.shape, (1,) * t.ndim)
    elif kind == 'offset':
        container[key] = torch.zeros(t.numel() + 3, dtype=t.dtype)[3:].view(t.shape)
    elif kind == 'larger':
        container[key] = torch.zeros(t.numel() * 2, dtype=t.dtype)[:t.numel()].view(t.shape)
    elif kind == 'alias':   # one tensor under two names of the same shape, where there are two
        same = [(c, k) for c, k in tensors if c[k].shape == t.shape and not (c is container and k == key)]
        if same:
            c, k = rng.choice(same)
            c[k] = t
    else:   # a dense, non-contiguous layout of the same shape: must still load
        container[key] = t.transpose(0, -1).contiguous().transpose(0, -1) if t.ndim > 1 else t
    return hp.write_tree(tree), kind


def set_state(rng: random.Random, tree) -> tuple[bytes, str]:
    module, name = rng.choice(sorted(key for key in _SNAPSHOT_GLOBALS))
    target = hp.glob(module, name)
    states = [b'}' + hp.text('dtype') + hp.glob('torch', 'int8') + b's', hp.tup(hp.NONE, b'}' + hp.text(
        '__defaults__') + hp.tup(hp.TRUE) + b's'), hp.NONE, b'}' + hp.text('__setstate__') + hp.NONE + b's']
    kind = rng.choice(('build', 'setitems', 'append', 'additems'))
    opcodes = {'build': target + rng.choice(states) + b'b', 'setitems': target + b'(' + hp.NONE + hp.NONE + b'u',
               'append': target + hp.NONE + b'a', 'additems': target + b'(' + hp.NONE + b'\x90'}[kind]
    return _splice(rng, tree, opcodes), f'{kind}-{module}.{name}'


def budget(rng: random.Random, tree) -> tuple[bytes, str]:
    """Issue 32: calls of copying functions on one memoized value, far over the budget or well under it, and the
    other shapes of work the pre-scan bounds (unfolded size, long integers, late fills)."""
    kind = rng.choice(('encode', 'frombuffer', 'load_from_bytes', 'easydict', 'size', 'set', 'frozenset', 'unfold',
                       'shape', 'late'))
    over = rng.random() < 0.6
    if kind == 'unfold':
        make = lambda base: hp.unfolding_bomb(5 if over else 2, 40 if over else 3, base)   # noqa: E731
    elif kind == 'shape':
        make = lambda base: hp.shape_bomb(rng.choice((9, 11, 40_000)), rng.randint(1, 31), base)   # noqa: E731
    elif kind == 'late':
        make = lambda base: hp.late_fill(rng.randint(1, 50), base)   # noqa: E731
    else:
        size = (20_000 if over else rng.choice((2_000, 20_000))) // (1 if kind in ('encode', 'frombuffer',
                                                                                     'load_from_bytes') else 4)
        calls = rng.randint(300, 600) if over else rng.randint(1, 3)   # over: some 5 times the budget
        make = lambda base: hp.copy_bomb(kind, size, calls, base)   # noqa: E731
    return _splice(rng, tree, make), kind if kind in ('shape', 'late') else f'{kind}-{"over" if over else "under"}'


_DESCRS = ("'<f4'", "'>f4'", "'<f8'", "'<f2'", "'<i4'", "'|u1'", "'|b1'", "'<c8'", "'<M8[s]'", "'<m8[s]'", "'|O'",
           "'|V8'", "'<U3'", "'|S4'", "'x'", "[('a', '<f4')]", "'<f4' + 'x'")


def _npy(rng: random.Random, descr: str, shape, fortran, data: bytes) -> bytes:
    text = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    if rng.random() < 0.15:   # a byte of the header text changed
        pos = rng.randrange(len(text))
        text = text[:pos] + chr(rng.randrange(32, 127)) + text[pos + 1:]
    text += ' ' * (63 - (len(text) + 10) % 64) + '\n'
    version = rng.choice((1, 1, 1, 2, 3, 9))
    size = struct.pack('<H', len(text)) if version == 1 else struct.pack('<I', len(text))
    return b'\x93NUMPY' + bytes([version, 0]) + size + text.encode('latin1') + data


def npz_header(rng: random.Random, arrays: dict, key: str) -> tuple[bytes, str]:
    """An .npz of `arrays` whose `key` member has a changed header, data, or zip entry."""
    descr = rng.choice(_DESCRS)
    shape = rng.choice([(1, NUM_WS, W_DIM), (3, W_DIM), (W_DIM,), (2 ** 40, W_DIM), (), (1,) * 9, (0, W_DIM),
                        "(-1, 3)", (1, NUM_WS, W_DIM + 1), (2 ** 22, W_DIM), arrays[key].shape, "'x'"])
    count = 1
    for n in (shape if isinstance(shape, tuple) else ()):
        count *= n
    size = min(count * 4, 1 << 16)
    data = bytes(size + rng.choice((0, 0, 0, -4, 4))) if size >= 4 else b''
    members = []
    for name, value in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, value)
        members.append([f'{name}.npy', buffer.getvalue(), 0, 0, None])
    victim = next(m for m in members if m[0] == f'{key}.npy')
    if rng.random() < 0.6:   # else the header stays as numpy wrote it, and only the zip entry may change
        victim[1] = _npy(rng, descr, shape, rng.choice((False, True, 'None')), data)
    else:
        descr = shape = 'as written'
    entry = rng.choice(('plain', 'plain', 'deflated', 'deflated', 'encrypted', 'method', 'crc'))
    if entry == 'encrypted':
        victim[3] = 1
    elif entry == 'method':
        victim[2] = rng.choice((1, 6, 14, 97, 99))
    elif entry == 'crc':
        victim[4] = zlib.crc32(victim[1]) ^ 1
    buffer = io.BytesIO()
    if entry == 'deflated':
        with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as z:
            for m in members:
                z.writestr(m[0], m[1])
        blob = buffer.getvalue()
    else:
        blob = _zip_bytes([tuple(m) for m in members])
    if rng.random() < 0.1:
        blob = blob[:rng.randrange(1, len(blob))]
    return blob, f'{descr}-{shape}-{entry}'


def _zip_bytes(members: list) -> bytes:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        bombs.write_zip(os.path.join(tmp, 'x.npz'), members)
        with open(os.path.join(tmp, 'x.npz'), 'rb') as f:
            return f.read()


_SIZES = (0, 1, 2, 17, 255, 16000, 65535, 1 << 20, (1 << 31) - 1, (1 << 32) - 1)


def image_header(rng: random.Random, images: dict) -> tuple[bytes, str]:
    """A good image of some format with its width/height (and for PNG depth and colour type) changed in the
    header, or a few bytes flipped."""
    fmt = rng.choice(sorted(images))
    data = bytearray(images[fmt])
    w, h = rng.choice(_SIZES), rng.choice(_SIZES)
    if fmt == 'PNG' and rng.random() < 0.8:
        struct.pack_into('>II', data, 16, w, h)
        if rng.random() < 0.3:
            data[24], data[25] = rng.choice((1, 2, 4, 8, 16, 3)), rng.choice((0, 2, 3, 4, 6, 7))
        data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
    elif fmt == 'BMP' and rng.random() < 0.8:
        struct.pack_into('<ii', data, 18, w & 0x7FFFFFFF, rng.choice((h & 0x7FFFFFFF, -(h & 0x7FFFFFFF))))
    elif fmt == 'GIF' and rng.random() < 0.8:
        struct.pack_into('<HH', data, 6, w & 0xFFFF, h & 0xFFFF)
    elif fmt == 'JPEG' and rng.random() < 0.8 and data.find(b'\xff\xc0') > 0:
        struct.pack_into('>HH', data, data.find(b'\xff\xc0') + 5, h & 0xFFFF, w & 0xFFFF)
    else:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(min(len(data), 64))] = rng.randrange(256)
        w = h = 'flip'
    return bytes(data), f'{fmt}-{w}x{h}'


def mechanism_cases(folder, sources: dict, seed: int, per_mechanism: int) -> tuple[list, dict]:
    """([(mode, path, mechanism, detail)], good files by mode) for the five mechanisms of issue 25 and the
    budget of issue 32."""
    from editing.directions import Directions, save_directions
    rng = random.Random(seed + 25)
    trees = {name: hp.read_tree(str(path)) for name, path in sources.items() if name.endswith('.pkl')}
    ws = np.random.RandomState(seed).randn(1, NUM_WS, W_DIM).astype(np.float32)
    np.savez(folder / 'good-ws.npz', w=ws)
    directions = Directions(vectors=np.eye(2, W_DIM, dtype=np.float32), names=['a', 'b'], layer_start=0,
                            layer_stop=NUM_WS, scale=1.0, method='fuzz', num_ws=NUM_WS)
    save_directions(folder / 'good-directions.npz', directions)
    direction_arrays = dict(np.load(folder / 'good-directions.npz'))
    pixels = np.random.RandomState(seed).randint(0, 255, [20, 30, 3]).astype(np.uint8)
    images = {}
    for fmt in ('PNG', 'JPEG', 'BMP', 'GIF', 'TIFF', 'WEBP'):
        buffer = io.BytesIO()
        PIL.Image.fromarray(pixels).save(buffer, format=fmt)
        images[fmt] = buffer.getvalue()
    (folder / 'good.png').write_bytes(images['PNG'])
    good = {'snapshot': sources['own_stylegan2.pkl'], WS_MODE: folder / 'good-ws.npz',
            'directions': folder / 'good-directions.npz', 'image': folder / 'good.png', 'upload': folder / 'good.png'}
    cases = []
    for i in range(per_mechanism):
        tree = trees[rng.choice(sorted(trees))]
        made = [('snapshot', 'nesting', *nesting(rng, tree)), ('snapshot', 'storages', *storages(rng, tree)),
                ('snapshot', 'set_state', *set_state(rng, tree)), ('snapshot', 'budget', *budget(rng, tree))]
        if rng.random() < 0.5:
            made.append((WS_MODE, 'npz_header', *npz_header(rng, {'w': ws}, 'w')))
        else:
            key = rng.choice(('directions', 'names', 'num_ws', 'scale', 'layer_start'))
            made.append(('directions', 'npz_header', *npz_header(rng, direction_arrays, key)))
        made.append((rng.choice(('image', 'upload')), 'image_header', *image_header(rng, images)))
        for mode, mechanism, blob, detail in made:
            suffix = {'snapshot': '.pkl', 'image': '.png', 'upload': '.png'}.get(mode, '.npz')
            path = folder / f'm{len(cases):04d}_{mechanism}{suffix}'
            path.write_bytes(blob)
            cases.append((mode, path, mechanism, detail))
    return cases, good


def run_fuzz(tmp_path, fixtures_dir, seed: int, own_cases: int, fixture_cases: int, per_mechanism: int) -> dict:
    paths = make_cases(tmp_path, fixtures_dir, seed, own_cases, fixture_cases)
    sources = {p.name: p for p in tmp_path.iterdir() if p.name.startswith('own')}
    mechanisms, good = mechanism_cases(tmp_path, sources, seed, per_mechanism)
    start = time.perf_counter()
    report = hp.run_worker([('snapshot', p) for p in paths] + [(mode, path) for mode, path, _, _ in mechanisms],
                           warm_up=tmp_path / 'own_stylegan3.pkl', good=good, timeout=1800)
    seconds = time.perf_counter() - start
    assert report['rc'] == 0, f'worker died (rc {report["rc"]}): {report["stderr"]}'
    assert len(report['cases']) == len(paths) + len(mechanisms)
    bad = [c for c in report['cases'] if c['outcome'] not in ('loaded', 'refused') or '\n' in c['message']
           or 'MemoryError' in c['message'] or c.get('good') != 'same']
    assert not bad, [(c['path'][-30:], c['outcome'], c['type'], c.get('good'), c['message'][-300:]) for c in bad[:6]]
    assert not report['canary'], report['canary']
    assert not (tmp_path / 'FUZZ_CANARY').exists() and not os.path.exists(os.path.join(hp.REPO, 'FUZZ_CANARY'))
    injected = [c for c in report['cases'] if 'inject' in c['path']]
    assert all(c['outcome'] == 'refused' and 'posix.system' in c['message'] for c in injected)
    by_mechanism = {}
    for (_, _, mechanism, detail), case in zip(mechanisms, report['cases'][len(paths):]):
        by_mechanism.setdefault(mechanism, []).append((detail, case))
        if mechanism == 'set_state':   # never allowed on a global, whatever it is
            assert case['outcome'] == 'refused', (detail, case['message'])
        if mechanism == 'nesting' and int(''.join(filter(str.isdigit, detail))) > 200:
            assert case['outcome'] == 'refused' and 'nested' in case['message'], (detail, case['message'])
        if mechanism == 'storages' and detail in ('expand', 'overlap', 'offset', 'larger'):
            assert case['outcome'] == 'refused' and 'storage' in case['message'], (detail, case['message'])
        if mechanism == 'budget' and detail.endswith('-over'):
            assert case['outcome'] == 'refused' and 'size allows' in case['message'], (detail, case['message'])
        if mechanism == 'budget' and detail.startswith(('shape', 'late')):
            assert case['outcome'] == 'refused', (detail, case['message'])
    counts = {o: sum(c['outcome'] == o for c in report['cases']) for o in ('loaded', 'refused')}
    figures = dict(cases=len(report['cases']), seconds=round(seconds, 1), max_rss_mb=report['max_rss_mb'], **counts,
                   **{m: f'{sum(c["outcome"] == "loaded" for _, c in v)} loaded of {len(v)}'
                      for m, v in by_mechanism.items()})
    print(f'\nfuzz figures: {figures}')
    assert report['max_rss_mb'] < 1024, figures
    assert counts['refused'] > len(report['cases']) // 3   # the mutations do reach the checks
    assert all(any(c['outcome'] == 'loaded' for _, c in by_mechanism[m]) for m in ('storages', 'npz_header', 'image_header'))
    return figures


def test_fuzzed_snapshots_load_or_fail_on_one_line(tmp_path, fixtures_dir):
    run_fuzz(tmp_path, fixtures_dir, seed=0, own_cases=160, fixture_cases=16, per_mechanism=20)


@pytest.mark.slow
def test_fuzzed_snapshots_many_seeds(tmp_path, fixtures_dir):
    for seed in (1, 2, 3):
        folder = tmp_path / f'seed{seed}'
        folder.mkdir()
        run_fuzz(folder, fixtures_dir, seed=seed, own_cases=600, fixture_cases=60, per_mechanism=150)
