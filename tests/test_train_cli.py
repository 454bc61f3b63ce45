"""train.py's checks and resume rules: everything is validated before a run directory exists, every
failure is one line, a continued run keeps every option of the run unless a safe one is changed."""
import http.server
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import threading

import pytest
import torch

from networks.snapshot import export_pt, load_snapshot, save_snapshot
from training.run_dir import SnapshotKeeper, claim_run_dir, latest_run_dir, list_snapshots

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--cfg=stylegan3-t', '--gpus=1', '--batch=4', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=1',
        '--metrics=none', '--workers=0', '--mbstd-group=2']


def train(*args, cwd=None, env=None, preexec_fn=None):
    return subprocess.run([sys.executable, os.path.join(REPO, 'train.py'), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, preexec_fn=preexec_fn)


@pytest.fixture
def train_here(capsys, monkeypatch):
    """train.py's own entry point in this process: the checks that stop before training, without the
    seconds a new interpreter spends importing torch."""
    import train as script
    from torch_utils.cli import run

    def call(*args):
        monkeypatch.setattr(sys, 'argv', ['train.py', *map(str, args)])
        code = 0
        try:
            run(script.main)
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return call


def one_line_error(r):
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'Traceback' not in r.stderr, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip() and not line.startswith('tick ')]
    assert len(lines) == 1 and lines[0].startswith('error: '), r.stderr   # (progress bars aside)
    return lines[0]


def options_of(r):
    """The options JSON train.py prints first with --verbose."""
    return json.loads(r.stdout[:r.stdout.index('\n}\n') + 2])


@pytest.fixture(scope='module')
def tiny_data(rectangles):
    return rectangles(16, 16)


TINY_RUN_OUTPUT = {}


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, tiny_data):
    """A finished run (tick 0.004 kimg, one snapshot per tick; within one kimg only the newest is kept)."""
    outdir = tmp_path_factory.mktemp('runs')
    r = train('--outdir', outdir, '--data', tiny_data, *TINY, '--kimg=0.008', '--tick=0.004', '--snap=1')
    assert r.returncode == 0, r.stdout + r.stderr
    TINY_RUN_OUTPUT['stdout'] = r.stdout
    return latest_run_dir(str(outdir))


def test_the_run_directory_is_named_once_and_recorded_by_its_real_name(tiny_run):
    # The console said "new run in runs/NNNNN-..." before the real name, and training_options.json kept NNNNN.
    options = json.load(open(os.path.join(tiny_run, 'training_options.json')))
    assert options['run_dir'] == tiny_run and 'NNNNN' not in json.dumps(options)
    out = TINY_RUN_OUTPUT['stdout']
    assert 'NNNNN' not in out and out.count(os.path.basename(tiny_run)) == 1, out


def test_an_outdir_that_is_a_file_is_refused_by_the_dry_run_too(train_here, tmp_path, tiny_data):
    (tmp_path / 'afile').write_text('')
    for extra in (['--dry-run'], []):
        r = train_here('--outdir', tmp_path / 'afile', '--data', tiny_data, *TINY, '--kimg=1', *extra)
        assert one_line_error(r) == f'error: --outdir={tmp_path / "afile"} is a file, not a folder'
    r = train_here('--outdir', tmp_path / 'afile' / 'runs', '--data', tiny_data, *TINY, '--kimg=1', '--dry-run')
    assert one_line_error(r).endswith(f': {tmp_path / "afile"} is a file, not a folder')


def test_a_second_ctrl_c_aborts_without_saving():
    # The first asks for a snapshot and exit code 130; the second ended in "done." after saving anyway.
    code = ('import os, signal, sys, time\n'
            'from training.stop import StopFlag\n'
            's = StopFlag(); s.step_from = 0\n'
            'os.kill(os.getpid(), signal.SIGINT); time.sleep(0.2)\n'
            'print("first", s.requested, s.exit_code, flush=True)\n'
            'os.kill(os.getpid(), signal.SIGINT); time.sleep(2)\n'
            'print("still running")\n')
    r = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and 'first True 130' in r.stdout and 'still running' not in r.stdout, r
    assert 'aborted: no snapshot written' in r.stderr and 'Traceback' not in r.stderr


