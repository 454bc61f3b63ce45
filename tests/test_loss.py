"""Our loss on our loaded networks gives NVIDIA's parameter gradients (fixtures *_grads.npz)."""
import numpy as np
import pytest
import torch

from networks.snapshot import load_snapshot
from training.loss import LossOptions, StyleGANLoss, WGANGPLoss, gaussian_blur


@pytest.mark.parametrize('cfg', ['stylegan2', 'stylegan3-t', 'stylegan3-r'])
def test_gradients_match_nvidia(fixtures_dir, cfg):
    data = load_snapshot(fixtures_dir / f'official_{cfg}_64.pkl')
    ref = np.load(fixtures_dir / f'official_{cfg}_64_grads.npz')
    G, D = data['G'].train(), data['D'].train()
    for module in G.modules():
        if hasattr(module, 'noise_strength'):
            module.noise_strength.data.zero_()
    real = torch.from_numpy(ref['real_u8']).to(torch.float32) / 127.5 - 1
    z = torch.from_numpy(ref['gen_z'])
    c = torch.zeros([z.shape[0], 0])
    loss = StyleGANLoss(G, D, LossOptions(r1_gamma=2.0))
    for phase, net, prefix, gain in (('Gmain', G, 'G', 1), ('Dmain', D, 'D', 1), ('Dreg', D, 'D', 16)):
        G.requires_grad_(net is G)
        D.requires_grad_(net is D)
        for p in list(G.parameters()) + list(D.parameters()):
            p.grad = None
        loss.accumulate_gradients(phase, real, c, z, c, gain=gain, cur_nimg=0)
        compared = 0
        for name, p in net.named_parameters():
            key = f'{phase}/{prefix}.{name}'
            if key not in ref:
                continue
            grad = p.grad.numpy() if p.grad is not None else np.zeros(p.shape, np.float32)
            scale = max(np.abs(ref[key]).max(), 1e-8)
            assert np.abs(grad - ref[key]).max() <= 1e-3 * scale, key
            compared += 1
        assert compared >= 20


def test_blur_preserves_constant_images_and_zero_sigma_is_identity():
    img = torch.ones(1, 3, 32, 32)
    assert torch.equal(gaussian_blur(img, 0), img)
    out = gaussian_blur(img, 2)
    assert torch.allclose(out[:, :, 8:-8, 8:-8], img[:, :, 8:-8, 8:-8], atol=1e-6)


def test_wgan_gp_trains_d_towards_separating_reals_and_fakes():
    from helpers.networks import tiny_networks
    nets = tiny_networks('stylegan2')
    G, D = nets['G'], nets['D']
    loss = WGANGPLoss(G, D, LossOptions())
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    real = torch.ones(4, 3, 16, 16) * 0.8
    torch.manual_seed(0)
    for _ in range(20):
        D.requires_grad_(True)
        opt.zero_grad()
        loss.accumulate_gradients('Dmain', real, torch.zeros(4, 0), torch.randn(4, 8), torch.zeros(4, 0), 1, 0)
        opt.step()
    with torch.no_grad():
        gap = D(real, None).mean() - D(G(torch.randn(4, 8), None), None).mean()
    assert gap > 0.5


def test_wgan_gp_has_no_lazy_regularisation_so_both_phases_equal_main():
    # The gradient penalty belongs to D main: a Dboth phase (no lazy regularisation) computes it too,
    # and path length and R1 are off whatever their weights.
    from helpers.networks import tiny_networks
    nets = tiny_networks('stylegan2')
    G, D = nets['G'], nets['D']
    loss = WGANGPLoss(G, D, LossOptions(r1_gamma=5, pl_weight=2))
    real, z, c = torch.randn(4, 3, 16, 16), torch.randn(4, 8), torch.zeros(4, 0)
    grads = {}
    for phase, net in (('Dmain', D), ('Dboth', D), ('Dreg', D), ('Gmain', G), ('Gboth', G), ('Greg', G)):
        net.requires_grad_(True)
        for p in net.parameters():
            p.grad = None
        torch.manual_seed(0)
        loss.accumulate_gradients(phase, real, c, z, c, gain=1, cur_nimg=0)
        grads[phase] = [p.grad.clone() if p.grad is not None else None for p in net.parameters()]
        net.requires_grad_(False)
    for main, both, reg in (('Dmain', 'Dboth', 'Dreg'), ('Gmain', 'Gboth', 'Greg')):
        assert any(g is not None for g in grads[main])
        assert [g is None for g in grads[main]] == [g is None for g in grads[both]]
        assert all(torch.equal(a, b) for a, b in zip(grads[main], grads[both]) if a is not None)
        assert all(g is None for g in grads[reg])
