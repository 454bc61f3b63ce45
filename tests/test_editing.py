"""Latent editing on tiny random networks: layer bookkeeping, direction discovery, edits, mixing, video, CLI."""
import json
import os

import numpy as np
import PIL.Image
import pytest
import torch

import directions
import gen_images
import gen_video
import style_mixing
from networks import stylegan2
from editing import discovery, edits as L
from editing.directions import Directions, load_directions, save_directions
from editing.edits import Edit, apply_edits, mix_ws, parse_edits, strip_ws
from editing.latents import load_ws_file
from editing.render import interpolate, mixing_grid, render_interpolation
from generation.seeds import seeds_to_ws, synthesize
from networks.snapshot import save_snapshot
from helpers.scripts import run_script
from helpers.networks import tiny_networks


@pytest.fixture(scope='module')
def g2():
    return tiny_networks('stylegan2')['G_ema'].eval().requires_grad_(False)


@pytest.fixture(scope='module')
def g3():
    return tiny_networks('stylegan3')['G_ema'].eval().requires_grad_(False)


@pytest.fixture(scope='module')
def g2c():
    return tiny_networks('stylegan2', c_dim=3)['G_ema'].eval().requires_grad_(False)


def random_ws(G, n=3, seed=0):
    return torch.randn(n, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Which ws row feeds which layer.

@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3'])
def test_style_layers_read_the_ws_rows_they_claim(family, g2, g3):
    G = g2 if family == 'stylegan2' else g3
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = inputs[0][0, 0].item()
        return hook
    hooks = [layer.module.affine.register_forward_hook(record(layer.name)) for layer in G.synthesis.style_layers()]
    ws = torch.arange(G.num_ws, dtype=torch.float32)[None, :, None].repeat(1, 1, G.w_dim)   # row i is all i
    with torch.no_grad():
        G.synthesis(ws, noise_mode='const')
    for h in hooks:
        h.remove()
    layers = G.synthesis.style_layers()
    assert len(seen) == len(layers)
    assert all(seen[layer.name] == layer.w_index for layer in layers)
    assert sorted({layer.w_index for layer in layers}) == list(range(1 if family == 'stylegan3' else 0, G.num_ws))


def test_presets_stylegan2_by_resolution():
    # 1024x1024 with two channels per layer: cheap to build, same ws layout as the real thing.
    G = stylegan2.Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=1024, img_channels=3,
                            mapping_kwargs=dict(num_layers=1), channel_base=2048, channel_max=2)
    assert G.num_ws == 18
    assert [L.preset_range(G, p) for p in ('coarse', 'middle', 'fine')] == [(0, 3), (3, 7), (7, 18)]
    assert L.parse_layers(G, 'coarse,middle') == list(range(7))      # NVIDIA's default style-mixing rows 0-6


def test_presets_small_networks(g2, g3):
    assert g2.num_ws == 6   # 16x16: b4 conv1 | b8 conv0 conv1 | b16 conv0 conv1 torgb
    assert [L.preset_range(g2, p) for p in ('coarse', 'middle', 'fine')] == [(0, 1), (1, 3), (3, 6)]
    assert g3.num_ws == 6
    assert [L.preset_range(g3, p) for p in ('coarse', 'middle', 'fine')] == [(0, 2), (2, 4), (4, 6)]
    assert L.parse_layers(g2, '0-1,4') == [0, 1, 4]
    assert L.parse_layer_range(g2, '2-4') == (2, 5)
    for bad in ('5-2', '0-6', 'sleeves', '0,3'):
        with pytest.raises(ValueError):
            L.parse_layer_range(g2, bad)


# ---------------------------------------------------------------------------------------------
# Discovery.

def assert_orthonormal(v, tol=1e-5):
    v = v.astype(np.float64)
    assert np.abs(v @ v.T - np.eye(len(v))).max() < tol


