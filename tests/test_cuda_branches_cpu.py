"""The branches that normally run only on a GPU, run on the CPU: float16 layers with channels-last
layout (through dispatch.allow_cpu_fp16, a test-only switch) and torchrun with 2 nodes x 1 process."""
import os
import socket
import subprocess
import sys

import pytest
import torch

from networks import discriminator, stylegan2, stylegan3
from networks.snapshot import find_latest_snapshot
from torch_utils.ops.dispatch import allow_cpu_fp16, fp16_enabled
from training.loss import LossOptions, StyleGANLoss

from helpers.training import run_dir, state_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def tiny_data(rectangles):
    return rectangles(32, 16)   # test_train.py's training set


def tiny(family):
    torch.manual_seed(0)
    if family == 'stylegan2':
        G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3,
                                mapping_kwargs=dict(num_layers=1), channel_base=256, channel_max=16, num_fp16_res=2,
                                fp16_channels_last=True)
    else:
        G = stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3,
                                mapping_kwargs=dict(num_layers=1), channel_base=512, channel_max=16, num_layers=4,
                                num_critical=1, margin_size=2, num_fp16_res=2)
    D = discriminator.Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=16,
                                    num_fp16_res=2, block_kwargs=dict(fp16_channels_last=True))
    return G, D


def record_layer_outputs(net):
    """(dtype, channels-last?) of each convolution layer's output, in call order."""
    seen = []
    for m in net.modules():
        if type(m).__name__ in ('SynthesisLayer', 'Conv2dLayer'):
            m.register_forward_hook(lambda mod, i, o: seen.append(
                (o.dtype, o.ndim == 4 and o.shape[1] > 1 and o.is_contiguous(memory_format=torch.channels_last))))
    return seen


def test_switch_is_off_by_default_and_scoped():
    cpu = torch.device('cpu')
    assert fp16_enabled(torch.device('cuda')) and not fp16_enabled(cpu)
    with allow_cpu_fp16():
        assert fp16_enabled(cpu)
        with allow_cpu_fp16(False):
            assert not fp16_enabled(cpu)
        assert fp16_enabled(cpu)
    assert not fp16_enabled(cpu)


@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3-t'])
def test_float16_layers_run_on_cpu_and_agree_with_float32(family):
    G, D = tiny(family)
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    seen_g, seen_d = record_layer_outputs(G), record_layer_outputs(D)
    with torch.no_grad():
        img32 = G(z, None, noise_mode='const')
        logits32 = D(img32, None)
        assert {d for d, _ in seen_g + seen_d} == {torch.float32}
        seen_g.clear()
        seen_d.clear()
        with allow_cpu_fp16():
            img16 = G(z, None, noise_mode='const')
            logits16 = D(img32, None)
    # The highest resolutions ran in float16 (and, where configured, channels-last); the rest in float32.
    assert torch.float16 in {d for d, _ in seen_g}
    if family == 'stylegan2':
        assert (torch.float16, True) in seen_g and (torch.float32, False) in seen_g
    assert (torch.float16, True) in seen_d and torch.float32 in {d for d, _ in seen_d}
    assert img16.dtype == torch.float32 and torch.isfinite(img16).all()
    scale = img32.abs().max()
    assert (img16 - img32).abs().max() < 2e-2 * scale
    assert (img16 - img32).abs().max() > 0   # the half-precision path was really taken
    assert torch.allclose(logits16, logits32, rtol=2e-2, atol=2e-2 * logits32.abs().max())


