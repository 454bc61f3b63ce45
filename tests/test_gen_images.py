"""gen_images.py from the shell, as a user runs it."""
import json
import os
import pickle
import sys

import numpy as np
import PIL.Image
import pytest

import gen_images
from networks.snapshot import save_snapshot

from helpers.networks import Evil, tiny_networks
from helpers.scripts import gen, run_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('name', ['official_stylegan2_64', 'official_stylegan3-t_64'])
def test_pngs_match_nvidia_reference_within_one_level(tmp_path, fixtures_dir, name):
    r = gen('--network', fixtures_dir / f'{name}.pkl', '--seeds', '0-1', '--outdir', tmp_path, '--batch', 2)
    assert r.returncode == 0, r.stderr
    ref = np.load(fixtures_dir / f'{name}_ref.npz')
    for seed in (0, 1):
        expected = np.clip(ref[f'img_seed{seed}_psi1.0'][0].transpose(1, 2, 0) * 127.5 + 128, 0, 255).astype(np.uint8)
        got = np.asarray(PIL.Image.open(tmp_path / f'seed{seed:04d}.png'))
        assert got.shape == expected.shape
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_conditional_network_needs_class(tmp_path, fixtures_dir):
    network = fixtures_dir / 'official_stylegan2_32_c3.pkl'
    code, out, err = run_script(gen_images.main, '--network', network, '--seeds', '0', '--outdir', tmp_path)
    assert code != 0
    assert 'conditional (3 classes)' in err and err.strip().count('\n') == 0
    code, out, err = run_script(gen_images.main, '--network', network, '--seeds', '2', '--class', 2, '--trunc', 0.7,
                                '--outdir', tmp_path)
    assert code == 0, err
    ref = np.load(fixtures_dir / 'official_stylegan2_32_c3_ref.npz')['img_seed2_psi0.7'][0]   # seed 2 -> class 2
    got = np.asarray(PIL.Image.open(tmp_path / 'seed0002.png')).astype(int)
    expected = np.clip(ref.transpose(1, 2, 0) * 127.5 + 128, 0, 255).astype(np.uint8).astype(int)
    assert np.abs(got - expected).max() <= 1


def test_malicious_pickle_refused_with_one_line_error(tmp_path):
    (tmp_path / 'evil.pkl').write_bytes(pickle.dumps(dict(G=Evil(), D=None, G_ema=Evil())))
    r = gen('--network', 'evil.pkl', '--seeds', '0', '--outdir', 'out', cwd=tmp_path)
    assert r.returncode != 0
    assert 'refusing to load global' in r.stderr and 'evil.pkl' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'PWNED').exists()


def test_same_seed_same_image_and_batching_does_not_matter(tmp_path):
    save_snapshot(tmp_path / 'tiny.pkl', tiny_networks('stylegan3'))
    outs = []
    for i, batch in enumerate([1, 1, 3]):
        r = gen('--network', tmp_path / 'tiny.pkl', '--seeds', '0-2', '--batch', batch, '--grid',
                '--outdir', tmp_path / f'o{i}')
        assert r.returncode == 0, r.stderr
        outs.append([np.asarray(PIL.Image.open(tmp_path / f'o{i}' / f'seed{s:04d}.png')) for s in range(3)])
    assert all(np.array_equal(a, b) for a, b in zip(outs[0], outs[1]))
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(outs[0], outs[2]))
    assert not np.array_equal(outs[0][0], outs[0][1])   # different seeds differ
    grid = np.asarray(PIL.Image.open(tmp_path / 'o0' / 'grid.png'))
    assert grid.shape == (32, 32, 3) and np.array_equal(grid[:16, 16:], outs[0][1])