def test_ganspace_is_orthonormal_reproducible_and_the_principal_axes(g2):
    a = discovery.ganspace(g2, num_samples=3000, num_components=8, seed=3)
    b = discovery.ganspace(g2, num_samples=3000, num_components=8, seed=3)
    c = discovery.ganspace(g2, num_samples=3000, num_components=8, seed=4)
    assert_orthonormal(a.vectors)
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.scale, b.scale)
    assert not np.array_equal(a.vectors, c.vectors)
    # Independent check: eigenvectors of the sample covariance of w, by decreasing eigenvalue.
    w = discovery.sample_w(g2, 3000, seed=3)
    evals, evecs = np.linalg.eigh(np.cov(w.T))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    assert np.allclose(np.abs((a.vectors.astype(np.float64) * evecs.T).sum(1)), 1, atol=1e-4)
    assert np.allclose(a.scale, np.sqrt(evals), rtol=1e-4)
    assert np.all(np.diff(a.scale) <= 0)


@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3'])
def test_sefa_is_the_top_eigenvectors_of_normalised_affines(family, g2, g3):
    G = g2 if family == 'stylegan2' else g3
    start, stop = L.preset_range(G, 'middle')
    d = discovery.sefa(G, num_components=5, layers=(start, stop), num_samples=500, seed=1)
    assert_orthonormal(d.vectors)
    again = discovery.sefa(G, num_components=5, layers=(start, stop), num_samples=500, seed=1)
    assert np.array_equal(d.vectors, again.vectors) and np.array_equal(d.scale, again.scale)
    # Rebuild A from parameter names: every non-ToRGB affine whose layer reads a row in [start, stop).
    rows = [layer for layer in G.synthesis.style_layers() if start <= layer.w_index < stop and not layer.is_torgb]
    params = dict(G.synthesis.named_parameters())
    a = torch.cat([params[f'{r.name}.affine.weight'] for r in rows]).double().numpy()
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    m = a.T @ a
    top = np.linalg.eigvalsh(m)[::-1][:5]
    v = d.vectors.astype(np.float64)
    assert np.allclose(v @ m @ v.T, np.diag(top), atol=1e-4 * top[0])
    assert np.allclose(d.stats['eigenvalue'], top, rtol=1e-6)


@pytest.mark.parametrize('name', ['official_stylegan3-r_64', 'official_stylegan2_64'])
def test_discovery_and_edits_on_official_snapshots(fixtures_dir, name):
    from networks.snapshot import load_generator
    G = load_generator(fixtures_dir / f'{name}.pkl')
    for d in (discovery.ganspace(G, num_samples=300, num_components=6, seed=0),
              discovery.sefa(G, num_components=6, layers=L.preset_range(G, 'coarse'), num_samples=100, seed=0)):
        assert_orthonormal(d.vectors)
        ws = seeds_to_ws(G, [0])
        ref = np.load(fixtures_dir / f'{name}_ref.npz')['ws_seed0_psi1.0']
        assert np.allclose(ws.numpy(), ref, atol=1e-5)
        moved = apply_edits(ws, d, [Edit(d.names[0], 2, 'fine')], G)
        start = L.preset_range(G, 'fine')[0]
        assert torch.equal(moved[:, :start], ws[:, :start]) and not torch.equal(moved[:, start:], ws[:, start:])
    cls = discovery.class_directions(load_generator(fixtures_dir / 'official_stylegan2_32_c3.pkl'), num_samples=50)
    assert len(cls) == 3


def test_sefa_rejects_a_range_without_style_layers(g3):
    with pytest.raises(ValueError, match='no modulated conv'):
        discovery.sefa(g3, layers=(0, 1), num_samples=10)


def test_fit_direction_recovers_a_planted_direction():
    rng = np.random.RandomState(0)
    w = rng.randn(2000, 16) * np.linspace(0.5, 2, 16)
    true = rng.randn(16)
    true /= np.linalg.norm(true)
    v, info = discovery.fit_direction(w, w @ true + 0.05 * rng.randn(2000))
    assert info['kind'] == 'ridge' and info['score'] > 0.95 and v @ true > 0.99
    v, info = discovery.fit_direction(w, (w @ true > 0.3).astype(float))
    assert info['kind'] == 'logistic' and info['score'] > 0.95 and v @ true > 0.95


