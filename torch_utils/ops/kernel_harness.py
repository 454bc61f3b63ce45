"""The CPU harness of the CUDA kernels' tile code, built on the fly with the installed (CPU) torch.

torch_utils/ops/cuda/harness.cpp compiles the kernels' per-tile functions (cuda/tile.h) and the same
argument handling, plans and specialisations as the CUDA build (cuda/ops.h, cuda/plan.h) with the host
compiler, and runs a launch block by block, each phase for every thread of the block before the next
(the order the barriers impose on a GPU). Its module has the CUDA module's functions, on CPU tensors, so
cuda_kernels.py's autograd layer runs over it unchanged (`cuda_kernels.use_module`): the normal test suite
checks the kernels' indexing, halos, tiling and arithmetic on a CPU. It cannot check launch bounds or races.

Built once per source version and torch into `<cache root>/torch_extensions/sg3c_harness-<key>` (like the
CUDA build, under the same file lock), so only the first use on a machine pays the compile (~30-60 s).
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import Optional

import torch

from . import cuda_build

SOURCES = ('harness.cpp',)
FLAGS = ['-O2', '-Wall']

_module: Optional[ModuleType] = None


def build(verbose: bool = False, directory: Optional[str] = None) -> ModuleType:
    """Compile (or reuse) and import the harness; cached in the process too."""
    global _module
    if _module is not None and directory is None:
        return _module
    from torch.utils import cpp_extension   # 0.1 s of import that only a build pays
    key = cuda_build.sources_key(SOURCES + cuda_build.HEADERS, f'{torch.__version__}|{FLAGS}')
    directory = directory or cuda_build.build_dir(key, prefix='sg3c_harness')
    os.makedirs(directory, exist_ok=True)
    with cuda_build.file_lock(os.path.join(directory, 'build.lock')):
        module = cpp_extension.load(name=f'sg3c_harness_{key}',
                                    sources=[os.path.join(cuda_build.SOURCE_DIR, s) for s in SOURCES],
                                    build_directory=directory, extra_cflags=FLAGS, verbose=verbose)
    _module = module
    return module
