"""The augmentation's resampling: torch's bilinear grid_sample values with gradients of every order on
every device (torch's own has no double backward on CUDA, which stopped GPU training with R1)."""
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops.grid_sample import grid_sample_bilinear


def case(device='cpu', dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 7, 9, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    grid = (torch.rand(2, 5, 6, 2, generator=gen, dtype=dtype) * 2.4 - 1.2).to(device)   # some outside: zeros
    weight = torch.randn(3, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    return x, grid, weight


def r1_like(sample, x, grid, weight):
    """What the R1 penalty does: a score of the sampled images, its gradient w.r.t. the images, and the
    gradient of that gradient's norm w.r.t. the score's parameters."""
    y = sample(x, grid)
    score = (y.tanh() * weight.view(1, -1, 1, 1)).sum()
    (gx,) = torch.autograd.grad(score, x, create_graph=True)
    (gw,) = torch.autograd.grad(gx.square().sum(), weight)
    return y, gx, gw


@pytest.mark.parametrize('align_corners', [False, True])
def test_values_and_both_orders_match_torch_on_the_cpu(align_corners):
    x, grid, weight = case()
    ours = r1_like(lambda t, g: grid_sample_bilinear(t, g, align_corners), x, grid, weight)
    torch_ = r1_like(lambda t, g: F.grid_sample(t, g, 'bilinear', 'zeros', align_corners), x, grid, weight)
    for a, b in zip(ours, torch_):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert ours[2].abs().sum() > 0


def test_gradcheck_to_second_order():
    x, grid, _ = case()
    fn = lambda t: grid_sample_bilinear(t, grid)   # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_a_grid_that_needs_gradients_is_refused():
    x, grid, _ = case()
    with pytest.raises(ValueError, match='grid'):
        grid_sample_bilinear(x, grid.requires_grad_(True))


@pytest.mark.gpu
def test_second_order_on_cuda_matches_the_cpu():
    cpu = r1_like(grid_sample_bilinear, *case())
    cuda = r1_like(grid_sample_bilinear, *case('cuda'))
    for a, b in zip(cpu, cuda):
        torch.testing.assert_close(a, b.cpu(), atol=1e-10, rtol=0)