def test_supervised_direction_moves_its_label(g2):
    def brightness(images):
        return {'brightness': images.astype(np.float64).mean(axis=(1, 2, 3))}
    d = discovery.supervised(g2, brightness, num_samples=300, seed=0)
    assert d.names == ['brightness'] and d.stats['held_out_score'][0] > 0.5
    ws = seeds_to_ws(g2, list(range(100, 116)))
    means = [synthesize(g2, apply_edits(ws, d, [Edit('brightness', s)])).mean() for s in (-1, 0, 1)]
    assert means[0] < means[1] < means[2]


def test_class_directions_move_one_class_mean_onto_another(g2c):
    d = discovery.class_directions(g2c, num_samples=400, seed=2)
    assert d.names == ['class_0', 'class_1', 'class_2']   # class_<name> where the snapshot records names
    mean = [discovery.map_latents(g2c, *discovery.sample_latents(g2c, 400, 2, class_idx=k)).mean(0) for k in range(3)]
    shift = d.stats['class_shift']
    ws = torch.from_numpy(mean[0])[None, None].repeat(1, g2c.num_ws, 1)
    moved = apply_edits(ws, d, [Edit('class_0', -shift[0]), Edit('class_1', shift[1])])
    assert np.allclose(moved[0, 0].numpy(), mean[1], atol=1e-6)


def test_class_directions_take_the_names_the_snapshot_records(g2c):
    # directions.py --labels-from=classes on the shipped model names them class_t-shirt ... class_jacket.
    import copy
    G = copy.deepcopy(g2c)
    G.class_names = ['t-shirt', 'dress', 'jacket']
    assert discovery.class_directions(G, num_samples=50).names == ['class_t-shirt', 'class_dress', 'class_jacket']


# ---------------------------------------------------------------------------------------------
# Files and edits.

def tiny_directions(G, k=3, start=0, stop=None):
    q, _ = np.linalg.qr(np.random.RandomState(0).randn(G.w_dim, k))
    return Directions(vectors=q.T, names=[f'd{i}' for i in range(k)], layer_start=start, layer_stop=stop or G.num_ws,
                      scale=np.arange(1, k + 1), method='test', num_ws=G.num_ws, meta=dict(note='x'),
                      stats=dict(score=np.arange(k) / 10))


def test_directions_file_round_trip_rename_and_no_pickles(tmp_path, g2):
    d = tiny_directions(g2)
    save_directions(tmp_path / 'd.npz', d)
    e = load_directions(tmp_path / 'd.npz')
    assert e.names == d.names and np.array_equal(e.vectors, d.vectors) and e.meta == d.meta
    assert np.array_equal(e.stats['score'], d.stats['score']) and e.method == 'test'
    save_directions(tmp_path / 'd.npz', e.renamed({'d1': 'darker'}))
    assert load_directions(tmp_path / 'd.npz').names == ['d0', 'darker', 'd2']
    with pytest.raises(ValueError, match='used twice'):
        e.renamed({'d1': 'd0'})
    with pytest.raises(ValueError, match='contains a space'):
        e.renamed({'d1': 'dark er'})
    arrays = dict(np.load(tmp_path / 'd.npz'))
    arrays['names'] = np.array(['a', 'b', 'c'], dtype=object)
    np.savez(tmp_path / 'evil.npz', **arrays)
    with pytest.raises(ValueError, match='evil.npz: "names" contains pickled objects'):
        load_directions(tmp_path / 'evil.npz')


