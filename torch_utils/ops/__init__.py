"""Image ops of the networks (reference PyTorch implementations, optional CUDA kernels).

`set_backend('auto' | 'ref' | 'cuda')` (or SG3C_OPS) picks the implementation; see dispatch.py.
"""
from . import cuda_kernels, selftest
from .dispatch import get_backend, set_backend

cuda_kernels.set_self_test(selftest.agree_with_reference)

__all__ = ['get_backend', 'set_backend']
