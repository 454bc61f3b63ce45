"""The CUDA path's gradients, checked on whatever device runs it (the kernels on the CPU harness, or a GPU)."""
import torch

from torch_utils.ops.bias_act import bias_act
from torch_utils.ops.filtered_lrelu import filtered_lrelu
from torch_utils.ops.upfirdn2d import setup_filter, upfirdn2d


def check_kernels_twice_differentiable(device: str) -> None:
    """gradcheck and gradgradcheck (float64) of each op through its CUDA path."""
    x = torch.randn([1, 2, 5, 6], dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn([2], dtype=torch.float64, device=device, requires_grad=True)
    f = setup_filter([1, 3, 4, 2], device=device)
    fs = setup_filter([1, 2, 5, 3, 6, 4, 2, 1], device=device)
    ops = [lambda x, b: bias_act(x + 0.01, b, act='lrelu', alpha=0.2, gain=1.4, clamp=2.5, impl='cuda'),
           lambda x, b: upfirdn2d(x, f, up=2, down=1, padding=[2, 1, 1, 2], impl='cuda') * b.sum(),
           lambda x, b: filtered_lrelu(x + 0.01, fs, fs, b, up=2, down=2, padding=[7, 6, 7, 6], clamp=2, impl='cuda')]
    for op in ops:
        assert torch.autograd.gradcheck(op, (x, b))
        assert torch.autograd.gradgradcheck(op, (x, b))


# ------------------------------------------------------------------ backend choice
