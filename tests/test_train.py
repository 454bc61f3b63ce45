"""train.py end to end on CPU: a tiny run, exact resume (also after kill -9 and Ctrl-C), multi-process
equivalence, transfer learning from an official pickle."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import PIL.Image
import pytest
import torch

from networks.snapshot import find_latest_snapshot, load_snapshot
from torch_utils import distributed
from training import training_loop as tl
from training.augment import AugmentPipe, augment_kwargs_for
from training.loss import LossOptions, StyleGANLoss

from helpers.training import run_dir, state_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--gpus=1', '--batch=4', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=1', '--metrics=none',
        '--workers=0', '--mbstd-group=2']


@pytest.fixture(scope='module')
def tiny_data(rectangles):
    return rectangles(32, 16)


def train(*args, cwd=None, wait=True):
    cmd = [sys.executable, os.path.join(REPO, 'train.py'), *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_tiny_run_trains_and_generates(tmp_path, tiny_data):
    r = train('--outdir', tmp_path / 'runs', '--cfg=stylegan2', '--data', tiny_data, *TINY, '--kimg=0.2', '--tick=0.1')
    assert r.returncode == 0, r.stdout + r.stderr
    rd = run_dir(tmp_path / 'runs')
    assert os.path.basename(rd).startswith('00000-stylegan2-')
    names = set(os.listdir(rd))
    assert {'training_options.json', 'log.txt', 'stats.jsonl', 'reals.png', 'fakes_init.png'} <= names
    ticks = [json.loads(line) for line in open(os.path.join(rd, 'stats.jsonl'))]
    assert len(ticks) >= 3
    for tick in ticks:
        for key in ('Loss/G/loss', 'Loss/D/loss', 'Loss/scores/real', 'Loss/scores/fake', 'Timing/sec_per_kimg'):
            assert np.isfinite(tick[key]['mean']), key
    assert ticks[-1]['Progress/kimg']['mean'] >= 0.2
    assert ticks[-1]['Loss/scores/real']['mean'] > ticks[-1]['Loss/scores/fake']['mean']
    assert_events_match_stats(rd)

    out = tmp_path / 'out'
    g = subprocess.run([sys.executable, os.path.join(REPO, 'gen_images.py'), '--network', rd, '--seeds', '0-1',
                        '--outdir', out], capture_output=True, text=True)
    assert g.returncode == 0, g.stderr
    assert np.asarray(PIL.Image.open(out / 'seed0000.png')).shape == (16, 16, 3)


def assert_events_match_stats(rd):
    """TensorBoard events beside stats.jsonl: one event per tick, at its image count, with every mean."""
    assert not assert_events_match_stats_and_metrics(rd)


def assert_events_match_stats_and_metrics(rd):
    """As assert_events_match_stats; returns the metric events (Metrics/...), which it leaves out."""
    from training.tensorboard import read_scalars
    ticks = [json.loads(line) for line in open(os.path.join(rd, 'stats.jsonl'))]
    files = sorted(n for n in os.listdir(rd) if n.startswith('events.out.tfevents.'))
    assert files, os.listdir(rd)
    every = [e for name in files for e in read_scalars(os.path.join(rd, name))]
    metrics = [e for e in every if all(tag.startswith('Metrics/') for tag in e[2])]
    events = [e for e in every if e not in metrics]
    assert [step for step, _, _ in events] == [round(t['Progress/kimg']['mean'] * 1000) for t in ticks]
    for (_, wall, values), tick in zip(events, ticks):
        assert set(values) == {k for k in tick if k != 'timestamp'}
        for name, value in values.items():
            assert value == pytest.approx(tick[name]['mean'], rel=1e-6, abs=1e-6), name
    return metrics


def test_a_resumed_run_drops_the_events_it_will_write_again(tmp_path):
    from training.run_dir import tidy_run_dir
    from training.tensorboard import EventWriter, read_scalars
    w = EventWriter(str(tmp_path))
    for step in (8, 16, 24):
        w.scalars(step, {'Loss/G/loss': step / 10})
    tidy_run_dir(str(tmp_path), resume=None, next_tick=2, cur_nimg=16)
    assert [(step, values) for step, _, values in read_scalars(w.path)] == [(8, {'Loss/G/loss': pytest.approx(0.8)}),
                                                                           (16, {'Loss/G/loss': pytest.approx(1.6)})]
    assert open(w.path, 'rb').read().count(b'brain.Event:2') == 1


def test_tensorboard_reads_the_events_file(tmp_path):
    # Our own encoder, checked against TensorBoard's reader where it is installed (the GPU machine has it).
    pytest.importorskip('tensorboard', reason='the cross-check needs tensorboard (pip install tensorboard)')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from training.tensorboard import EventWriter
    w = EventWriter(str(tmp_path))
    w.scalars(8, {'Loss/G/loss': 1.5, 'Progress/kimg': 0.008})
    w.scalars(504, {'Loss/G/loss': -0.25, 'Metrics/fid50k_full': 12.5})
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars('Loss/G/loss')] == [(8, 1.5), (504, -0.25)]
    assert [(e.step, e.value) for e in acc.Scalars('Metrics/fid50k_full')] == [(504, 12.5)]


def test_conditional_run_records_class_names(tmp_path, monkeypatch):
    # The snapshot remembers the dataset's class names, so a user can ask for a jacket by name.
    from data.synthetic_garments import CLASSES
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    r = train('--outdir', tmp_path / 'runs', '--cfg=stylegan2', '--data=synthetic:garments?n=24&resolution=16',
              '--cond=1', *TINY, '--kimg=0.008', '--tick=0.004')
    assert r.returncode == 0, r.stdout + r.stderr
    snapshot = find_latest_snapshot(str(tmp_path / 'runs'))
    assert load_snapshot(snapshot)['training_set_kwargs']['class_names'] == list(CLASSES)
    g = subprocess.run([sys.executable, os.path.join(REPO, 'gen_images.py'), '--network', snapshot, '--seeds', '0',
                        '--class', 'jacket', '--outdir', tmp_path / 'out'], capture_output=True, text=True)
    assert g.returncode == 0, g.stderr
    assert (tmp_path / 'out' / 'seed0000.png').is_file()

def test_ctrl_c_writes_snapshot_and_resume_continues(tmp_path, tiny_data):
    """Ctrl-C in the middle of a tick: a snapshot outside the schedule that keeps the tick open; the
    resumed run closes that tick once, timed over both parts (sec/kimg right after the resume)."""
    proc = train('--outdir', tmp_path, '--cfg=stylegan3-t', '--data', tiny_data, *TINY, '--kimg=0.1', '--tick=0.05',
                 '--snap=1000', wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob('*/stats.jsonl')):   # tick 0 (one step) is done
        time.sleep(0.05)
    # Tick 1 is 13 steps: 2 s on a quiet 2-core CPU, 15 s on a loaded one. Signal early in it.
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out   # saved, but not a finished run: `train.py ... && next` stops here
    assert 'interrupted: ' in out and 'Traceback' not in out and 'Aborted' not in out
    rd = run_dir(tmp_path)
    snap = find_latest_snapshot(rd)
    counters = load_snapshot(snap)['training_state']['counters']
    assert counters['cur_tick'] == 1 and 0 < counters['cur_nimg'] < 54, counters   # inside tick 1
    # "Ctrl-C finishes the current step": the snapshot is one step (batch 4) after the step the signal hit
    asked = float(re.search(r'stop asked during the step from ([\d.]+) kimg', out).group(1))
    assert counters['cur_nimg'] == round(asked * 1000) + 4, (asked, counters)
    assert counters['tick_seconds'] > 0
    r = train('--outdir', tmp_path, '--resume=latest', '--kimg=0.06')
    assert r.returncode == 0, r.stdout + r.stderr
    assert not os.path.exists(snap) or snap == find_latest_snapshot(rd)   # the Ctrl-C snapshot is retired
    ticks = [json.loads(line) for line in open(os.path.join(rd, 'stats.jsonl'))]
    assert [t['Progress/tick']['mean'] for t in ticks] == [0, 1, 2]
    assert_events_match_stats(rd)   # the events of both parts: each tick once
    tick1 = ticks[1]
    assert tick1['Timing/sec_per_tick']['mean'] > counters['tick_seconds']
    kimg = tick1['Progress/kimg']['mean'] - ticks[0]['Progress/kimg']['mean']
    assert tick1['Timing/sec_per_kimg']['mean'] == pytest.approx(tick1['Timing/sec_per_tick']['mean'] / kimg, rel=1e-3)


def _phase_gradients(rank, world, init_file, out):
    """One step of every phase on a fixed batch, with augmentation at p=1 and the default minibatch-std
    group of 4, through the loop's own run_phase; rank r takes samples r, r+world, ... as the loop does."""
    distributed.init(rank, world, init_file)
    torch.manual_seed(rank)   # per-rank global RNG, as in the loop: augmentation must not depend on it
    opts = tl.TrainingOptions(run_dir='-', cfg='stylegan3-t', data='-', batch=8, batch_gpu=8 // world, gamma=1,
                              cbase=256, cmax=16, z_dim=16, w_dim=16, map_depth=1)
    torch.manual_seed(0)
    G, D = tl.build_networks(opts, 16, 3, 0)
    torch.manual_seed(rank)
    pipe = AugmentPipe(**augment_kwargs_for('bgc'))
    pipe.p.fill_(1)
    gen = torch.Generator().manual_seed(1)
    reals, z, c = torch.randn(8, 3, 16, 16, generator=gen), torch.randn(8, 16, generator=gen), torch.zeros(8, 0)
    mine = slice(rank, 8, world)
    loss = StyleGANLoss(G, D, LossOptions(r1_gamma=1), augment_pipe=pipe)
    augment_gen = torch.Generator().manual_seed(2)
    grads = {}
    for name, net in (('Gboth', G), ('Dmain', D), ('Dreg', D)):
        phase = tl.Phase(name, net, torch.optim.SGD(net.parameters(), lr=0), 1)
        tl.run_phase(phase, loss, reals[mine], c[mine], z[mine], c[mine], rounds=1, cur_nimg=0,
                     augment_pipe=pipe, augment_gen=augment_gen)
        grads[name] = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    grads['w_avg'] = G.mapping.w_avg.clone()
    if rank == 0:
        torch.save(grads, out)
    if world > 1:
        distributed.end_spawned_rank()