def phase_gradients(family: str, fp16: bool, device: str = 'cpu', backend: str = 'auto') -> dict:
    """Parameter gradients of every loss phase (R1 and, for StyleGAN2, path length included: double backward
    through the float16, channels-last layers) on the tiny networks."""
    from torch_utils.ops import get_backend, set_backend
    G, D = tiny(family)
    G, D = G.to(device), D.to(device)
    for m in G.modules():
        if hasattr(m, 'noise_strength'):
            m.noise_strength.data.zero_()
    loss = StyleGANLoss(G, D, LossOptions(r1_gamma=1.0, pl_weight=2.0 if family == 'stylegan2' else 0))
    gen = torch.Generator().manual_seed(2)
    real = (torch.rand(4, 3, 32, 32, generator=gen) * 2 - 1).to(device)
    z, c = torch.randn(4, 8, generator=gen).to(device), torch.zeros(4, 0, device=device)
    phases = ['Gmain', 'Greg', 'Dmain', 'Dreg'] if family == 'stylegan2' else ['Gmain', 'Dmain', 'Dreg']
    grads = {}
    previous = get_backend()
    set_backend(backend)
    try:
        with allow_cpu_fp16(fp16):
            for phase in phases:
                net = G if phase.startswith('G') else D
                G.requires_grad_(net is G)
                D.requires_grad_(net is D)
                for p in list(G.parameters()) + list(D.parameters()):
                    p.grad = None
                torch.manual_seed(3)
                loss.accumulate_gradients(phase, real, c, z, c, gain=1, cur_nimg=0)
                grads[phase] = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]).cpu()
    finally:
        set_backend(previous)
    return grads


def assert_same_direction(grads: dict, want: dict, min_cos: float = 0.99) -> None:
    for phase in want:
        assert torch.isfinite(grads[phase]).all(), phase
        cos = torch.nn.functional.cosine_similarity(grads[phase].float(), want[phase].float(), dim=0)
        assert cos > min_cos, (phase, cos)


@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3-t'])
def test_float16_training_gradients_match_float32(family):
    assert_same_direction(phase_gradients(family, fp16=True), phase_gradients(family, fp16=False))


@pytest.mark.gpu
@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3-t'])
def test_cuda_kernels_train_like_reference_ops(family):
    """On a GPU (float16 layers on), every loss phase with the CUDA kernels against the reference ops."""
    want = phase_gradients(family, fp16=False, device='cuda', backend='ref')
    assert_same_direction(phase_gradients(family, fp16=False, device='cuda', backend='cuda'), want)


# ------------------------------------------------------------------ torchrun, 2 nodes x 1 process

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_nodes_one_process_each_trains_like_one_process(tmp_path, tiny_data):
    """Two torchrun launchers on localhost, one per node (rendezvous over TCP, gloo), give the weights of one
    process doing the whole batch (up to float noise; a wrong batch split moves weights by ~lr)."""
    # stylegan3-t: no path-length term, whose per-rank batch (NVIDIA's too) would legitimately differ
    common = ['--cfg=stylegan3-t', '--data', str(tiny_data), '--batch=4', '--gamma=1', '--cbase=256', '--cmax=16',
              '--map-depth=1', '--metrics=none', '--workers=0', '--mbstd-group=2', '--aug=noaug', '--kimg=0.008',
              '--tick=1', '--snap=1']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    one = subprocess.run([sys.executable, os.path.join(REPO, 'train.py'), '--outdir', str(tmp_path / 'one'),
                          '--gpus=1', *common], capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-2000:]

    port = free_port()
    nodes = [subprocess.Popen([sys.executable, '-m', 'torch.distributed.run', '--nnodes=2', '--nproc-per-node=1',
                               f'--node-rank={rank}', '--master-addr=127.0.0.1', f'--master-port={port}',
                               os.path.join(REPO, 'train.py'), '--outdir', str(tmp_path / 'two'), '--gpus=2', *common],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
             for rank in (0, 1)]
    outputs = [p.communicate(timeout=600)[0] for p in nodes]
    assert all(p.returncode == 0 for p in nodes), '\n'.join(o[-2000:] for o in outputs)

    runs = [n for n in os.listdir(tmp_path / 'two') if os.path.isdir(tmp_path / 'two' / n)]
    assert len(runs) == 1, runs   # one run directory, not one per rank
    assert 'on 2 process(es)' in open(os.path.join(run_dir(tmp_path / 'two'), 'log.txt')).read()
    a, b = state_of(find_latest_snapshot(tmp_path / 'one')), state_of(find_latest_snapshot(tmp_path / 'two'))
    assert a.keys() == b.keys()
    for net in ('G.', 'D.', 'G_ema.'):
        diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a if k.startswith(net) and a[k].is_floating_point()])
        assert diff.median() < 1e-5 and diff.max() < 4 * 0.002 * 2, (net, diff.median(), diff.max())