def copy_run(run_dir, tmp_path):
    dest = tmp_path / 'runs' / os.path.basename(run_dir)
    shutil.copytree(run_dir, dest)
    return dest


# -- everything checked before anything is created -------------------------------------------------

def test_unusable_dataset_fails_before_run_dir_and_in_dry_run(train_here, tmp_path):
    (tmp_path / 'empty').mkdir()
    for extra in ([], ['--dry-run']):
        r = train_here('--outdir', tmp_path / 'runs', '--data', tmp_path / 'empty', *TINY, *extra)
        assert 'empty' in one_line_error(r)
        assert not (tmp_path / 'runs').exists()


def test_non_finite_floats_are_refused(train_here, tmp_path, tiny_data):
    for option in ('--gamma=nan', '--kimg=inf', '--tick=nan', '--glr=inf', '--dlr=nan', '--p=nan', '--target=nan'):
        r = train_here('--outdir', tmp_path / 'runs', '--data', tiny_data, *TINY, option, '--dry-run')
        assert r.returncode == 2 and 'finite' in r.stderr, (option, r.stderr)
    assert not (tmp_path / 'runs').exists()


def test_resume_from_missing_file_says_no_such_file(train_here, tmp_path):
    assert one_line_error(train_here('--outdir', tmp_path, '--resume=nope.pkl')) == \
        'error: nope.pkl: no such file, and not the name of a model in pretrained/ (garments)'


def test_resume_url_that_cannot_be_downloaded_is_one_line(train_here, tmp_path, tiny_data, monkeypatch):
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    r = train_here('--outdir', tmp_path / 'runs', '--data', tiny_data, *TINY, '--resume=http://127.0.0.1:9/snap.pkl',
                   '--dry-run')
    assert '127.0.0.1:9' in one_line_error(r)
    assert not (tmp_path / 'runs').exists()


def test_gpus_without_cuda_say_what_happens(train_here, tmp_path, tiny_data):
    options = [a for a in TINY if not a.startswith(('--gpus', '--workers', '--batch'))]
    r = train_here('--outdir', tmp_path / 'runs', '--data', tiny_data, *options, '--gpus=4', '--batch=8', '--dry-run', '--verbose')
    assert r.returncode == 0, r.stderr
    notice = [line for line in r.stdout.splitlines() if line.startswith('no CUDA device')]
    assert len(notice) == 1 and '4 CPU processes' in notice[0] and '--gpus=1' in notice[0]
    assert f'sharing {len(os.sched_getaffinity(0))} cores' in notice[0]
    assert 1 <= options_of(r)['workers'] <= max(len(os.sched_getaffinity(0)) // 4, 1)


def test_cpu_processes_notice_never_promises_more_cores_than_there_are():
    from training.launch import cpu_processes_notice
    assert '8 CPU processes sharing 2 cores (4 processes per core)' in cpu_processes_notice(8, 2)
    assert 'sharing 16 cores (4 cores each)' in cpu_processes_notice(4, 16)


def test_dry_run_prints_a_summary_and_the_json_only_when_verbose(train_here, tmp_path, tiny_data):
    r = train_here('--outdir', tmp_path / 'runs', '--data', tiny_data, *TINY, '--kimg=3', '--dry-run')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) <= 4 and '{' not in r.stdout, r.stdout
    assert 'new run in' in lines[0] and 'stylegan3-t' in lines[1] and '3 kimg' in lines[1]
    assert lines[-1].startswith('dry run:') and '--verbose' in lines[-1]
    assert not (tmp_path / 'runs').exists()
    r = train_here('--outdir', tmp_path / 'runs', '--data', tiny_data, *TINY, '--kimg=3', '--dry-run', '--verbose')
    assert options_of(r)['kimg'] == 3


