"""calc_metrics.py on tiny real snapshots: run directories, the table, skipping, errors, two processes."""
import json
import os

import pytest
import torch

import calc_metrics
from metrics.standin import save_standin_detectors
from helpers.metrics_toys import random_images, write_image_folder
from networks import discriminator, stylegan2
from networks.snapshot import save_snapshot
from helpers.scripts import run_script


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('SG3C_DETECTOR_DIR', raising=False)
    data = write_image_folder(str(tmp_path / 'data'), random_images(24, seed=0))
    save_standin_detectors(str(tmp_path / 'det'))
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'training_options.json').write_text('{}')
    for i, kimg in enumerate([0, 4]):
        torch.manual_seed(i)
        G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                                mapping_kwargs=dict(num_layers=1), channel_base=64, channel_max=16)
        with torch.no_grad():
            for p in G.parameters():
                p.add_(torch.randn_like(p) * 0.2)
        D = discriminator.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=64, channel_max=16)
        save_snapshot(run / f'network-snapshot-{kimg:06d}.pkl',
                      dict(G=G, D=D, G_ema=G, augment_pipe=None,
                           training_set_kwargs=dict(path=data, resolution=16, use_labels=False, xflip=False)))
    return run, str(tmp_path / 'det'), data


def cli(*args):
    code, out, err = run_script(calc_metrics.main, *args)
    return code, out + err


def records(run, metric):
    path = run / f'metric-{metric}.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_snapshot_of_a_run_with_the_best_marked_and_reruns_skipped(run_dir):
    run, det, _ = run_dir
    code, out = cli('--network', run, '--metrics', 'fid64_full,kid64_full', '--detector-dir', det, '--quiet')
    assert code == 0, out
    fid = records(run, 'fid64_full')
    assert [r['snapshot_pkl'] for r in fid] == ['network-snapshot-000000.pkl', 'network-snapshot-000004.pkl']
    assert set(fid[0]) == {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'snapshot_pkl', 'timestamp'}
    best = min(fid, key=lambda r: r['results']['fid64_full'])['snapshot_pkl']
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith('network-snapshot')}
    assert set(rows) == {r['snapshot_pkl'] for r in fid}
    header = next(line for line in out.splitlines() if line.startswith('snapshot')).split()
    fid_cells = {name: row.split()[header.index('fid64_full')] for name, row in rows.items()}
    assert fid_cells[best].endswith('*') and sum(c.endswith('*') for c in fid_cells.values()) == 1

    code, out = cli('--network', run, '--metrics', 'fid64_full,kid64_full', '--detector-dir', det)
    assert code == 0 and 'already in' in out and len(records(run, 'fid64_full')) == 2
    assert sum(line.startswith('network-snapshot') for line in out.splitlines()) == 2    # table from the jsonl
    code, out = cli('--network', run, '--metrics', 'fid64_full', '--detector-dir', det, '--quiet', '--force')
    again = records(run, 'fid64_full')
    assert code == 0 and len(again) == 4 and [r['results'] for r in again[2:]] == [r['results'] for r in fid]


def test_the_run_directory_names_its_best_snapshot_for_network_run_best(run_dir):
    from networks.snapshot import SnapshotError, Source, load_generator, resolve_source
    run, det, _ = run_dir
    with pytest.raises(SnapshotError, match='best.json: no such file'):
        resolve_source(f'{run}:best')
    code, out = cli('--network', run, '--metrics', 'kid64_full,fid64_full', '--detector-dir', det, '--quiet')
    assert code == 0, out
    best = json.loads((run / 'best.json').read_text())
    kid = records(run, 'kid64_full')
    winner = min(kid, key=lambda r: r['results']['kid64_full'])
    assert best['metric'] == 'kid64_full'                       # the first metric decides
    assert (best['snapshot'], best['value']) == (winner['snapshot_pkl'], winner['results']['kid64_full'])
    fid = records(run, 'fid64_full')
    assert best['by_metric']['fid64_full']['value'] == min(r['results']['fid64_full'] for r in fid)
    assert resolve_source(f'{run}:best') == Source(str(run / winner['snapshot_pkl']), 'best')
    assert load_generator(f'{run}:best').img_resolution == 16
    os.remove(run / winner['snapshot_pkl'])                     # a retired snapshot is not "best" any more
    with pytest.raises(SnapshotError, match='no longer there'):
        resolve_source(f'{run}:best')


