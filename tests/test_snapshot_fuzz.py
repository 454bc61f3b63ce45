"""Fuzzing the snapshot loader: seeded mutations of NVIDIA-format fixtures and of our own snapshots and .pt
exports (byte flips, truncations, swapped opcodes, and structural mutations of the unpickled tree: kwargs,
dtypes, shapes, types), all loaded in one worker process under a memory cap with an audit-hook canary.

Every case must end either loaded or refused with a one-line SnapshotError: never a signal, never another
exception type, never a MemoryError, never code run; the worst resident memory is reported.
"""
import copy
import os
import pickletools
import random
import time

import numpy as np
import pytest
import torch

import hostile_pickles as hp
from networks.snapshot import export_pt, save_snapshot
from test_snapshot import tiny_networks

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


def run_fuzz(tmp_path, fixtures_dir, seed: int, own_cases: int, fixture_cases: int) -> dict:
    paths = make_cases(tmp_path, fixtures_dir, seed, own_cases, fixture_cases)
    start = time.perf_counter()
    report = hp.run_worker(paths, warm_up=tmp_path / 'own_stylegan3.pkl', timeout=1800)
    seconds = time.perf_counter() - start
    assert report['rc'] == 0, f'worker died (rc {report["rc"]}): {report["stderr"]}'
    assert len(report['cases']) == len(paths)
    bad = [c for c in report['cases'] if c['outcome'] not in ('loaded', 'refused') or '\n' in c['message']
           or 'MemoryError' in c['message']]
    assert not bad, [(c['outcome'], c['type'], c['message'][-300:]) for c in bad[:6]]
    assert not report['canary'], report['canary']
    assert not (tmp_path / 'FUZZ_CANARY').exists() and not os.path.exists(os.path.join(hp.REPO, 'FUZZ_CANARY'))
    injected = [c for c in report['cases'] if 'inject' in c['path']]
    assert all(c['outcome'] == 'refused' and 'posix.system' in c['message'] for c in injected)
    counts = {o: sum(c['outcome'] == o for c in report['cases']) for o in ('loaded', 'refused')}
    figures = dict(cases=len(paths), seconds=round(seconds, 1), max_rss_mb=report['max_rss_mb'], **counts)
    print(f'\nfuzz figures: {figures}')
    assert report['max_rss_mb'] < 1024, figures
    assert counts['refused'] > len(paths) // 3   # the mutations do reach the checks
    return figures


def test_fuzzed_snapshots_load_or_fail_on_one_line(tmp_path, fixtures_dir):
    run_fuzz(tmp_path, fixtures_dir, seed=0, own_cases=240, fixture_cases=16)


@pytest.mark.slow
def test_fuzzed_snapshots_many_seeds(tmp_path, fixtures_dir):
    for seed in (1, 2, 3):
        folder = tmp_path / f'seed{seed}'
        folder.mkdir()
        run_fuzz(folder, fixtures_dir, seed=seed, own_cases=600, fixture_cases=60)