def test_default_metrics_offline_name_what_works_without_internet(train_here, tmp_path, tiny_data, monkeypatch):
    # NVIDIA's Inception cannot be downloaded: the message names the file's place and the metrics that need none.
    import dataclasses
    from metrics import detectors
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('SG3C_DETECTOR_DIR', raising=False)
    monkeypatch.setitem(detectors.DETECTORS, 'inception', dataclasses.replace(
        detectors.DETECTORS['inception'], url='http://127.0.0.1:9/inception-2015-12-05.pt'))
    options = [a for a in TINY if not a.startswith('--metrics')]
    message = one_line_error(train_here('--outdir', tmp_path / 'runs', '--data', tiny_data, *options, '--dry-run'))
    assert os.path.join(str(tmp_path / 'cache'), 'detectors', 'inception-2015-12-05.pt') in message
    assert '--metrics=fid_garments10k_full' in message and '--metrics=none' in message
    r = train_here('--outdir', tmp_path / 'runs', '--data', tiny_data, *options, '--metrics=fid_garments10k_full',
                   '--dry-run')
    assert r.returncode == 0, r.stderr


# -- run directories and snapshots ----------------------------------------------------------------

def _claim(args):
    outdir, desc = args
    return claim_run_dir(outdir, desc)


def test_run_dirs_are_claimed_atomically(tmp_path):
    """Runs started together, with the same and with different descriptions: one number each, no gaps.
    (A race, so several rounds: without the lock about one round in four went wrong here.)"""
    for round in range(4):
        outdir = str(tmp_path / str(round))
        jobs = [(outdir, 'same' if i % 2 else f'other{i}') for i in range(24)]
        with multiprocessing.get_context('fork').Pool(8) as pool:
            dirs = pool.map(_claim, jobs)
        numbers = [int(os.path.basename(d).split('-')[0]) for d in dirs]
        assert len(set(dirs)) == 24 and sorted(numbers) == list(range(24)), sorted(numbers)


def test_a_file_named_like_the_next_run_dir_is_stepped_over(tmp_path):
    os.mkdir(tmp_path / '00000-a')
    (tmp_path / '00001-b').write_text('not a run')
    assert os.path.basename(claim_run_dir(str(tmp_path), 'b')) == '00002-b'


def test_snapshots_keep_nvidia_names_and_one_per_whole_kimg(tmp_path):
    keeper = SnapshotKeeper(str(tmp_path))
    for nimg, name in ((8, '000000.008'), (512, '000000.512'), (1000, '000001'), (1504, '000001.504'),
                       (2000, '000002')):
        keeper.write(str(tmp_path / f'network-snapshot-{name}.pkl'), dict(nimg=nimg), scheduled=True)
    names = [os.path.basename(p) for p in list_snapshots(str(tmp_path))]
    assert names == ['network-snapshot-000000.512.pkl', 'network-snapshot-000001.504.pkl',
                     'network-snapshot-000002.pkl']


# -- resume rules ------------------------------------------------------------------------------------

def test_resume_latest_restores_every_option_and_refuses_conflicts(train_here, tmp_path, tiny_run, tiny_data):
    run = copy_run(tiny_run, tmp_path)
    saved = json.load(open(run / 'training_options.json'))
    r = train_here('--outdir', tmp_path / 'runs', '--resume=latest', '--kimg=0.02', '--dry-run', '--verbose')
    assert r.returncode == 0, r.stderr
    opts = options_of(r)
    for key in ('tick', 'snap', 'workers', 'batch', 'gamma', 'cfg', 'mbstd_group', 'cbase', 'metrics'):
        assert opts[key] == saved[key], key
    assert opts['kimg'] == 0.02 and opts['run_dir'] == str(run)

    r = train_here('--outdir', tmp_path / 'runs', '--resume=latest', '--tick=0.008', '--snap=3', '--workers=1', '--dry-run', '--verbose')
    assert r.returncode == 0, r.stderr
    assert (options_of(r)['tick'], options_of(r)['snap'], options_of(r)['workers']) == (0.008, 3, 1)

    r = train_here('--outdir', tmp_path / 'runs', '--resume=latest', '--batch=16', '--gamma=5', '--cfg=stylegan3-t')
    line = one_line_error(r)
    assert '--batch=16' in line and '--gamma=5' in line and '--cfg' not in line   # the same --cfg is fine
    r = train_here('--outdir', tmp_path / 'runs', '--resume=latest', '--data', tmp_path, '--dry-run')
    assert '--data' in one_line_error(r)
    assert sorted(os.listdir(tmp_path / 'runs')) == [run.name]