def test_edit_moves_only_the_directions_rows(g2):
    d = tiny_directions(g2, start=1, stop=3)
    ws = random_ws(g2)
    out = apply_edits(ws, d, [Edit('d1', 1.5)])
    expected = 1.5 * 2 * torch.from_numpy(d.vectors[1])
    assert torch.equal(out[:, [0, 3, 4, 5]], ws[:, [0, 3, 4, 5]])
    assert torch.allclose(out[:, 1:3] - ws[:, 1:3], expected.expand(3, 2, -1), atol=1e-6)
    over = apply_edits(ws, d, parse_edits('d1:1.5@fine'), g2)     # fine = rows 3-5 for this network
    assert torch.equal(over[:, :3], ws[:, :3]) and not torch.equal(over[:, 3:], ws[:, 3:])
    assert torch.equal(apply_edits(ws, d, [Edit('d0', 0)]), ws)
    with pytest.raises(ValueError, match="no direction named 'nope'"):
        apply_edits(ws, d, [Edit('nope', 1)])


def test_parse_edits():
    assert parse_edits('darker:2, sleeve:-1.5@middle,x') == [Edit('darker', 2), Edit('sleeve', -1.5, 'middle'), Edit('x', 1)]
    assert parse_edits('a:1e-1@0-3') == [Edit('a', 0.1, '0-3')]
    for bad in ('a:b', 'a::1', ':2', 'a:1@'):
        with pytest.raises(ValueError):
            parse_edits(bad)


def test_strip_columns_are_the_strengths(g2):
    d = tiny_directions(g2)
    ws = random_ws(g2, 2)
    s = strip_ws(ws, d, ['d0', 'd2'], [-1, 0, 2])
    assert s.shape == (4, 3, g2.num_ws, g2.w_dim)
    assert torch.equal(s[0, 1], ws[0]) and torch.equal(s[3, 1], ws[1])
    assert torch.allclose(s[3, 2], apply_edits(ws[1:], d, [Edit('d2', 2)])[0])


# ---------------------------------------------------------------------------------------------
# Mixing and video.

@pytest.mark.parametrize('spec', ['coarse', 'fine', '1-2,5'])
def test_style_mixing_copies_exactly_the_requested_rows(g2, spec):
    rows = L.parse_layers(g2, spec)
    a, b = random_ws(g2, 3, seed=1), random_ws(g2, 2, seed=2)
    grid = mix_ws(a, b, rows)
    others = [i for i in range(g2.num_ws) if i not in rows]
    for r in range(3):
        for c in range(2):
            assert torch.equal(grid[r, c, rows], b[c, rows])
            assert torch.equal(grid[r, c, others], a[r, others])


def test_mixing_grid_headers_and_all_rows_from_columns(g2):
    a, b = random_ws(g2, 2, seed=1), random_ws(g2, 3, seed=2)
    img = mixing_grid(g2, a, b, L.parse_layers(g2, 'all'))
    h = g2.img_resolution
    assert img.shape == (3 * h, 4 * h, 3) and (img[:h, :h] == 255).all()
    cols, rows = synthesize(g2, b), synthesize(g2, a)
    assert np.array_equal(img[:h, 2 * h:3 * h], cols[1]) and np.array_equal(img[2 * h:, :h], rows[1])
    assert np.array_equal(img[h:2 * h, 3 * h:], cols[2])   # every row from the column: the column's image


def test_interpolation_passes_through_keys():
    keys = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0))
    for kind in ('linear', 'cubic'):
        path = interpolate(keys, 4, kind=kind, loop=True)
        assert len(path) == 12 and all(torch.allclose(path[4 * k], keys[k], atol=1e-6) for k in range(3))
        open_path = interpolate(keys, 4, kind=kind, loop=False)
        assert len(open_path) == 9 and torch.allclose(open_path[-1], keys[-1], atol=1e-6)
    assert torch.allclose(interpolate(keys, 4, 'linear')[2], (keys[0] + keys[1]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match='at least two'):
        interpolate(keys[:1], 4)


def test_video_has_the_expected_frame_count(tmp_path, g2):
    import imageio.v2 as imageio
    keys = seeds_to_ws(g2, [0, 1, 2])
    n = render_interpolation(g2, keys, tmp_path / 'v.mp4', frames_per_key=3, kind='cubic', loop=True, min_size=32)
    reader = imageio.get_reader(tmp_path / 'v.mp4')
    frames = [f for f in reader]
    reader.close()
    assert n == 9 and len(frames) == 9 and frames[0].shape == (32, 32, 3)
    assert [p.name for p in tmp_path.iterdir()] == ['v.mp4']


# ---------------------------------------------------------------------------------------------
# Latents files and the command line.

@pytest.mark.parametrize('noise_mode', ['const', 'random'])
def test_seed_latents_render_as_gen_images_does(g2, noise_mode):
    from generation.seeds import generate_from_seeds
    seeds = [3, 9]
    ref = [img for _, img in generate_from_seeds(g2, seeds, truncation_psi=0.7, noise_mode=noise_mode)]
    got = synthesize(g2, seeds_to_ws(g2, seeds, truncation_psi=0.7), noise_mode=noise_mode, batch_size=1, noise_seeds=seeds)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))


