"""A snapshot written by an earlier version of the training code still loads and continues exactly.

tests/fixtures/old_snapshot_4a225a6 holds `network-snapshot-000000.044.pkl`, written at commit 4a225a6
(2026-12-02, before the training loop was restructured) by a run of 11 steps: stylegan2, 32 px, 8 rectangles
(conftest's `rectangles(8, 32)`, given as the relative `--data=data`), batch 4, cbase 256, cmax 8,
z_dim = w_dim = 16, map depth 1, ADA with target 0 and ada_kimg 0.05 (so that p moves), tick 0.008 kimg.
`continuation.json` is what that same code made of it with `train.py --resume ... --kimg=0.068`: the
statistics of the three ticks after the resume and, per tensor, the sum and sum of squares of the final
weights. The continuation passes a path-length step, an R1 step and two ADA adjustments.

On the machine that wrote the fixture the continuation is bit-identical; the tolerances below only allow
for another CPU's rounding. A resume that drops the optimizer moments, the augmentation stream or the
path-length mean moves some of them by 2e-5 (relative) or far more.
"""
import json
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

import training.augment   # noqa: F401 - registers the AugmentPipe family, as the training code does
from networks.snapshot import load_snapshot

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'old_snapshot_4a225a6'
SNAPSHOT = 'network-snapshot-000000.044.pkl'


def test_generator_of_an_old_snapshot_loads_and_generates():
    data = load_snapshot(FIXTURE / SNAPSHOT)
    G = data['G_ema']
    assert (G.z_dim, G.c_dim, G.img_resolution) == (16, 0, 32)
    img = G(torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(0)), None, noise_mode='const')
    assert img.shape == (2, 3, 32, 32) and bool(torch.isfinite(img).all())
    assert data['training_state']['counters']['cur_nimg'] == 44


def test_old_snapshot_resumes_and_continues_as_the_old_code_did(tmp_path, rectangles):
    shutil.copytree(rectangles(8, 32), tmp_path / 'data')
    (tmp_path / 'run').mkdir()
    shutil.copy(FIXTURE / SNAPSHOT, tmp_path / 'run' / SNAPSHOT)
    r = subprocess.run([sys.executable, str(REPO / 'train.py'), '--outdir', '.', '--resume', f'run/{SNAPSHOT}',
                        '--kimg=0.068'], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'resumed exactly from run/{SNAPSHOT} at 0.044 kimg' in r.stdout

    reference = json.loads((FIXTURE / 'continuation.json').read_text())
    ticks = []
    for line in open(tmp_path / 'run' / 'stats.jsonl'):
        record = json.loads(line)
        ticks.append({k: v['mean'] for k, v in record.items() if k.split('/')[0] in ('Loss', 'Progress')})
    assert [t['Progress/tick'] for t in ticks] == [6, 7, 8]
    for got, want in zip(ticks, reference['ticks']):
        assert sorted(got) == sorted(want)
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-7), (got['Progress/tick'], name)

    final = load_snapshot(tmp_path / 'run' / 'network-snapshot-000000.068.pkl')
    assert final['training_state']['counters']['cur_nimg'] == 68
    assert float(final['augment_pipe'].p) == pytest.approx(reference['augment_p'], abs=1e-7)
    assert float(final['training_state']['pl_mean']) == pytest.approx(reference['pl_mean'], rel=1e-5)
    weights = {f'{key}.{name}': [float(t.double().sum()), float(t.double().square().sum())]
               for key in ('G', 'D', 'G_ema') for name, t in final[key].state_dict().items()}
    assert sorted(weights) == sorted(reference['weights'])
    for name, want in reference['weights'].items():
        assert weights[name] == pytest.approx(want, rel=1e-5, abs=1e-6), name