def test_plot_draws_the_runs_curves_and_metrics(run_dir, tmp_path):
    import numpy as np
    import PIL.Image
    from training import curves
    run, det, _ = run_dir
    with open(run / 'stats.jsonl', 'w') as f:
        for tick, kimg in enumerate([0.004, 2.0, 4.0]):
            f.write(json.dumps({'Progress/kimg': dict(num=1, mean=kimg), 'Loss/G/loss': dict(num=4, mean=1 + tick),
                                'Loss/D/loss': dict(num=4, mean=2 - tick), 'Progress/augment': dict(num=1, mean=0.1 * tick),
                                'Loss/scores/real': dict(num=4, mean=0.5), 'Loss/scores/fake': dict(num=4, mean=-0.5),
                                'timestamp': 1.0 + tick}) + '\n')
    code, out = cli('--network', run, '--metrics', 'fid64_full', '--detector-dir', det, '--quiet',
                    '--plot', tmp_path / 'curves.png')
    assert code == 0 and 'curves.png' in out, out
    panels = curves.run_curves(str(run))
    assert [title for title, _ in panels] == ['G loss', 'D loss', 'D scores: real, fake', 'augment p', 'fid64_full']
    assert panels[0][1]['Loss/G/loss'] == [(0.004, 1), (2.0, 2), (4.0, 3)]
    assert [x for x, _ in panels[-1][1]['fid64_full']] == [0.0, 4.0]
    image = np.asarray(PIL.Image.open(tmp_path / 'curves.png'))
    assert image.shape == (28 + 3 * curves.PANEL_H, 2 * curves.PANEL_W, 3)
    blue = np.all(image == curves.COLOURS[0], axis=2)
    for i in range(len(panels)):   # a curve in every panel
        r, c = divmod(i, 2)
        assert blue[28 + r * curves.PANEL_H:28 + (r + 1) * curves.PANEL_H, c * curves.PANEL_W:(c + 1) * curves.PANEL_W].sum() > 50
    code, out = cli('--network', run, '--metrics', 'none', '--plot', tmp_path / 'only.png')   # no metric: only the plot
    assert code == 0 and np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'only.png')), image)
    code, out = cli('--network', tmp_path / 'det', '--metrics', 'none', '--plot', tmp_path / 'x.png')
    assert code == 1 and 'not a run directory' in out


def test_a_snapshot_outside_a_run_writes_no_jsonl(run_dir, tmp_path):
    run, det, data = run_dir
    lone = tmp_path / 'elsewhere' / 'model.pkl'
    lone.parent.mkdir()
    os.replace(run / 'network-snapshot-000004.pkl', lone)
    code, out = cli('--network', lone, '--metrics', 'kid64_full', '--data', data, '--detector-dir', det, '--quiet')
    assert code == 0 and 'model.pkl' in out and os.listdir(lone.parent) == ['model.pkl']


@pytest.mark.parametrize('case, expected', [
    ('missing-network', 'no such file, and not the name of a model in pretrained/'),
    ('missing-dataset', 'not found; pass --data'),
    ('missing-detector', 'empty/inception-2015-12-05.pt not found'),
    ('unknown-metric', "unknown metric 'fid'"),
    ('stylegan2-equivariance', 'StyleGAN3'),
])
def test_bad_input_is_a_one_line_error(run_dir, tmp_path, case, expected):
    run, det, data = run_dir
    args = ['--network', run, '--metrics', 'fid16_full', '--detector-dir', det]
    if case == 'missing-network':
        args[1] = tmp_path / 'nope.pkl'
    elif case == 'missing-dataset':
        os.rename(data, data + '-moved')
    elif case == 'missing-detector':
        (tmp_path / 'empty').mkdir()
        args[-1] = tmp_path / 'empty'
    elif case == 'unknown-metric':
        args[3] = 'fid'
    else:
        args[3] = 'eqt4_int'
    code, out = cli(*args, '--quiet')
    lines = [line for line in out.splitlines() if line.strip()]
    assert code != 0 and lines[-1].lower().startswith('error: ') and expected in lines[-1], out
    assert 'Traceback' not in out
    if case == 'missing-detector':   # and what works without that file
        assert '--metrics=fid_garments10k_full' in lines[-1], out


