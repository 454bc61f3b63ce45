"""Image ops of the networks (reference PyTorch implementations, optional CUDA kernels).

`set_backend('auto' | 'ref' | 'cuda')` (or SG3C_OPS) picks the implementation; see dispatch.py.
"""
from .dispatch import get_backend, set_backend

__all__ = ['get_backend', 'set_backend']