def test_latents_files_in_both_layouts(tmp_path, g2):
    ws = random_ws(g2, 1).numpy()
    np.savez(tmp_path / 'inv.npz', w=ws, w_single=ws[:, 0], space=np.array('w+'))   # invert.py's layout
    np.savez(tmp_path / 'one.npz', w=ws[:, 0])
    a, _ = load_ws_file(tmp_path / 'inv.npz', g2.num_ws, g2.w_dim)
    b, _ = load_ws_file(tmp_path / 'one.npz', g2.num_ws, g2.w_dim)
    assert np.array_equal(a.numpy(), ws) and np.array_equal(b.numpy(), np.repeat(ws[:, :1], g2.num_ws, 1))
    np.savez(tmp_path / 'bad.npz', ws=ws[:, :2])
    with pytest.raises(ValueError, match=r'bad.npz: "ws" has shape \[1, 2, 8\]'):
        load_ws_file(tmp_path / 'bad.npz', g2.num_ws, g2.w_dim)


def test_cli_discover_rename_edit_strip_mix_and_ws(tmp_path, g2):
    net = tmp_path / 'g.pkl'
    save_snapshot(net, tiny_networks('stylegan2'))
    code, out, err = run_script(directions.main, '--network', net, '--discover', 'ganspace', '--samples', 400,
                                '--components', 3, '--layers', 'middle', '--directions', tmp_path / 'pca.npz')
    assert code == 0, err
    d = load_directions(tmp_path / 'pca.npz')
    assert d.names == ['pc0', 'pc1', 'pc2'] and (d.layer_start == 1).all() and (d.layer_stop == 3).all()
    assert run_script(directions.main, '--directions', tmp_path / 'pca.npz', '--rename', 'pc0=darker')[0] == 0
    code, out, err = run_script(gen_images.main, '--network', net, '--directions', tmp_path / 'pca.npz', '--seeds', '3',
                                '--edit', 'darker:2', '--outdir', tmp_path / 'e')
    assert code == 0, err
    d = load_directions(tmp_path / 'pca.npz')
    expected = synthesize(g2, apply_edits(seeds_to_ws(g2, [3]), d, [Edit('darker', 2)]))[0]
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'e' / 'seed0003-edited.png')), expected)

    # the same edit on an inverted latent of the same seed
    np.savez(tmp_path / 'inv.npz', w=seeds_to_ws(g2, [3]).numpy())
    code, out, err = run_script(gen_images.main, '--network', net, '--directions', tmp_path / 'pca.npz',
                                '--ws', tmp_path / 'inv.npz', '--edit', 'darker:2', '--outdir', tmp_path / 'w')
    assert code == 0, err
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'w' / 'inv-edited.png')), expected)

    code, out, err = run_script(gen_images.main, '--network', net, '--directions', tmp_path / 'pca.npz', '--seeds', '3-4',
                                '--edit', 'darker,pc2', '--edit-strip', '-2,0,2', '--outdir', tmp_path / 's')
    assert code == 0, err
    strip = np.asarray(PIL.Image.open(tmp_path / 's' / 'edit-strip.png'))
    h = g2.img_resolution
    assert strip.shape == (4 * h, 3 * h, 3)
    assert np.array_equal(strip[:h, 2 * h:], expected)       # seed 3, darker, +2
    assert np.array_equal(strip[3 * h:, h:2 * h], synthesize(g2, seeds_to_ws(g2, [4]))[0])   # strength 0
    meta = json.loads((tmp_path / 's' / 'edit-strip.json').read_text())
    assert meta['strengths'] == [-2, 0, 2] and meta['rows'][1] == dict(latent='seed0003', direction='pc2', layers=[1, 3])

    code, out, err = run_script(style_mixing.main, '--network', net, '--rows', '0-1', '--cols', f'5,{tmp_path / "inv.npz"}',
                                '--styles', 'fine', '--outdir', tmp_path / 'm')
    assert code == 0, err
    meta = json.loads((tmp_path / 'm' / 'mix-grid.json').read_text())
    assert meta['cols'] == ['seed0005', 'inv'] and meta['ws_rows_from_columns'] == [3, 4, 5]
    assert np.asarray(PIL.Image.open(tmp_path / 'm' / 'mix-grid.png')).shape == (3 * h, 3 * h, 3)