def test_random_noise_is_reproducible_per_seed(tmp_path):
    save_snapshot(tmp_path / 'tiny.pkl', tiny_networks('stylegan2'))
    for i in range(2):
        assert gen('--network', tmp_path / 'tiny.pkl', '--seeds', '4', '--noise-mode', 'random',
                   '--outdir', tmp_path / f'r{i}').returncode == 0
    a, b = (np.asarray(PIL.Image.open(tmp_path / f'r{i}' / 'seed0004.png')) for i in range(2))
    assert np.array_equal(a, b)


def test_translate_rotate_change_stylegan3_output_and_export_pt(tmp_path):
    save_snapshot(tmp_path / 'tiny.pkl', tiny_networks('stylegan3'))
    for args in (['--network', tmp_path / 'tiny.pkl', '--export-pt', tmp_path / 'tiny.pt'],
                 ['--network', tmp_path / 'tiny.pt', '--seeds', '1', '--outdir', tmp_path / 'a'],
                 ['--network', tmp_path / 'tiny.pkl', '--seeds', '1', '--outdir', tmp_path / 'b'],
                 ['--network', tmp_path / 'tiny.pt', '--seeds', '1', '--rotate', 30, '--translate', '0.2,0',
                  '--outdir', tmp_path / 'c']):
        code, out, err = run_script(gen_images.main, *args)
        assert code == 0, err
    a, b, c = (np.asarray(PIL.Image.open(tmp_path / d / 'seed0001.png')) for d in 'abc')
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_runs_folder_names_the_snapshot_and_bad_numbers_are_refused(tmp_path):
    run = tmp_path / 'runs' / '00000-tiny'
    run.mkdir(parents=True)
    save_snapshot(run / 'network-snapshot-000004.pkl', tiny_networks('stylegan2'))
    code, out, err = run_script(gen_images.main, '--network', tmp_path / 'runs', '--seeds', '2', '--outdir', tmp_path / 'o')
    picked = str(run / 'network-snapshot-000004.pkl')
    assert code == 0 and f'using {picked}' in out, err
    assert 'wrote 1 file to' in out
    record = json.loads((tmp_path / 'o' / 'gen_images.jsonl').read_text())
    assert record['network'] == picked and record['truncation_psi'] == 1
    for args, message in [(['--trunc', 'nan'], "'nan' is not a finite number"),
                          (['--trunc', 'inf'], "'inf' is not a finite number"),
                          (['--rotate', '-inf'], 'not a finite number'),
                          (['--translate', '0,nan'], 'not a finite number'),
                          (['--seeds', '5-2'], 'the range is reversed')]:
        code, out, err = run_script(gen_images.main, '--network', picked, '--seeds', '0', *args, '--outdir', tmp_path / 'bad')
        assert code == 2 and message in err, (args, err)
    assert not (tmp_path / 'bad').exists()
    assert len((tmp_path / 'o' / 'gen_images.jsonl').read_text().splitlines()) == 1
    code, out, err = run_script(gen_images.main, '--help')
    options = [line for line in out.splitlines() if line.startswith('  --')]
    assert code == 0 and len(options) <= 15 and 'CONVERT' not in out


def test_a_network_url_that_cannot_be_downloaded_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    code, out, err = run_script(gen_images.main, '--network', 'http://127.0.0.1:9/g.pkl', '--seeds', '0', '--outdir',
                                tmp_path / 'o')
    assert code == 1 and err.startswith('error: cannot download http://127.0.0.1:9/g.pkl')
    assert len(err.strip().splitlines()) == 1


def test_stats_lines_never_hold_bare_nan(tmp_path):
    from torch_utils.jsonl import append_jsonl, read_jsonl
    append_jsonl(tmp_path / 's.jsonl', dict(truncation_psi=0.5))
    with pytest.raises(ValueError):
        append_jsonl(tmp_path / 's.jsonl', dict(truncation_psi=float('nan')))
    assert list(read_jsonl(tmp_path / 's.jsonl')) == [dict(truncation_psi=0.5)]