def test_two_gloo_processes_compute_one_process_gradients(tmp_path):
    """One process and two processes see the same images in the same minibatch-std groups with the same
    augmentations (p=1 here), so they compute the same gradients. (Accumulating rounds, --batch-gpu
    below batch/gpus, updates the running averages of G once per round, as NVIDIA's loop does, so
    that is close but not the same.)"""
    _phase_gradients(0, 1, None, tmp_path / 'one.pt')
    torch.multiprocessing.spawn(_phase_gradients, args=(2, str(tmp_path / 'init'), tmp_path / 'two.pt'), nprocs=2)
    one, two = torch.load(tmp_path / 'one.pt'), torch.load(tmp_path / 'two.pt')
    assert torch.allclose(one.pop('w_avg'), two.pop('w_avg'), atol=1e-6)   # running averages see the whole batch
    for phase in one:
        assert one[phase].keys() == two[phase].keys() and len(one[phase]) > 10
        for name, g in one[phase].items():
            assert torch.allclose(g, two[phase][name], rtol=1e-4, atol=1e-5 * g.abs().max().item()), (phase, name)


def test_two_gloo_processes_train_like_one_process(tmp_path, tiny_data):
    """With the defaults (--aug=ada, --mbstd-group=4, --batch-gpu=batch/gpus): the same weights after a
    few Adam steps, up to float noise that Adam's normalised first steps amplify where a gradient is near
    zero; a wrong batch split moves typical weights by ~lr (1e-3). The snapshot's metric runs on both
    processes (each extracts half of the features)."""
    from metrics.standin import save_standin_detectors
    save_standin_detectors(str(tmp_path / 'det'))
    common = ['--cfg=stylegan3-t', '--data', tiny_data, '--batch=8', '--gamma=1', '--cbase=256', '--cmax=16',
              '--map-depth=1', '--metrics=fid16_full', '--detector-dir', tmp_path / 'det', '--workers=0',
              '--kimg=0.016', '--tick=1', '--snap=1']
    one = train('--outdir', tmp_path / 'one', '--gpus=1', *common)
    assert one.returncode == 0, one.stdout + one.stderr
    two = train('--outdir', tmp_path / 'two', '--gpus=2', *common)
    assert two.returncode == 0, two.stdout + two.stderr
    assert 'on 2 process(es)' in open(os.path.join(run_dir(tmp_path / 'two'), 'log.txt')).read()
    fids = [json.loads(open(os.path.join(run_dir(tmp_path / d), 'metric-fid16_full.jsonl')).readlines()[-1])
            ['results']['fid16_full'] for d in ('one', 'two')]
    assert np.isfinite(fids).all() and fids[0] > 0
    rd = run_dir(tmp_path / 'one')   # the metric went to TensorBoard too, and made best.json that :best loads
    metric_events = [(step, v) for step, _, v in assert_events_match_stats_and_metrics(rd)]
    assert [step for step, _ in metric_events] == [8, 16]   # the snapshots of tick 0 and of the end
    assert metric_events[-1][1] == {'Metrics/fid16_full': pytest.approx(fids[0], rel=1e-6)}
    best = json.load(open(os.path.join(rd, 'best.json')))
    assert (best['metric'], best['snapshot']) == ('fid16_full', 'network-snapshot-000000.016.pkl')
    assert 'best so far by fid16_full' in open(os.path.join(rd, 'log.txt')).read()
    assert find_latest_snapshot(rd) == os.path.join(rd, best['snapshot'])
    a, b = state_of(find_latest_snapshot(tmp_path / 'one')), state_of(find_latest_snapshot(tmp_path / 'two'))
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a if k.startswith('D.')])
    assert diff.median() < 1e-5 and diff.max() < 4 * 0.002 * 4