def test_damaged_training_state_is_one_line(train_here, tmp_path, tiny_run):
    source = list_snapshots(tiny_run)[-1]
    data = load_snapshot(source)
    damages = {
        'unknown option': lambda ts: ts['options'].update(colour='red'),
        'missing cfg': lambda ts: ts['options'].pop('cfg'),
        'malformed RNG': lambda ts: ts['rng'][0].update(torch='not a state'),
        'malformed numpy RNG': lambda ts: ts['rng'][0].update(numpy=('MT19937', [1, 2], 0)),
        'no counters': lambda ts: ts.pop('counters'),
    }
    for what, damage in damages.items():
        copy = dict(data, training_state=load_snapshot(source)['training_state'])
        damage(copy['training_state'])
        path = tmp_path / f'{what.replace(" ", "_")}.pkl'
        save_snapshot(path, copy)
        line = one_line_error(train_here('--outdir', tmp_path / 'runs', '--resume', path, '--kimg=1'))
        assert str(path) in line and 'cannot resume' in line, (what, line)
    assert not (tmp_path / 'runs').exists()


def test_snapshot_of_an_older_release_resumes_with_the_defaults_of_later_options(train_here, tmp_path, tiny_run):
    """Options added after the first release are absent from older snapshots; those resume with the value
    that reproduces the old behaviour rather than being refused as damaged."""
    run = copy_run(tiny_run, tmp_path)
    path = list_snapshots(str(run))[-1]
    data = load_snapshot(path)
    for name in ('detector_dir', 'mbstd_by_class', 'transfer'):
        del data['training_state']['options'][name]
    save_snapshot(path, data)
    r = train_here('--outdir', tmp_path / 'runs', '--resume', path, '--kimg=1', '--dry-run', '--verbose')
    assert r.returncode == 0, r.stderr
    opts = options_of(r)
    assert (opts['detector_dir'], opts['mbstd_by_class'], opts['transfer'], opts['resume']) == (None, False, False, path)


def test_disk_full_while_writing_snapshot(tmp_path, tiny_run):
    """A write that fails (here: the file-size limit, EFBIG, as a full disk gives ENOSPC) stops the run with
    one line; the earlier snapshot is intact and no temporary file is left."""
    run = copy_run(tiny_run, tmp_path)
    before = list_snapshots(str(run))
    contents = {p: open(p, 'rb').read() for p in before}
    limit = min(len(b) for b in contents.values()) // 2

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    r = train('--outdir', tmp_path / 'runs', '--resume=latest', '--kimg=0.016', preexec_fn=small_files)
    line = one_line_error(r)
    assert 'network-snapshot-' in line and 'cannot write the snapshot' in line and 'intact' in line
    assert list_snapshots(str(run)) == before
    assert all(open(p, 'rb').read() == data for p, data in contents.items())
    assert not [n for n in os.listdir(run) if n.startswith('.')]


def test_resume_url_continues_under_outdir(tmp_path, tiny_run):
    """A snapshot of ours given by URL continues exactly, in a new run directory under --outdir (not in a
    folder named after the URL)."""
    snapshot = list_snapshots(tiny_run)[-1]
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=os.path.dirname(snapshot), **k)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}/{os.path.basename(snapshot)}'
        env = dict(os.environ, SG3C_CACHE=str(tmp_path / 'cache'))
        (tmp_path / 'cwd').mkdir()
        r = train('--outdir', tmp_path / 'runs', f'--resume={url}', '--kimg=0.012', cwd=tmp_path / 'cwd', env=env)
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'resumed exactly' in r.stdout
    assert os.listdir(tmp_path / 'cwd') == []
    run = latest_run_dir(str(tmp_path / 'runs'))
    assert run is not None and [os.path.basename(p) for p in list_snapshots(run)] == ['network-snapshot-000000.012.pkl']


def test_mbstd_by_class_needs_a_conditional_model(train_here, tmp_path, tiny_data):
    r = train_here('--outdir', tmp_path / 'runs', '--data', tiny_data, *TINY, '--mbstd-by-class=1', '--dry-run')
    assert '--cond=True' in one_line_error(r)
    assert not (tmp_path / 'runs').exists()


