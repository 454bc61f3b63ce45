"""Official NVIDIA pickles load into our classes and reproduce NVIDIA's own outputs."""
import json

import numpy as np
import pytest
import torch

from networks.snapshot import load_snapshot

FIXTURES = ['official_stylegan2_32_c3', 'official_stylegan2_64', 'official_stylegan3-t_64', 'official_stylegan3-r_64']


@pytest.fixture(scope='module', params=FIXTURES)
def official(request, fixtures_dir):
    name = request.param
    return name, load_snapshot(fixtures_dir / f'{name}.pkl'), np.load(fixtures_dir / f'{name}_ref.npz'), \
        json.loads((fixtures_dir / f'{name}_keys.json').read_text())


def test_state_dicts_match_nvidia_key_layout(official):
    _, data, _, keys = official
    for net, key in (('G', 'G_state'), ('D', 'D_state')):
        ours = {k: list(v.shape) for k, v in data[net].state_dict().items()}
        assert ours == {k: list(v) for k, v in keys[key].items()}


@torch.no_grad()
def test_mapping_synthesis_and_discriminator_match_reference(official):
    name, data, ref, _ = official
    G, D = data['G_ema'], data['D']
    for seed in range(4):
        for psi in (1.0, 0.7):
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
            c = torch.zeros(1, G.c_dim)
            if G.c_dim:
                c[0, seed % G.c_dim] = 1
            ws = G.mapping(z, c, truncation_psi=psi)
            img = G.synthesis(ws, noise_mode='const')
            logits = D(img, c)
            key = f'seed{seed}_psi{psi}'
            assert np.abs(ws.numpy() - ref[f'ws_{key}']).max() <= 1e-4
            assert np.abs(img.numpy() - ref[f'img_{key}']).max() <= 1e-4
            assert np.abs(logits.numpy() - ref[f'dlogits_{key}']).max() <= 1e-4


@torch.no_grad()
def test_a_batch_reproduces_the_reference_too(official):
    """Batches take other code paths than single images (StyleGAN2 on CPU: shared instead of per-sample
    convolution weights, demodulation from a matrix product)."""
    name, data, ref, _ = official
    G = data['G_ema']
    z = torch.from_numpy(np.concatenate([np.random.RandomState(seed).randn(1, G.z_dim) for seed in range(4)]))
    c = torch.zeros(4, G.c_dim)
    if G.c_dim:
        c[torch.arange(4), torch.arange(4) % G.c_dim] = 1
    img = G.synthesis(G.mapping(z, c), noise_mode='const')
    assert np.abs(img.numpy() - np.concatenate([ref[f'img_seed{seed}_psi1.0'] for seed in range(4)])).max() <= 1e-4


def test_family_detected_by_structure(official):
    name, data, _, _ = official
    module = type(data['G_ema']).__module__
    assert module == ('networks.stylegan3' if 'stylegan3' in name else 'networks.stylegan2')
