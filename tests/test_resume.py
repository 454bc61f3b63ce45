"""Kill-and-resume: a run stopped any number of times (kill -9 at random moments, in the middle of a
snapshot write, Ctrl-C) and resumed each time ends exactly as the run that never stopped: the same
ticks in stats.jsonl, the same snapshots, bit-identical weights. Plus the resume rules of train.py."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from networks.snapshot import load_snapshot
from training.run_dir import latest_run_dir, list_snapshots

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--cfg=stylegan3-t', '--gpus=1', '--batch=4', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=1',
        '--metrics=none', '--workers=0', '--mbstd-group=2', '--snap=1']


@pytest.fixture(scope='module')
def data32(rectangles):
    return rectangles(16, 32)


def command(*args):
    return [sys.executable, os.path.join(REPO, 'train.py'), *map(str, args)]


def train(*args):
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=600)


def ticks(run_dir):
    lines = open(os.path.join(run_dir, 'stats.jsonl')).read().splitlines()
    return [(r['Progress/tick']['mean'], round(r['Progress/kimg']['mean'], 6)) for r in map(json.loads, lines)]


def weights(snapshot):
    data = load_snapshot(snapshot)
    return {f'{k}.{n}': t for k in ('G', 'D', 'G_ema') for n, t in data[k].state_dict().items()}


def events(run_dir):
    """(step, tags) of the TensorBoard events of every start of the run, in order: each tick once."""
    from training.tensorboard import read_scalars
    files = sorted(n for n in os.listdir(run_dir) if n.startswith('events.out.tfevents.'))
    return sorted((step, sorted(values)) for n in files for step, _, values in read_scalars(os.path.join(run_dir, n)))


def outcome(run_dir):
    names = sorted(os.listdir(run_dir))
    return dict(ticks=ticks(run_dir), events=events(run_dir),
                snapshots=[n for n in names if n.startswith('network-snapshot-')],
                fakes=[n for n in names if n.startswith('fakes')], temporary=[n for n in names if n.startswith('.')])


def assert_same_run(straight, resumed):
    a, b = outcome(straight), outcome(resumed)
    assert b['temporary'] == []
    assert a == b
    wa, wb = weights(list_snapshots(straight)[-1]), weights(list_snapshots(resumed)[-1])
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def starts(outdir):
    return sum(open(p).read().count('training for') for p in outdir.glob('*/log.txt'))


def interrupt_and_resume(outdir, args, events, seed):
    """Run `args` in `outdir`, interrupting it as `events` say ('write': kill -9 while a snapshot is
    being written; 'random': kill -9 at a random moment; 'ctrl-c': SIGINT and a clean exit), resuming
    after each; returns the outputs of all starts."""
    rng = random.Random(seed)
    outputs = []
    for event in list(events) + [None]:
        run = latest_run_dir(str(outdir))
        started = starts(outdir)
        cmd = command('--outdir', outdir, '--resume=latest') if run else command('--outdir', outdir, *args)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if event == 'write':
            deadline = time.time() + 300
            while proc.poll() is None and time.time() < deadline:
                if any(outdir.glob('*/.network-snapshot-*')):
                    proc.kill()
                    break
                time.sleep(0.002)
        elif event == 'random':
            time.sleep(rng.uniform(1, 3))   # startup takes a second or two: early kills hit it too
            proc.kill()
        elif event == 'ctrl-c':   # once this start trains (its 'training for' line is in log.txt)
            deadline = time.time() + 300
            while proc.poll() is None and time.time() < deadline and starts(outdir) <= started:
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 0.2))   # the start has a second or more of training left
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=600)
        outputs.append(out)
        if event in (None, 'ctrl-c') and proc.returncode is not None:
            assert proc.returncode == (130 if event else 0), out
            assert 'Traceback' not in out, out
    return outputs


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, data32):
    args = ['--data', data32, *TINY, '--kimg=0.06', '--tick=0.012']
    straight = subprocess.Popen(command('--outdir', tmp_path / 'a', *args), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)   # alongside: the machine has two cores
    outputs = interrupt_and_resume(tmp_path / 'b', args, ['write', 'random', 'ctrl-c'], seed=1)
    assert 'interrupted: ' in outputs[2], outputs[2]   # the Ctrl-C came while the run trained
    out, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, out
    a, b = latest_run_dir(str(tmp_path / 'a')), latest_run_dir(str(tmp_path / 'b'))
    assert [t for t, _ in ticks(a)] == list(range(len(ticks(a))))
    assert_same_run(a, b)

    # A finished run resumed says so and does nothing.
    before = {n: os.path.getmtime(os.path.join(b, n)) for n in os.listdir(b)}
    again = train('--outdir', tmp_path / 'b', '--resume=latest')
    assert again.returncode == 0, again.stderr
    assert 'the run is finished' in again.stdout
    assert {n: os.path.getmtime(os.path.join(b, n)) for n in os.listdir(b)} == before


@pytest.mark.slow
def test_many_random_kills_equal_uninterrupted_run(tmp_path, data32):
    args = ['--data', data32, *TINY, '--kimg=0.06', '--tick=0.012', '--aug=fixed', '--p=0.5']
    straight = train('--outdir', tmp_path / 'a', *args)
    assert straight.returncode == 0, straight.stdout + straight.stderr
    events = ['random', 'write', 'random', 'ctrl-c', 'random', 'write', 'ctrl-c', 'random']
    interrupt_and_resume(tmp_path / 'b', args, events, seed=2)
    assert_same_run(latest_run_dir(str(tmp_path / 'a')), latest_run_dir(str(tmp_path / 'b')))


def test_generator_state_from_another_kind_of_device_continues_reproducibly():
    from training.resume import continue_generator
    same = torch.Generator().manual_seed(5)
    torch.rand(3, generator=same)
    here = torch.Generator()
    assert continue_generator(here, same.get_state()) is None   # same kind: exactly where it stopped
    assert torch.equal(torch.rand(4, generator=here), torch.rand(4, generator=same))
    cuda_like = torch.arange(16, dtype=torch.uint8)   # a CUDA generator keeps 16 bytes (seed, offset)
    a, b = torch.Generator(), torch.Generator()
    note = continue_generator(a, cuda_like)
    assert note and 'another kind of device' in note
    continue_generator(b, cuda_like)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    continue_generator(b, cuda_like + 1)
    assert not torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_snapshot_written_on_a_gpu_continues_on_the_cpu(tmp_path, data32):
    # A GPU run's snapshot holds a CUDA generator's state, which a CPU generator cannot take; this
    # happened when a CPU-trained garment model was continued on an H200 ("RNG state is wrong size").
    from networks.snapshot import save_snapshot
    args = ['--data', data32, *TINY, '--kimg=0.008', '--tick=0.004', '--aug=fixed', '--p=0.5']
    first = train('--outdir', tmp_path / 'a', *args)
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir = latest_run_dir(str(tmp_path / 'a'))
    snapshot = list_snapshots(run_dir)[0]
    data = load_snapshot(snapshot)
    data['training_state']['augment_gen'] = torch.arange(16, dtype=torch.uint8)
    results = []
    for name in ('b', 'c'):   # twice from the same doctored snapshot: the continuation is reproducible
        os.makedirs(tmp_path / name / '00000-gpu')
        copy = str(tmp_path / name / '00000-gpu' / os.path.basename(snapshot))
        save_snapshot(copy, data)
        resumed = train('--outdir', tmp_path / name, f'--resume={copy}', '--kimg=0.016')
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert 'another kind of device' in resumed.stdout
        results.append(weights(list_snapshots(os.path.dirname(copy))[-1]))
    for key in results[0]:
        assert torch.equal(results[0][key], results[1][key]), key
