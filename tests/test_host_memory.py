"""Freed host memory is reused instead of coming back from the kernel as page-faulting fresh memory."""
import subprocess
import sys

import pytest

from helpers.scripts import REPO

# In a child process (the setting is process-wide): malloc, touch and free a 64 MiB block four times and
# count the minor page faults of the last three rounds.
CHILD = r'''
import ctypes, resource, sys
sys.path.insert(0, sys.argv[1])
from torch_utils import host_memory
applied = host_memory.retain_freed_memory() if sys.argv[2] == '1' else False
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(int(applied), sum(faults[1:]))
'''


def child_faults(apply: bool) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, '-c', CHILD, str(REPO), '1' if apply else '0'], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == '1', int(out[1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc settings: Linux only')
def test_freed_blocks_are_reused_without_page_faults():
    applied, faults = child_faults(apply=True)
    if not applied:
        pytest.skip('this C library has no mallopt (not glibc)')
    _, default_faults = child_faults(apply=False)
    pages = 3 * (64 << 20) // 4096
    assert default_faults > pages // 2   # by default every round maps (and faults in) fresh memory
    assert faults < pages // 20          # retained: the rounds after the first reuse the same pages