def test_video_grid_tiles_one_interpolation_per_cell(tmp_path, g2):
    import imageio.v2 as imageio
    net = tmp_path / 'g.pkl'
    save_snapshot(net, tiny_networks('stylegan2'))
    code, out, err = run_script(gen_video.main, '--network', net, '--seeds', '0-3', '--grid', '2x1', '--w-frames', 2,
                                '--output', tmp_path / 'v.mp4')
    assert code == 0, err
    assert f'wrote {tmp_path / "v.mp4"} (4 frames)' in out   # the file by name, not "1 file to DIR"
    record = json.loads((tmp_path / 'gen_video.jsonl').read_text())
    assert record['frames'] == 4 and record['keyframes'] == ['seed0000', 'seed0001', 'seed0002', 'seed0003']
    frame = imageio.get_reader(tmp_path / 'v.mp4').get_data(0)
    assert frame.shape[1] == 2 * frame.shape[0]       # two cells side by side (upscaled to 256 high)
    code, out, err = run_script(gen_video.main, '--network', net, '--seeds', '0-2', '--grid', '2x1', '--output',
                                tmp_path / 'x.mp4')
    assert code == 1 and 'do not split evenly over a 2x1 grid' in err
    assert run_script(gen_video.main, '--network', net, '--seeds', '0-2', '--grid', '2x1', '--num-keyframes', 2,
                      '--w-frames', 1, '--output', tmp_path / 'y.mp4')[0] == 0