def two_process_check(run, det, metrics):
    snapshot = run / 'network-snapshot-000004.pkl'
    for gpus in (1, 2):
        code, out = cli('--network', snapshot, '--metrics', ','.join(metrics), '--detector-dir', det,
                        '--gpus', gpus, '--quiet', '--force')
        assert code == 0, out
    for metric in metrics:
        one, two = records(run, metric)
        assert (one['num_gpus'], two['num_gpus']) == (1, 2)
        assert one['results'] == pytest.approx(two['results'], rel=1e-9)


def test_two_processes_give_the_same_fid_as_one(run_dir):
    run, det, _ = run_dir
    two_process_check(run, det, ['fid70_full'])   # 70 = one full and one partial batch of 64: both ranks work


@pytest.mark.slow
def test_two_processes_give_the_same_precision_recall_and_kid_as_one(run_dir):
    run, det, _ = run_dir
    two_process_check(run, det, ['pr1k3', 'kid100_full'])


def test_a_folder_of_runs_and_its_best_take_the_forms_gen_images_takes(run_dir, tmp_path):
    # calc_metrics.py --network=runs was refused ("holds no network-snapshot-*.pkl") though gen_images.py takes
    # it and runs:best told the user to run exactly that; RUN:best --plot was refused.
    run, det, _ = run_dir
    runs = tmp_path / 'runs'
    runs.mkdir()
    os.replace(run, runs / '00003-tiny')
    run = runs / '00003-tiny'
    (run / 'stats.jsonl').write_text(json.dumps({'Progress/kimg': dict(num=1, mean=4.0),
                                                 'Loss/G/loss': dict(num=1, mean=1.0)}) + '\n')
    code, out = cli('--network', runs, '--metrics', 'kid64_full', '--detector-dir', det, '--quiet')
    assert code == 0 and f'using {run}, the newest run in {runs}' in out, out
    assert [r['snapshot_pkl'] for r in records(run, 'kid64_full')] == ['network-snapshot-000000.pkl',
                                                                        'network-snapshot-000004.pkl']
    for network in (f'{runs}:best', f'{run}:best'):
        code, out = cli('--network', network, '--metrics', 'none', '--plot', tmp_path / 'best.png')
        assert code == 0 and 'best.png' in out, out


def test_an_unwritable_plot_is_refused_before_any_metric_is_computed(run_dir, tmp_path):
    run, det, _ = run_dir
    (tmp_path / 'afile').write_text('')
    code, out = cli('--network', run, '--metrics', 'kid64_full', '--detector-dir', det, '--quiet',
                    '--plot', tmp_path / 'afile' / 'curves.png')
    assert code == 1 and f'{tmp_path / "afile"} is a file, not a folder' in out, out
    assert not records(run, 'kid64_full')


def test_unknown_metrics_name_the_offline_one_and_a_recorded_synthetic_set_is_drawn_again(run_dir, tmp_path):
    run, det, _ = run_dir
    code, out = cli('--network', run, '--metrics', 'fid', '--quiet')
    assert code == 1 and 'fid_garments10k_full' in out, out
    # The shipped model records its synthetic training set by the cache's file name, which a new machine lacks.
    G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                            mapping_kwargs=dict(num_layers=1), channel_base=64, channel_max=16)
    save_snapshot(tmp_path / 'synthetic.pkl', dict(G_ema=G, training_set_kwargs=dict(
        path='garments-v1-16px-n12-seed3.zip', resolution=16, use_labels=False, xflip=False)))
    code, out = cli('--network', tmp_path / 'synthetic.pkl', '--metrics', 'kid8_full', '--detector-dir', det, '--quiet')
    assert code == 0, out
    assert os.path.isfile(tmp_path / 'cache' / 'datasets' / 'garments-v1-16px-n12-seed3.zip')
