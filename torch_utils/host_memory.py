"""Keep freed host memory in the process for reuse instead of handing it back to the kernel (glibc only).

By default glibc maps every block above its mmap threshold (at most 32 MiB) afresh and unmaps it when freed,
and trims the heap's free top above twice that. Memory that comes back from the kernel is zero-filled on
first touch, one page fault per 4 KiB page: 2-3 GB/s on the machines measured, slower than the convolutions
that write it. A StyleGAN generator at 256 px allocates several hundred MiB of such activations per image (a
layer's output, the next convolution's output), all freed again before the next image, so without this
every image pays for those page faults again (13-15% of the three generators' CPU time at 256 px). Raising
both thresholds lets the freed blocks serve the next image. The price: the process keeps its peak heap,
as PyTorch's CUDA caching allocator keeps its peak on a GPU.

Nothing here imports torch: the scripts' shared entry point (torch_utils.cli.run) calls it before the work
starts; benchmarks that time what the scripts do call it too.
"""
from __future__ import annotations

import ctypes
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap, and up to this much free memory stays at its top.
RETAIN_BYTES = 1 << 30

_applied = False


def retain_freed_memory(limit: int = RETAIN_BYTES) -> bool:
    """Let this process reuse freed blocks up to `limit` bytes instead of unmapping them (see the module
    doc). Idempotent; True where it took effect (Linux with glibc), False elsewhere, which changes nothing."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith('linux'):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt   # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    limit = min(int(limit), 2 ** 31 - 1)
    # glibc returns 1 on success; musl's stub returns 0 and changes nothing.
    _applied = mallopt(M_MMAP_THRESHOLD, limit) == 1 and mallopt(M_TRIM_THRESHOLD, limit) == 1
    return _applied