def test_transfer_needs_resume(train_here, tmp_path, tiny_data):
    r = train_here('--outdir', tmp_path / 'runs', '--data', tiny_data, *TINY, '--transfer=1', '--dry-run')
    assert '--resume' in one_line_error(r)
    assert not (tmp_path / 'runs').exists()


def test_transfer_from_our_run_is_a_new_run_with_new_options(tmp_path, tiny_run, tiny_data):
    """--transfer=1 on one of our runs: a new run directory with this command's options (another gamma),
    starting from the source's newest weights with fresh counters; resuming that run then continues it
    exactly, no longer going back to the source."""
    source = list_snapshots(tiny_run)[-1]
    base = [a for a in TINY if not a.startswith('--gamma')]
    r = train('--outdir', tmp_path / 'runs', '--resume', tiny_run, '--transfer=1', '--data', tiny_data, *base,
              '--gamma=5', '--glr=0', '--dlr=0', '--kimg=0.004', '--tick=0.004', '--snap=1')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'transfer learning: copied' in r.stdout and 'resumed exactly' not in r.stdout
    run = latest_run_dir(str(tmp_path / 'runs'))
    opts = json.load(open(os.path.join(run, 'training_options.json')))
    assert (opts['gamma'], opts['transfer'], opts['resume']) == (5, True, source)
    first = list_snapshots(run)
    assert [os.path.basename(p) for p in first] == ['network-snapshot-000000.004.pkl']   # counted from 0

    # With both learning rates 0 the new run's weights are exactly the source's: they came across (the
    # buffers, running averages such as w_avg, move on).
    for name in ('G', 'D'):
        theirs = dict(load_snapshot(source)[name].named_parameters())
        ours = dict(load_snapshot(first[0])[name].named_parameters())
        assert ours.keys() == theirs.keys() and all(torch.equal(t, theirs[n]) for n, t in ours.items()), name

    r = train('--outdir', tmp_path / 'runs', '--resume=latest', '--kimg=0.008')
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'resumed exactly from {first[0]}' in r.stdout
    assert os.path.basename(list_snapshots(run)[-1]) == 'network-snapshot-000000.008.pkl'


def test_resume_accepts_the_short_name_of_a_shipped_model(train_here, tmp_path, tiny_data, monkeypatch):
    """... and reads the file once before training (not again to check it is readable: a large pickle
    costs seconds per read)."""
    import training.run_plan
    from networks.snapshot import shipped_models
    reads = []
    real_load = training.run_plan.load_snapshot
    monkeypatch.setattr(training.run_plan, 'load_snapshot', lambda path: reads.append(path) or real_load(path))
    r = train_here('--outdir', tmp_path / 'runs', '--resume=garments', '--data', tiny_data, *TINY, '--dry-run', '--verbose')
    assert r.returncode == 0, r.stderr
    opts = options_of(r)
    assert (opts['resume'], opts['transfer']) == (shipped_models()['garments'], True)
    assert reads == [shipped_models()['garments']]


def test_transfer_from_a_generator_only_export(tmp_path, tiny_run, tiny_data):
    """A released .pt holds G_ema alone: G and G_ema start from it, D from a fresh initialisation, each
    said in the log, instead of a KeyError at the start of training."""
    source = load_snapshot(list_snapshots(tiny_run)[-1])
    export_pt(dict(G_ema=source['G_ema'], training_set_kwargs=source['training_set_kwargs']), tmp_path / 'g.pt')
    r = train('--outdir', tmp_path / 'runs', '--resume', tmp_path / 'g.pt', '--data', tiny_data, *TINY,
              '--glr=0', '--dlr=0', '--kimg=0.004', '--tick=0.004', '--snap=1')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'holds no D; it starts from a fresh initialisation' in r.stdout
    G = load_snapshot(list_snapshots(latest_run_dir(str(tmp_path / 'runs')))[-1])['G']
    theirs = dict(source['G_ema'].named_parameters())
    assert all(torch.equal(t, theirs[n]) for n, t in G.named_parameters())