def test_transfer_learning_from_official_pickle(tmp_path, fixtures_dir):
    data = tmp_path / 'data'
    data.mkdir()
    rng = np.random.RandomState(1)
    for i in range(8):
        PIL.Image.fromarray(rng.randint(0, 255, [64, 64, 3]).astype(np.uint8)).save(data / f'{i}.png')
    src = fixtures_dir / 'official_stylegan2_64.pkl'
    r = train('--outdir', tmp_path / 'runs', '--cfg=stylegan2', '--data', data, '--gpus=1', '--batch=4', '--gamma=1',
              '--cbase=2048', '--cmax=64', '--map-depth=2', '--metrics=none', '--workers=0', '--resume', src,
              '--freezed=2', '--kimg=0.008', '--tick=1')
    # The fixture was built with z_dim=w_dim=64; train.py builds 512, so only D and the synthesis convs transfer.
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'transfer learning: copied' in r.stdout
    trained = load_snapshot(find_latest_snapshot(tmp_path / 'runs'))['D']
    official = load_snapshot(src)['D']
    frozen = trained.b64.fromrgb.weight   # layer 0 of D, frozen by --freezed=2
    assert torch.equal(frozen, official.b64.fromrgb.weight)
    assert not torch.equal(trained.b4.out.weight, official.b4.out.weight)


