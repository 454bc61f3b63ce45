"""Snapshot I/O: safety of the unpickler, round trips, .pt exports, atomic writes."""
import pickle

import pytest
import torch

from networks.snapshot import SnapshotError, export_pt, load_generator, load_snapshot, save_snapshot

from helpers.networks import Evil, outputs, tiny_networks


def test_pickle_that_runs_code_is_refused_and_code_does_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps(dict(G=Evil(), D=None, G_ema=None)))
    with pytest.raises(SnapshotError, match=r'refusing to load global (posix|os|nt)\.system'):
        load_snapshot(path)
    assert not (tmp_path / 'PWNED').exists()


def test_global_outside_allow_list_is_named(tmp_path):
    path = tmp_path / 'other.pkl'
    path.write_bytes(pickle.dumps({'G': pytest.approx}))
    with pytest.raises(SnapshotError, match='not on the allow-list'):
        load_snapshot(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SnapshotError, match='no such file'):
        load_snapshot(tmp_path / 'nope.pkl')


@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3'])
def test_save_load_round_trip_is_identical(tmp_path, family):
    data = tiny_networks(family, c_dim=2)
    path = tmp_path / 'snap.pkl'
    save_snapshot(path, data)
    loaded = load_snapshot(path)
    assert loaded['training_set_kwargs'] == data['training_set_kwargs']
    for a, b in zip(outputs(data), outputs(loaded)):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in loaded['G'].parameters())


@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3'])
def test_pkl_to_pt_round_trip_is_identical(tmp_path, family):
    data = tiny_networks(family)
    save_snapshot(tmp_path / 'snap.pkl', data)
    export_pt(load_snapshot(tmp_path / 'snap.pkl'), tmp_path / 'snap.pt')
    raw = torch.load(tmp_path / 'snap.pt', weights_only=True)   # a plain weights-only file
    assert set(raw['networks']) == {'G', 'D', 'G_ema'}
    loaded = load_snapshot(tmp_path / 'snap.pt')
    for a, b in zip(outputs(data), outputs(loaded)):
        assert torch.equal(a, b)


def test_official_pickle_exports_to_pt_identically(tmp_path, fixtures_dir):
    src = fixtures_dir / 'official_stylegan3-r_64.pkl'
    export_pt(load_snapshot(src), tmp_path / 'r.pt')
    a, b = load_generator(src), load_generator(tmp_path / 'r.pt')
    z = torch.randn(1, a.z_dim)
    with torch.no_grad():
        assert torch.equal(a(z, None), b(z, None))


def test_interrupted_write_keeps_previous_snapshot(tmp_path, monkeypatch):
    data = tiny_networks()
    path = tmp_path / 'snap.pkl'
    save_snapshot(path, data)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(pickle, 'dump', crash)
    with pytest.raises(KeyboardInterrupt):
        save_snapshot(path, data)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['snap.pkl']   # no temp file left behind


def test_truncated_file_is_a_clear_error(tmp_path):
    save_snapshot(tmp_path / 'snap.pkl', tiny_networks())
    blob = (tmp_path / 'snap.pkl').read_bytes()
    (tmp_path / 'cut.pkl').write_bytes(blob[:len(blob) // 2])
    with pytest.raises(SnapshotError, match='cut.pkl'):
        load_snapshot(tmp_path / 'cut.pkl')


def test_an_export_of_g_ema_alone_loads(tmp_path):
    """The pretrained model and PTI results ship G_ema only; the loader must not ask for G and D too."""
    G = tiny_networks('stylegan2')['G_ema']
    export_pt(dict(G_ema=G), tmp_path / 'g.pt')
    data = load_snapshot(tmp_path / 'g.pt')
    assert data['G'] is None and data['D'] is None
    assert torch.equal(load_generator(tmp_path / 'g.pt').mapping.fc0.weight, G.mapping.fc0.weight)


def test_a_mistyped_network_gets_the_short_names_and_the_closest_match(tmp_path, monkeypatch):
    from networks.snapshot import SnapshotError, load_snapshot, resolve_source
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SnapshotError) as info:
        resolve_source('garmnets')
    assert 'not the name of a model in pretrained/ (garments)' in str(info.value) \
        and 'did you mean garments?' in str(info.value)
    (tmp_path / 'runs').mkdir()
    save_snapshot(tmp_path / 'runs' / 'network-snapshot-000004.pkl', tiny_networks('stylegan2'))
    with pytest.raises(SnapshotError, match=r'did you mean runs/network-snapshot-000004\.pkl\?'):
        load_snapshot('runs/network-snaphot-000004.pkl')
    with pytest.raises(SnapshotError) as info:
        load_snapshot('completely-different')
    assert 'did you mean' not in str(info.value)
