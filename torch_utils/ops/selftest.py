"""The check the CUDA kernels must pass at first use, before any run relies on them: each public op with
the kernels against itself with the reference ops, on tiny inputs, values and gradients."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch

from .bias_act import bias_act
from .filtered_lrelu import filtered_lrelu
from .upfirdn2d import setup_filter, upfirdn2d

Ops = dict[str, Callable]


def backend_ops(impl: str) -> Ops:
    """The public ops pinned to one implementation ('ref' or 'cuda')."""
    return {'bias_act': lambda *a, **k: bias_act(*a, **k, impl=impl),
            'upfirdn2d': lambda *a, **k: upfirdn2d(*a, **k, impl=impl),
            'filtered_lrelu': lambda *a, **k: filtered_lrelu(*a, **k, impl=impl)}


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """cuDNN convolutions and matmuls in true float32 (PyTorch lets cuDNN use TF32 by default, whose ~1e-3
    relative error would hide or fake a kernel's error), restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def agree_with_reference(device: torch.device, candidate: Optional[Ops] = None,
                         reference: Optional[Ops] = None, tol: float = 1e-4) -> Optional[str]:
    """None when `candidate` (default: the CUDA kernels) matches `reference` (default: the reference ops),
    else which op disagreed and by how much."""
    candidate = candidate or backend_ops('cuda')
    reference = reference or backend_ops('ref')
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 3, 9, 7], generator=gen).to(device)
    b = torch.randn([3], generator=gen).to(device)
    # Asymmetric taps, so that a filter applied the wrong way round shows.
    f = setup_filter([1, 3, 4, 2], device=device)
    f1 = setup_filter([1, 2, 5, 3, 6, 4, 2, 1], device=device)   # 8 taps: separable
    cases = {
        'bias_act': ('bias_act', lambda op, t: op(t, b, act='lrelu', alpha=0.2, gain=1.4, clamp=1.5)),
        'upfirdn2d': ('upfirdn2d', lambda op, t: op(t, f, up=2, down=1, padding=[2, 1, 1, 2], gain=4)),
        'upfirdn2d/separable': ('upfirdn2d', lambda op, t: op(t, f1, up=1, down=2, padding=3)),
        'filtered_lrelu': ('filtered_lrelu',
                           lambda op, t: op(t, f1, f1, b, up=2, down=2, padding=[7, 6, 7, 6], clamp=1.0)),
    }
    for name, (op, case) in cases.items():
        results = []
        for ops in (candidate, reference):
            t = x.clone().requires_grad_(True)
            with exact_float32():
                y = case(ops[op], t)
                (grad,) = torch.autograd.grad((y * y.detach().sin()).sum(), [t])
            results.append((y.detach(), grad))
        (y_c, g_c), (y_r, g_r) = results
        for what, got, want in (('forward', y_c, y_r), ('gradient', g_c, g_r)):
            if got.shape != want.shape:
                return f'{name} {what} has shape {list(got.shape)}, the reference {list(want.shape)}'
            if not torch.allclose(got, want, rtol=tol, atol=tol):
                return f'{name} {what} disagrees with the reference (max error {(got - want).abs().max().item():.2e})'
    return None
