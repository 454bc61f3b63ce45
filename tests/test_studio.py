"""The app's model side (app/studio.py) without a browser: sessions, generate, mix, edit, invert, export,
and the shell commands it prints, which are run here to check that they rebuild the same image."""
import os
import shlex
import time

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import directions as directions_cli
import gen_images
import invert as invert_cli
import style_mixing
from app import studio as S
from editing.directions import save_directions
from editing.discovery import ganspace
from generation.seeds import generate_from_seeds
from networks.snapshot import save_snapshot
from helpers.networks import tiny_networks


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A tiny StyleGAN2 snapshot with a directions file beside it (same stem), and the Studio on them."""
    root = tmp_path_factory.mktemp('studio')
    data = tiny_networks('stylegan2')
    save_snapshot(root / 'tiny.pkl', data)
    d = ganspace(data['G_ema'], num_samples=200, num_components=4).renamed({'pc0': 'darker', 'pc1': 'sleeve'})
    save_directions(root / 'tiny-directions.npz', d)
    return root


@pytest.fixture()
def studio(files):
    return S.Studio.load(str(files / 'tiny.pkl'), w_avg_samples=500)


def run_commands(text, cwd, monkeypatch):
    """Run the script lines of `studio.commands` in `cwd` with CliRunner."""
    monkeypatch.chdir(cwd)
    scripts = {'gen_images.py': gen_images.main, 'invert.py': invert_cli.main, 'style_mixing.py': style_mixing.main,
               'directions.py': directions_cli.main}
    for line in text.splitlines():
        if not line.startswith('python '):
            continue
        args = shlex.split(line)
        result = CliRunner().invoke(scripts[args[1]], args[2:])
        assert result.exit_code == 0, (line, result.output)


def recipe_lines(commands):
    """The commands that rebuild from scratch (not the one that reads the exported files)."""
    return commands.split('# exactly')[0]


def png(path):
    return np.asarray(PIL.Image.open(path))


def test_studio_finds_the_directions_beside_the_network(studio, files):
    assert studio.directions_path == str(files / 'tiny-directions.npz')
    assert studio.directions.names[:2] == ['darker', 'sleeve']


def test_seed_matches_gen_images_and_sessions_are_independent(studio):
    a, b = S.Session(), S.Session()
    studio.set_garment(a, studio.seed_garment(7, truncation=0.7))
    studio.set_garment(b, studio.seed_garment(7, truncation=0.7))
    (_, expected), = generate_from_seeds(studio.G, [7], truncation_psi=0.7)
    assert np.array_equal(studio.render(a), expected)
    studio.set_strength(a, 'darker', 2.5)
    assert not np.array_equal(studio.render(a), expected)
    assert np.array_equal(studio.render(b), expected)          # b never sees a's slider
    studio.reset_edits(a)
    assert np.array_equal(studio.render(a), expected)


def test_slider_moves_ws_by_strength_times_std_on_the_chosen_rows(studio):
    s = S.Session()
    studio.set_garment(s, studio.seed_garment(3))
    base = s.garment.ws.double()
    d = studio.directions
    studio.set_strength(s, 'sleeve', -1.5)
    moved = studio.current_ws(s).double() - base
    expected = -1.5 * float(d.scale[1]) * torch.from_numpy(d.vectors[1]).double()
    assert torch.allclose(moved[0], expected.expand_as(moved[0]), atol=1e-5)
    studio.set_edit_layers(s, '2-3')
    moved = studio.current_ws(s).double() - base
    assert torch.equal(moved[0, [0, 1, 4, 5]], torch.zeros(4, moved.shape[2], dtype=moved.dtype))
    assert torch.allclose(moved[0, 2:4], expected.expand(2, -1), atol=1e-5)
    with pytest.raises(S.StudioError, match=r'\+-3'):
        studio.set_strength(s, 'sleeve', 3.5)
    with pytest.raises(S.StudioError):
        studio.set_edit_layers(s, '4-9')
    with pytest.raises(ValueError, match="no direction named 'nonexistent'"):
        studio.set_strength(s, 'nonexistent', 1)


def test_mix_takes_style_rows_from_b_and_presets_follow_the_cli(studio):
    a, b = studio.seed_garment(1), studio.seed_garment(2)
    for preset in S.MIX_PRESETS:
        start, stop = studio.presets()[preset]
        assert studio.mix_rows(preset) == list(range(start, stop))
    rows = studio.mix_rows(cut=4)
    assert rows == [4, 5]
    mixed = studio.mix(a, b, rows)
    assert torch.equal(mixed.ws[0, :4], a.ws[0, :4]) and torch.equal(mixed.ws[0, 4:], b.ws[0, 4:])
    with pytest.raises(S.StudioError):
        studio.mix_rows(cut=studio.G.num_ws)


def test_grid_pick_makes_that_seed_current(studio):
    s = S.Session()
    cells = studio.seed_grid(s, 10, 4, truncation=0.5)
    assert [c for _, c in cells] == ['seed 10', 'seed 11', 'seed 12', 'seed 13']
    studio.set_garment(s, studio.pick_from_grid(s, 2))
    assert np.array_equal(studio.render(s), cells[2][0])
    assert s.garment.recipe == dict(kind='seed', seed=12, trunc=0.5, cls=None)


def test_printed_commands_rebuild_the_edited_seed_and_the_mix(studio, files, tmp_path, monkeypatch):
    s = S.Session()
    studio.set_garment(s, studio.seed_garment(5, truncation=0.8))
    studio.set_strength(s, 'darker', 1.75)
    studio.set_strength(s, 'sleeve', -2.2)
    studio.set_edit_layers(s, 'fine')
    run_commands(recipe_lines(studio.commands(s)), tmp_path, monkeypatch)
    assert np.array_equal(png(tmp_path / 'out' / 'seed0005-edited.png'), studio.render(s))

    studio.set_garment(s, studio.mix(studio.seed_garment(5, 0.8), studio.seed_garment(9, 0.8), studio.mix_rows(cut=3)))
    studio.set_strength(s, 'darker', -1)
    (tmp_path / 'mix').mkdir()
    run_commands(recipe_lines(studio.commands(s)), tmp_path / 'mix', monkeypatch)
    grid = png(tmp_path / 'mix' / 'out' / 'mix-grid.png')
    r = studio.resolution
    assert np.array_equal(grid[r:2 * r, r:2 * r], studio.render(s))


def test_export_and_exact_command(studio, tmp_path, monkeypatch):
    s = S.Session()
    studio.set_garment(s, studio.seed_garment(4))
    studio.set_strength(s, 'sleeve', 3)
    paths = studio.export(s, tmp_path)
    assert [os.path.basename(p) for p in paths] == ['garment.png', 'garment.npz']
    assert np.array_equal(png(paths[0]), studio.render(s))
    exact = studio.commands(s).splitlines()[-1]
    run_commands(exact, tmp_path, monkeypatch)
    assert np.array_equal(png(tmp_path / 'out' / 'garment.png'), studio.render(s))


def test_discovered_components_belong_to_the_session(studio):
    a, b = S.Session(), S.Session()
    d = studio.discover(a, components=3, samples=100)
    assert d.names == ['pc0', 'pc1', 'pc2'] and studio.directions_of(a) is d
    assert studio.directions_of(b) is studio.directions
    assert studio.discover(b, components=3, samples=100) is d     # computed once


def test_uploads_are_read_as_images_with_limits(tmp_path, monkeypatch):
    img = np.random.RandomState(0).randint(0, 255, [20, 30, 3], dtype=np.uint8)
    PIL.Image.fromarray(img).save(tmp_path / 'ok.png')
    assert np.array_equal(S.read_upload(tmp_path / 'ok.png'), img)
    (tmp_path / 'notes.png').write_text('not an image')
    with pytest.raises(S.StudioError, match='notes.png: not an image'):
        S.read_upload(tmp_path / 'notes.png')
    PIL.Image.fromarray(img).save(tmp_path / 'icon.ico')          # Pillow reads it, uploads may not be one
    with pytest.raises(S.StudioError, match='not an image'):
        S.read_upload(tmp_path / 'icon.ico')
    with pytest.raises(S.StudioError, match='MB'):
        S.read_upload(tmp_path / 'ok.png', max_bytes=100)
    (tmp_path / 'cut.png').write_bytes((tmp_path / 'ok.png').read_bytes()[:200])
    with pytest.raises(S.StudioError, match='cut.png: .*truncated'):
        S.read_upload(tmp_path / 'cut.png')
    monkeypatch.setattr('data.image_io.MAX_PIXELS', 500)   # the limits every image reader shares
    with pytest.raises(S.StudioError, match='30x20 pixels is more than'):
        S.read_upload(tmp_path / 'ok.png')


def test_mask_from_strokes():
    layer = np.zeros([8, 8, 4], np.uint8)
    assert S.mask_from_strokes([layer], (8, 8)) is None
    layer[2:4, 3:5, 3] = 255
    mask = S.mask_from_strokes([layer], (16, 16))
    assert mask.sum() == 16 and mask[4:8, 6:10].all()


def test_projection_in_background_matches_invert_py(studio, tmp_path, monkeypatch):
    photo = generate_from_seeds(studio.G, [11]).__next__()[1]
    PIL.Image.fromarray(photo).save(tmp_path / 'shirt.png')
    before = {k: v.clone() for k, v in studio.G.state_dict().items()}
    s = S.Session()
    target = studio.prepare_photo(S.read_upload(tmp_path / 'shirt.png'), name='shirt')
    job = studio.start_inversion(s, target, 'project', steps=12, photo_file='shirt.png')
    assert job.wait(60) and job.error is None
    assert job.progress()[0] == 1 and job.step == 12
    garment = studio.finish_inversion(s)
    assert s.garment is garment and garment.G is not studio.G
    assert all(torch.equal(v, studio.G.state_dict()[k]) for k, v in before.items())   # shared G untouched
    run_commands(recipe_lines(studio.commands(s)), tmp_path, monkeypatch)
    assert np.abs(png(tmp_path / 'out' / 'shirt_project-w.png').astype(int) - studio.render(s)).max() <= 1


def test_pti_result_exports_its_generator_and_cancel_stops_a_job(studio, tmp_path, monkeypatch):
    photo = np.full([24, 20, 3], 200, np.uint8)
    photo[6:18, 5:15] = (30, 60, 150)
    s = S.Session()
    job = studio.start_inversion(s, studio.prepare_photo(photo, name='blue'), 'pti', steps=4, pti_steps=4)
    assert job.wait(60) and job.error is None and job.total == 8 and job.step == 8
    g = studio.finish_inversion(s)
    assert g.tuned and any(not torch.equal(p, q) for p, q in zip(g.G.parameters(), studio.G.parameters()))
    studio.set_strength(s, 'darker', 1)
    paths = studio.export(s, tmp_path)
    assert os.path.basename(paths[-1]) == 'garment_generator.pt'
    run_commands(studio.commands(s).splitlines()[-1], tmp_path, monkeypatch)
    assert np.array_equal(png(tmp_path / 'out' / 'garment.png'), studio.render(s))

    long_job = studio.start_inversion(s, studio.prepare_photo(photo, name='blue'), 'project', steps=S.MAX_STEPS)
    time.sleep(0.2)
    long_job.cancel()
    assert long_job.wait(30) and long_job.error == 'cancelled' and long_job.step < S.MAX_STEPS
    with pytest.raises(S.StudioError, match='cancelled'):
        studio.finish_inversion(s)
    assert s.garment is g


def test_network_names_resolve_to_files_or_the_pretrained_folder_only(tmp_path):
    from networks.snapshot import shipped_models
    assert S.resolve_network('garments').path == shipped_models()['garments']
    with pytest.raises(S.StudioError, match='holds no network-snapshot'):
        S.resolve_network(str(tmp_path))
    run = tmp_path / '00000-run'
    run.mkdir()
    for kimg in (4, 8):
        save_snapshot(run / f'network-snapshot-{kimg:06d}.pkl', tiny_networks('stylegan2'))
    newest = str(run / 'network-snapshot-000008.pkl')
    assert S.resolve_network(str(tmp_path)).path == newest == S.resolve_network(str(run)).path   # pinned to the file now
    assert S.resolve_network(str(run)).command_name(str(run)) == newest
    assert S.resolve_network('garments').command_name('garments') == 'garments'
    with pytest.raises(S.StudioError, match='not the name of a model in pretrained'):
        S.resolve_network('shoes')
    with pytest.raises(S.StudioError, match=r'did you mean garments\?'):
        S.resolve_network('garmnets')
    with pytest.raises(S.StudioError, match='no such file'):
        S.resolve_network('elsewhere/model.pkl')


def test_directions_for_another_network_are_refused_in_one_line(files, tmp_path):
    d = ganspace(tiny_networks('stylegan3')['G_ema'], num_samples=50, num_components=2)
    d.num_ws = 7
    d.layer_stop[:] = 7
    save_directions(tmp_path / 'other.npz', d)
    with pytest.raises(S.StudioError, match='num_ws=7'):
        S.Studio.load(str(files / 'tiny.pkl'), str(tmp_path / 'other.npz'))


def test_commands_name_the_class_as_the_snapshot_does(tmp_path, monkeypatch):
    data = tiny_networks('stylegan2', c_dim=2)
    data['training_set_kwargs'] = dict(path='x.zip', use_labels=True, class_names=['shirt', 'dress'])
    save_snapshot(tmp_path / 'cond.pkl', data)
    studio = S.Studio.load(str(tmp_path / 'cond.pkl'), w_avg_samples=100)
    s = S.Session()
    studio.set_garment(s, studio.seed_garment(3, 0.7, 1))
    line = S._recipe_commands(s.garment.recipe, studio.network_arg, studio.G.class_names)[0]
    assert line.endswith('--seeds=3 --trunc=0.7 --class=dress'), line
    run_commands(recipe_lines(studio.commands(s)), tmp_path, monkeypatch)
    assert np.array_equal(png(tmp_path / 'out' / 'seed0003.png'), studio.render(s))


def test_inversion_progress_counts_each_stage_on_its_own(studio, monkeypatch):
    # The page said "step 42 of 200" where 200 was projection plus PTI.
    texts = []
    step = S.InversionJob._on_step

    def spy(self, stage, i, losses):
        step(self, stage, i, losses)
        texts.append(self.progress())
    monkeypatch.setattr(S.InversionJob, '_on_step', spy)
    photo = np.full([24, 20, 3], 200, np.uint8)
    photo[6:18, 5:15] = (30, 60, 150)
    job = studio.start_inversion(S.Session(), studio.prepare_photo(photo, name='blue'), 'pti', steps=3, pti_steps=2)
    assert job.wait(60) and job.error is None
    assert texts[0][1] == 'projecting into W: step 1 of 3, then 2 PTI tuning steps'
    assert texts[-1] == (1.0, 'tuning the generator (PTI): step 2 of 2')
    assert all(' of 5' not in text for _, text in texts)


def test_an_empty_seed_box_asks_for_a_seed(studio):
    # It said "None is not a seed".
    for empty in (None, '', ' '):
        with pytest.raises(S.StudioError, match='enter a seed: a whole number from 0 to'):
            studio.seed_garment(empty, 0.7, 0)


def test_running_inversions_are_capped_across_sessions_and_logged_when_they_end(studio):
    """Issue 32: clients that start a job and vanish piled up threads; at most MAX_RUNNING_INVERSIONS run on the
    server, whichever sessions started them, and each one's end is one line in the server's log."""
    lines = []
    studio.log = lines.append
    photo = np.full([24, 20, 3], 200, np.uint8)
    target = studio.prepare_photo(photo, name='blue')
    sessions = [S.Session() for _ in range(S.MAX_RUNNING_INVERSIONS + 1)]
    jobs = [studio.start_inversion(s, target, 'project', steps=S.MAX_STEPS) for s in sessions[:-1]]
    assert studio.running_inversions() == S.MAX_RUNNING_INVERSIONS
    with pytest.raises(S.StudioError, match='try again when one has finished'):
        studio.start_inversion(sessions[-1], target, 'project', steps=S.MAX_STEPS)
    assert sessions[-1].job is None
    sessions[0].close()                       # its page went away: the job stops at its next step
    assert jobs[0].wait(30) and jobs[0].error == 'cancelled'
    last = studio.start_inversion(sessions[-1], target, 'project', steps=2)
    assert last.wait(60) and last.error is None
    jobs[1].cancel()
    assert jobs[1].wait(30) and studio.running_inversions() == 0
    assert len(lines) == 3 and all(line.startswith('inversion of blue (project) ') for line in lines), lines
    assert sum('stopped: cancelled at step' in line for line in lines) == 2 and any('done in' in line for line in lines)
