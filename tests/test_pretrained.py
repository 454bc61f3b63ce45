"""Short names of the models shipped in pretrained/ (`--network=garments`) and the quality-bar helpers."""
import os

import numpy as np
import pytest
import torch

import pretrained
from networks.snapshot import SnapshotError, export_pt, load_generator
from pretrained import quality
from tests.test_snapshot import outputs, tiny_networks


def test_names_resolve_to_files_in_the_folder():
    path = pretrained.resolve_pretrained('garments')
    filename = pretrained.MODELS['garments']
    assert path == os.path.join(pretrained.FOLDER, filename)
    assert pretrained.resolve_pretrained(filename) == path
    assert pretrained.resolve_pretrained(os.path.splitext(filename)[0]) == path
    assert pretrained.resolve_pretrained('no-such-model') is None


def test_load_generator_accepts_a_short_name(tmp_path, monkeypatch):
    data = tiny_networks('stylegan2', c_dim=2)
    export_pt(data, tmp_path / 'tiny-model.pt')
    monkeypatch.setattr(pretrained, 'FOLDER', str(tmp_path))
    monkeypatch.setitem(pretrained.MODELS, 'tiny', 'tiny-model.pt')
    monkeypatch.chdir(tmp_path / '..')
    G = load_generator('tiny')
    assert torch.equal(outputs(dict(data, G_ema=G))[0], outputs(data)[0])
    assert load_generator('tiny-model') is not None
    # A name that is no file and no shipped model is still the plain error.
    with pytest.raises(SnapshotError, match='nothing-here: no such file'):
        load_generator('nothing-here')


def test_an_existing_path_wins_over_a_short_name(tmp_path, monkeypatch):
    export_pt(tiny_networks('stylegan2', c_dim=0), tmp_path / 'garments')
    monkeypatch.chdir(tmp_path)
    assert load_generator('garments').c_dim == 0     # the local file, not the shipped conditional model


def test_generate_is_deterministic_and_conditional():
    G = tiny_networks('stylegan2', c_dim=2)['G_ema'].eval()
    a = quality.generate(G, np.array([0, 1, 0]), seed=3, batch=2)
    b = quality.generate(G, np.array([0, 1, 0]), seed=3, batch=3)
    assert a.shape == (3, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    c = quality.generate(G, np.array([1, 1, 0]), seed=3)
    assert not np.array_equal(a[0], c[0]) and np.array_equal(a[2], c[2])