def test_cli_errors_are_one_line(tmp_path):
    net = tmp_path / 'g.pkl'
    save_snapshot(net, tiny_networks('stylegan2'))
    save_directions(tmp_path / 'd.npz', tiny_directions(tiny_networks('stylegan2')['G']))
    cases = [
        (gen_images, ['--network', net, '--directions', tmp_path / 'd.npz', '--seeds', '0', '--edit', 'nope:1',
                      '--outdir', tmp_path], "no direction named 'nope'"),
        (gen_images, ['--network', net, '--directions', tmp_path / 'missing.npz', '--seeds', '0', '--edit', 'd0',
                      '--outdir', tmp_path], 'missing.npz: no such file'),
        (directions, ['--network', net, '--discover', 'supervised', '--directions', tmp_path / 'x.npz'],
         'needs --labels-from'),
        (gen_images, ['--network', net, '--ws', tmp_path / 'nofile.npz', '--outdir', tmp_path], 'nofile.npz: no such file'),
        (style_mixing, ['--network', net, '--rows', '0', '--cols', '1', '--styles', '0-9', '--outdir', tmp_path], 'beyond'),
        (gen_images, ['--network', net, '--seeds', '5-2', '--outdir', tmp_path], 'the range is reversed'),
        (gen_images, ['--network', net, '--seeds', '0', '--edit', 'd0:1e999', '--directions', tmp_path / 'd.npz',
                      '--outdir', tmp_path], 'not a finite number'),
        (gen_images, ['--network', net, '--seeds', '0', '--edit', 'd0', '--edit-strip', '0,nan',
                      '--directions', tmp_path / 'd.npz', '--outdir', tmp_path], 'not a finite number'),
        (gen_video, ['--network', net, '--seeds', '0-1', '--fps', 'inf', '--outdir', tmp_path], 'not a finite number'),
        (style_mixing, ['--network', net, '--rows', '0', '--cols', '1', '--trunc', 'nan', '--outdir', tmp_path],
         'not a finite number'),
    ]
    (tmp_path / 'text.npz').write_text('w = [0.1, 0.2]')
    (tmp_path / 'afile').write_text('')
    cases += [
        (gen_images, ['--network', net, '--ws', tmp_path / 'text.npz', '--outdir', tmp_path], 'text.npz: not a latents .npz'),
        (directions, ['--directions', tmp_path / 'text.npz', '--list'], 'text.npz: not a directions .npz'),
        (gen_images, ['--network', net, '--export-pt', tmp_path / 'afile' / 'x.pt'], f'{tmp_path / "afile"} is a file, not a folder'),
        (gen_images, ['--network', net, '--seeds', '0', '--outdir', tmp_path / 'afile'], 'afile is a file, not a folder'),
        (gen_video, ['--network', net, '--seeds', '0-1', '--output', tmp_path / 'afile' / 'v.mp4'],
         f'--output={tmp_path / "afile" / "v.mp4"}: {tmp_path / "afile"} is a file, not a folder'),
        (gen_video, ['--network', net, '--seeds', '0-1', '--output', tmp_path / 'v.gif'], 'videos are written as MP4'),
        (style_mixing, ['--network', net, '--rows', '0', '--cols', '1', '--outdir', tmp_path / 'afile' / 'm'],
         'afile is a file, not a folder'),
    ]
    if not torch.cuda.is_available():   # a CPU build of torch ended in "AssertionError: Torch not compiled with CUDA"
        cases.append((gen_images, ['--network', net, '--seeds', '0', '--device', 'cuda', '--outdir', tmp_path / 'c'],
                      '--device=cuda: this torch is built without CUDA'))
    for script, args, message in cases:
        code, out, err = run_script(script.main, *args)
        assert code != 0 and message in err, (args, err)
        assert len([line for line in err.strip().splitlines() if 'rror' in line]) == 1, err
        assert 'Traceback' not in err


def test_hand_labels_file(tmp_path, g2):
    seeds = list(range(60))
    ws = seeds_to_ws(g2, seeds)
    u = np.random.RandomState(1).randn(g2.w_dim)
    score = ws[:, 0].double().numpy() @ u
    (tmp_path / 'labels.json').write_text(json.dumps({'long': {str(s): float(v > np.median(score)) for s, v in zip(seeds, score)}}))
    net = tmp_path / 'g.pkl'
    save_snapshot(net, tiny_networks('stylegan2'))
    code, out, err = run_script(directions.main, '--network', net, '--discover', 'supervised', '--labels-from',
                                tmp_path / 'labels.json', '--directions', tmp_path / 'sup.npz')
    assert code == 0, err
    d = load_directions(tmp_path / 'sup.npz')
    assert d.names == ['long'] and d.vectors[0] @ (u / np.linalg.norm(u)) > 0.8


def test_the_hand_labels_example_in_the_docs_fits(tmp_path):
    # docs/editing.md showed two labelled seeds, and directions.py needs ten per label: the example must run.
    import re
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(repo, 'docs', 'editing.md')).read()
    example = re.search(r'```json\n(.*?)```', text, re.S)
    assert example, 'docs/editing.md has no hand-labels example'
    labels = json.loads(example.group(1))
    (tmp_path / 'labels.json').write_text(json.dumps(labels))
    code, out, err = run_script(directions.main, '--network=garments', '--class=dress', '--discover=supervised',
                                f'--labels-from={tmp_path / "labels.json"}', f'--directions={tmp_path / "hand.npz"}')
    assert code == 0, err
    assert load_directions(tmp_path / 'hand.npz').names == list(labels)
    assert 'at least 10 labelled seeds' in text


