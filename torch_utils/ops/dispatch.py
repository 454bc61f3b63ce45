"""Which implementation runs an op: the pure-PyTorch reference or the compiled CUDA kernels.

Every op in this package has a reference implementation that runs anywhere (CPU or GPU) and is
differentiable to any order; it is the definition and the only path on the CPU. The CUDA kernels
(torch_utils/ops/cuda/, built on first use by cuda_build.py) are optional speed for CUDA tensors.

The choice, per process: `set_backend('auto' | 'ref' | 'cuda')` or the environment variable
`SG3C_OPS` (read when first needed):
- `auto` (default): kernels for CUDA tensors when they build and pass their self-test; otherwise one
  warning line and the reference ops. Never stops a run, and never slows it: per op and shape class the
  first call times the kernel against the reference and keeps the faster (autotune.py).
- `ref`: always the reference ops.
- `cuda`: kernels for CUDA tensors, and an error (UserError naming the reason) when they cannot be
  built or fail their self-test: for benchmarks and acceptance checks, where a silent fallback would
  measure the wrong thing. CPU tensors still take the reference ops.

Separately, `fp16_enabled(device)` decides whether the networks' float16 layers (with their
channels-last layout) may run on a device: on CUDA always, on the CPU only inside `allow_cpu_fp16()`,
a switch for tests, so that those branches execute on machines without a GPU.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator, Optional

import torch

from torch_utils.cli import UserError

from . import autotune, cuda_kernels

BACKENDS = ('auto', 'ref', 'cuda')
ENV_VAR = 'SG3C_OPS'

_backend: Optional[str] = None
_cpu_fp16 = False
_references: dict[str, Callable] = {}           # op -> its public function (which takes impl='ref')
_tuned: dict[tuple[str, torch.device], autotune.Tuned] = {}   # (op, device) -> the kernel behind its timing choice


def _checked(backend: str, source: str) -> str:
    if backend not in BACKENDS:
        raise UserError(f'{source} must be one of {", ".join(BACKENDS)}, got {backend!r}')
    return backend


def set_backend(backend: str) -> None:
    """Select 'auto', 'ref' or 'cuda' for the rest of the process (see the module doc)."""
    global _backend
    _backend = _checked(backend, 'ops backend')


def get_backend() -> str:
    global _backend
    if _backend is None:
        _backend = _checked(os.environ.get(ENV_VAR, 'auto').strip().lower() or 'auto', ENV_VAR)
    return _backend


def register_reference(op: str, fn: Callable) -> None:
    """The public op, which `auto` times against the kernel (called with impl='ref')."""
    _references[op] = fn


def kernel_for(op: str, x: torch.Tensor, impl: Optional[str] = None) -> Optional[Callable]:
    """The CUDA implementation that should run `op` on tensor `x`, or None for the reference path.
    `impl` overrides the process-wide backend for one call. The implementation itself returns None for
    calls it does not cover (see cuda_kernels.py), or under `auto` for shape classes where the reference
    op was faster; those calls take the reference path too."""
    backend = _checked(impl, 'impl') if impl is not None else get_backend()
    if backend == 'ref' or x.device.type != 'cuda':
        return None
    kernel = cuda_kernels.get(op)
    if kernel is None and backend == 'cuda':
        raise UserError(f'{op}: CUDA ops were required ({ENV_VAR}=cuda) but cannot be used: {cuda_kernels.failure()}')
    if kernel is None or backend == 'cuda':
        return kernel
    tuned = _tuned.get((op, x.device))
    if tuned is None:
        chooser = autotune.Chooser(cuda_kernels.autotune_path(), torch.cuda.get_device_name(x.device))
        tuned = _tuned[op, x.device] = autotune.Tuned(op, kernel, _references[op], chooser)
    return tuned


def fp16_enabled(device: torch.device) -> bool:
    """Whether float16 layers may run on `device` (CUDA; the CPU only under allow_cpu_fp16)."""
    return device.type == 'cuda' or (_cpu_fp16 and device.type == 'cpu')


@contextlib.contextmanager
def allow_cpu_fp16(enabled: bool = True) -> Iterator[None]:
    """Let the networks' float16/channels-last layers run on the CPU (tests only: slow, and not what a
    CPU user wants), as they would on a GPU."""
    global _cpu_fp16
    previous, _cpu_fp16 = _cpu_fp16, enabled
    try:
        yield
    finally:
        _cpu_fp16 = previous