def test_missing_metric_detector_stops_before_training(tmp_path, tiny_data):
    (tmp_path / 'empty').mkdir()
    r = train('--outdir', tmp_path / 'runs', '--cfg=stylegan2', '--data', tiny_data, '--batch=4', '--gamma=1',
              '--metrics=fid50k_full', '--detector-dir', tmp_path / 'empty')
    assert r.returncode != 0
    assert 'inception-2015-12-05.pt' in r.stderr and '--metrics=none' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'runs').exists()


def _ctrl_c_two_processes(tmp_path, tiny_data, ready, how='ctrl-c'):
    """Once `ready(outdir)` holds: 'ctrl-c' as a terminal sends it (to the whole process group), 'term' as
    `kill PID` or a scheduler sends SIGTERM (to the launcher only), 'kill' kill -9 of the launcher."""
    cmd = [sys.executable, os.path.join(REPO, 'train.py'), '--outdir', str(tmp_path), '--cfg=stylegan3-t', '--data',
           str(tiny_data), *[a for a in TINY if a != '--gpus=1'], '--gpus=2', '--kimg=50', '--tick=0.02', '--snap=1000']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not ready(tmp_path):
        time.sleep(0.02)
    if how == 'ctrl-c':
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM if how == 'term' else signal.SIGKILL)
    try:
        out, _ = proc.communicate(timeout=300)   # the ranks hold the pipe too: it ends when every process has
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == {'kill': -signal.SIGKILL, 'term': 128 + signal.SIGTERM, 'ctrl-c': 130}[how], out
    assert 'Traceback' not in out and 'Aborted' not in out and 'KeyboardInterrupt' not in out, out
    assert 'interrupted: ' in out and 'saved' in out, out
    assert find_latest_snapshot(run_dir(tmp_path)) is not None
    deadline = time.time() + 60
    while time.time() < deadline:   # no rank lives on (they closed the pipe; now they must be gone)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError('a training process outlived the launcher')


def test_ctrl_c_early_with_two_processes_is_like_one(tmp_path, tiny_data):
    """Right after the run directory appears (processes still starting): each rank finishes its first
    step, a snapshot is written, exit code 0."""
    _ctrl_c_two_processes(tmp_path, tiny_data, lambda d: bool(list(d.glob('*/training_options.json'))))


@pytest.mark.parametrize('how', ['term', 'kill'])
def test_stopping_the_launcher_stops_every_rank_with_a_snapshot(tmp_path, tiny_data, how):
    """SIGTERM to the launcher alone (kill PID, a cloud preemption) is a Ctrl-C for every rank; kill -9 of the
    launcher makes each rank stop the same way instead of training on as an orphan."""
    _ctrl_c_two_processes(tmp_path, tiny_data, lambda d: bool(list(d.glob('*/stats.jsonl'))), how)


@pytest.mark.slow
def test_ctrl_c_while_two_processes_train_is_like_one(tmp_path, tiny_data):
    _ctrl_c_two_processes(tmp_path, tiny_data, lambda d: bool(list(d.glob('*/stats.jsonl'))))