# ---------------------------------------------------------------------------------------------
# On the pretrained garment model (or the snapshot SG3C_EDIT_NETWORK names; SG3C_EDIT_NETWORK=train trains one).

@pytest.mark.slow
def test_supervised_darkness_direction_on_the_garment_model(tmp_path):
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    network = os.environ.get('SG3C_EDIT_NETWORK', 'garments')
    args = ['--train-kimg', '6', '--res', '16', '--workdir', str(tmp_path)] if network == 'train' else ['--network', network]
    r = subprocess.run([sys.executable, os.path.join(repo, 'benchmarks', 'edit_directions.py'), *args,
                        '--attributes', 'darkness', '--samples', '1500', '--eval-seeds', '64', '--strengths', '-2,-1,0,1,2',
                        '--json-out', str(tmp_path / 'out.jsonl')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads((tmp_path / 'out.jsonl').read_text().splitlines()[0])
    edit, control = row['edit'], row['control_random_direction']
    assert edit['mean_monotonic'], edit['mean']
    assert edit['per_seed_spearman_median'] > 0.8
    assert min(edit['class_kept']) >= 0.8, edit['class_kept']
    assert np.ptp(edit['mean']) > 3 * np.ptp(control['mean'])
    for method in ('ganspace', 'sefa'):
        assert row['unsupervised'][method]['identical_rerun']
        assert row['unsupervised'][method]['max_abs_gram_minus_identity'] < 1e-5


# ---------------------------------------------------------------------------------------------
# Named directions: found by an attribute's gradient, checked on held-out seeds (editing/check.py).

def test_max_margin_turns_every_gradient_the_right_way_where_the_mean_does_not():
    rng = np.random.RandomState(0)
    g = np.concatenate([np.tile([1.0, 0.0], (8, 1)), np.tile([-0.6, 0.8], (4, 1))]) + 0.01 * rng.randn(12, 2)
    mean = g.mean(0)
    assert ((g @ mean) > 0).mean() < 1          # the average direction lowers the attribute for some latents
    u = discovery.max_margin(g)
    assert np.isclose(np.linalg.norm(u), 1) and ((g @ u) > 0).all()


def test_a_gradient_direction_moves_its_measure_and_the_check_counts_it(g2c):
    from editing import check
    d = discovery.garment_directions(g2c, ['darkness'], num_samples=48, seed=1, classifier=check.garment_classifier())
    assert d.names == ['darkness'] and d.layer_start[0] == L.preset_range(g2c, 'fine')[0]
    result = check.CheckResult(**d.meta['checks']['darkness'])
    assert result.classes == ['class 0', 'class 1', 'class 2'] and result.seeds == check.CHECK_SEEDS
    assert min(min(row) for row in result.moved) >= 17, result.table()
    assert d.stats['check_worst'][0] == result.worst
    flipped = Directions(vectors=-d.vectors, names=['darkness'], layer_start=d.layer_start, layer_stop=d.layer_stop,
                         scale=d.scale, method='test', num_ws=d.num_ws)
    wrong = check.check_direction(g2c, flipped, 'darkness', check.garment_classifier(), seeds=6, strengths=(2,))
    assert max(row[0] for row in wrong.moved) <= 1 and not wrong.ok


def test_cli_supervised_garment_directions_print_their_check(tmp_path):
    net = tmp_path / 'g.pkl'
    save_snapshot(net, tiny_networks('stylegan2'))
    code, out, err = run_script(directions.main, '--network', net, '--discover', 'supervised', '--samples', 32,
                                '--labels-from', 'garments:darkness,coverage', '--directions', tmp_path / 'sup.npz')
    assert code == 0, err
    assert "held-out check of 'darkness'" in out and "held-out check of 'coverage'" in out
    assert out.count('needed in every class at every strength') == 2
    d = load_directions(tmp_path / 'sup.npz')
    assert d.names == ['darkness', 'coverage'] and set(d.meta['checks']) == {'darkness', 'coverage'}
    assert run_script(directions.main, '--directions', tmp_path / 'sup.npz', '--list')[0] == 0
