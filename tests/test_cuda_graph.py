"""CUDA graphs for generation (torch_utils/cuda_graph.py) and the no-synchronisation property of the ops
that graphs rely on. Only the pass-through runs without a GPU."""
import numpy as np
import pytest
import torch

from networks import stylegan3
from generation.seeds import generate_from_seeds
from torch_utils.cuda_graph import GraphedFunction
from torch_utils.ops import cuda_kernels, dispatch


def tiny_generator(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    G = stylegan3.Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3, channel_base=256,
                            channel_max=16, mapping_kwargs=dict(num_layers=2))
    return G.eval().requires_grad_(False).to(device)


def test_cpu_calls_run_eagerly():
    calls = []

    def fn(x):
        calls.append(1)
        return x * 2

    graphed = GraphedFunction(fn)
    x = torch.arange(4.0)
    assert torch.equal(graphed(x), x * 2) and torch.equal(graphed(x + 1), (x + 1) * 2)
    assert len(calls) == 2 and graphed.graphs == {}


@pytest.mark.gpu
def test_replay_matches_eager_and_captures_once_per_shape():
    calls = []

    def fn(x):
        calls.append(1)
        return torch.nn.functional.relu(x @ x.T) + 1

    graphed = GraphedFunction(fn, warmup=2)
    for n in (8, 8, 8, 16):
        x = torch.randn([n, n], device='cuda')
        assert torch.equal(graphed(x), fn(x))
    assert len(graphed.graphs) == 2 and all(entry is not None for entry in graphed.graphs.values())


@pytest.mark.gpu
def test_graphed_generation_gives_the_same_images():
    assert cuda_kernels.load() is None, cuda_kernels.failure()
    G = tiny_generator('cuda')
    seeds = [3, 1, 4, 1, 5]
    eager = [img for _, img in generate_from_seeds(G, seeds, cuda_graph=False)]
    graphed = [img for _, img in generate_from_seeds(G, seeds, cuda_graph=True)]
    assert all(np.array_equal(a, b) for a, b in zip(eager, graphed))


@pytest.mark.gpu
@pytest.mark.parametrize('backend', ['cuda', 'ref'])
def test_generator_forward_and_backward_never_synchronise(backend):
    """Once warm (kernels built, plans and choices made), a StyleGAN3 forward and backward with the kernels,
    or with the reference ops, issue no call that waits for the device."""
    assert cuda_kernels.load() is None, cuda_kernels.failure()
    previous = dispatch.get_backend()
    dispatch.set_backend(backend)
    try:
        G = tiny_generator('cuda').requires_grad_(True)
        z = torch.randn([2, 16], device='cuda')

        def step():
            img = G(z, None, noise_mode='const')
            (img.square().sum()).backward()

        step()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode('error')
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode('default')
    finally:
        dispatch.set_backend(previous)