SCRIPTS = ['gen_images.py', 'gen_video.py', 'style_mixing.py', 'directions.py', 'invert.py', 'dataset_tool.py',
           'calc_metrics.py']


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_only_parse_and_stop_with_one_line(script):
    import ast
    tree = ast.parse(open(os.path.join(REPO, script)).read())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            count = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
            assert count <= 12, f'{script}: {node.name} has {count} parameters'
    # the entry point is torch_utils.cli.run, which turns UserError/OSError into one line and exit code 1
    main_guard = [n for n in tree.body if isinstance(n, ast.If) and 'main' in ast.unparse(n.test)]
    assert main_guard and 'run(main)' in ast.unparse(main_guard[0]).replace('cli.run', 'run')


def test_class_all_draws_one_row_per_class(tmp_path):
    # The quick start showed one class (16 dresses, the model's weakest); --class=all shows every class.
    data = tiny_networks('stylegan2', c_dim=3)
    data['training_set_kwargs'] = dict(path='x.zip', use_labels=True, class_names=['shirt', 'dress', 'skirt'])
    save_snapshot(tmp_path / 'c.pkl', data)
    code, out, err = run_script(gen_images.main, '--network', tmp_path / 'c.pkl', '--class', 'all', '--seeds', '4-5',
                                '--trunc', '0.7', '--grid', '--outdir', tmp_path / 'all')
    assert code == 0, err
    grid = np.asarray(PIL.Image.open(tmp_path / 'all' / 'grid.png'))
    h = data['G_ema'].img_resolution
    assert grid.shape[:2] == (3 * h, 2 * h)
    for row, name in enumerate(['shirt', 'dress', 'skirt']):
        code, out, err = run_script(gen_images.main, '--network', tmp_path / 'c.pkl', '--class', name, '--seeds', '5',
                                    '--trunc', '0.7', '--outdir', tmp_path / name)
        one = np.asarray(PIL.Image.open(tmp_path / name / 'seed0005.png'))
        assert np.array_equal(grid[row * h:(row + 1) * h, h:], one), name
        assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'all' / f'seed0005-{name}.png')), one)
    save_snapshot(tmp_path / 'u.pkl', tiny_networks('stylegan2'))
    code, out, err = run_script(gen_images.main, '--network', tmp_path / 'u.pkl', '--class', 'all', '--seeds', '0',
                                '--outdir', tmp_path / 'u')
    assert code == 1 and 'needs a conditional network' in err


def test_a_seeds_run_stays_in_generation(tmp_path):
    """gen_images.py --seeds runs in the script, generation/ and the snapshot loader only (issue 35): no stage
    of editing/. The network's own code (networks' model files) and torch_utils' helpers,
    the same for every caller, are left out of the count."""
    save_snapshot(tmp_path / 'c.pkl', tiny_networks('stylegan2', c_dim=2))
    model_files = {os.path.join(REPO, 'networks', f'{m}.py') for m in
                   ('stylegan2', 'stylegan3', 'layers', 'persistence', 'pyramid', 'discriminator', 'filter_design')}
    entered = []

    def trace(frame, event, arg):
        path = frame.f_code.co_filename
        if path.startswith(REPO + os.sep) and not path.startswith(os.path.join(REPO, 'torch_utils')) \
                and path not in model_files and frame.f_code.co_name != '<module>' and (not entered or entered[-1] != path):
            entered.append(path)
    sys.settrace(trace)
    try:
        code, out, err = run_script(gen_images.main, '--network', tmp_path / 'c.pkl', '--class=1', '--seeds=0-1',
                                    '--outdir', tmp_path / 'out')
    finally:
        sys.settrace(None)
    assert code == 0, err
    assert sorted(os.path.relpath(p, REPO) for p in set(entered) if not p.startswith(os.path.join(REPO, 'tests'))) == \
        ['gen_images.py', os.path.join('generation', 'images.py'), os.path.join('generation', 'seeds.py'),
         os.path.join('networks', 'snapshot.py')]
    assert sorted(os.listdir(tmp_path / 'out')) == ['gen_images.jsonl', 'seed0000.png', 'seed0001.png']
