"""Choice between the pure-PyTorch reference ops and compiled CUDA kernels.

Every op in this package has a reference implementation that runs anywhere (CPU or GPU) and is
differentiable to any order. Compiled kernels are optional speed: an op asks `use_kernels(x)` and
falls back to the reference path whenever kernels are disabled, unavailable, or the tensor is not
on a CUDA device.

The preference is set per process with `set_impl('auto' | 'ref' | 'cuda')` or the environment
variable `SG3C_OPS_IMPL`. A kernel family registers a loader with `register_kernels(op, loader)`;
the loader builds the extension on first use and returns the kernel callable, or None when it cannot.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch

_IMPLS = ('auto', 'ref', 'cuda')
_preference = os.environ.get('SG3C_OPS_IMPL', 'auto')
if _preference not in _IMPLS:
    raise ValueError(f'SG3C_OPS_IMPL must be one of {_IMPLS}, got {_preference!r}')

_kernel_loaders: dict[str, Callable[[], Optional[Callable]]] = {}


def set_impl(impl: str) -> None:
    """Select 'auto' (kernels when available), 'ref' (always reference) or 'cuda' (kernels required)."""
    global _preference
    if impl not in _IMPLS:
        raise ValueError(f'impl must be one of {_IMPLS}, got {impl!r}')
    _preference = impl


def get_impl() -> str:
    return _preference


def register_kernels(op: str, loader: Callable[[], Optional[Callable]]) -> None:
    _kernel_loaders[op] = loader


def kernel_for(op: str, x: torch.Tensor, impl: Optional[str] = None) -> Optional[Callable]:
    """The compiled CUDA kernel that should run `op` on tensor `x`, or None for the reference path."""
    impl = impl or _preference
    if impl == 'ref' or x.device.type != 'cuda':
        return None
    loader = _kernel_loaders.get(op)
    kernel = loader() if loader is not None else None
    if impl == 'cuda' and kernel is None:
        raise RuntimeError(f'{op}: CUDA kernels were requested (impl="cuda") but are not available')
    return kernel
