"""Compiling the CUDA ops (torch_utils/ops/cuda/) on first use, once per source version and GPU.

The extension is built with `torch.utils.cpp_extension.load` and ninja into
`<cache root>/torch_extensions/sg3c_ops-<key>`, where the key hashes the sources, the torch and CUDA
versions and the target architectures: a changed kernel, a new torch or another GPU gets its own build,
and an unchanged one is loaded without compiling. A file lock around the build lets several ranks (or
jobs sharing the cache) start at once: the first compiles, the others wait and then load its result.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from types import ModuleType
from typing import Iterator, Optional

import torch

from torch_utils.download import cache_root

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cuda')
# (the tile kernels' specialisations are split over tiles_*.cu so that ninja compiles them in parallel)
SOURCES = ('bindings.cpp', 'kernels.cu', 'tiles_t.cu', 'tiles_r2.cu', 'tiles_r4.cu', 'tiles_sg2.cu', 'tiles_generic.cu')
HEADERS = ('tile.h', 'plan.h', 'ops.h', 'bind.h', 'tile_kernel.cuh')

# Warnings are errors in waiting: the build is kept warning-free (benchmarks/build_ops.py checks it).
CXX_FLAGS = ['-O3', '-Wall']
CUDA_FLAGS = ['-O3', '-Xcompiler=-Wall']


def target_archs() -> str:
    """Compute capabilities to compile for, as TORCH_CUDA_ARCH_LIST spells them ("8.0;9.0").

    `TORCH_CUDA_ARCH_LIST` when set (needed to build on a machine without a GPU), else the visible GPUs'."""
    listed = os.environ.get('TORCH_CUDA_ARCH_LIST', '').strip()
    if listed:
        return listed
    if not torch.cuda.is_available():
        raise RuntimeError('no CUDA device visible and TORCH_CUDA_ARCH_LIST not set')
    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ';'.join(f'{major}.{minor}' for major, minor in caps)


def sources_key(names: tuple[str, ...], extra: str) -> str:
    """Hash of the named files of SOURCE_DIR and `extra` (versions, flags, targets)."""
    h = hashlib.sha256()
    for name in names:
        with open(os.path.join(SOURCE_DIR, name), 'rb') as f:
            h.update(name.encode() + b'\0' + f.read() + b'\0')
    h.update(extra.encode())
    return h.hexdigest()[:16]


def build_key(archs: str) -> str:
    """Hash of everything the binary depends on: source text, torch/CUDA versions, architectures."""
    return sources_key(SOURCES + HEADERS, f'{torch.__version__}|{torch.version.cuda}|{archs}|{CXX_FLAGS}|{CUDA_FLAGS}')


def build_dir(key: str, prefix: str = 'sg3c_ops') -> str:
    return os.path.join(cache_root(), 'torch_extensions', f'{prefix}-{key}')


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Exclusive lock on `path` across processes (released when the holder exits, even if killed)."""
    try:
        import fcntl
    except ImportError:   # not POSIX: torch's own build baton is the only guard
        yield
        return
    with open(path, 'a+') as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _arch_env(archs: str) -> Iterator[None]:
    """cpp_extension reads the architectures from the environment while it writes the build file."""
    previous = os.environ.get('TORCH_CUDA_ARCH_LIST')
    os.environ['TORCH_CUDA_ARCH_LIST'] = archs
    try:
        yield
    finally:
        if previous is None:
            del os.environ['TORCH_CUDA_ARCH_LIST']
        else:
            os.environ['TORCH_CUDA_ARCH_LIST'] = previous


def locate_cuda_home() -> Optional[str]:
    """The CUDA toolkit root: CUDA_HOME / CUDA_PATH, else the nvcc on PATH's own idea of it.

    torch guesses the parent of nvcc's folder, which is wrong when nvcc on PATH is a wrapper script
    (e.g. /usr/local/bin/nvcc calling a versioned toolkit); nvcc's dry run names its real root."""
    listed = os.environ.get('CUDA_HOME') or os.environ.get('CUDA_PATH')
    if listed:
        return listed
    nvcc = shutil.which('nvcc')
    if nvcc is None:
        return None
    guess = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    if os.path.isfile(os.path.join(guess, 'include', 'cuda_runtime.h')):
        return guess
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'probe.cu')
        open(src, 'w').close()
        try:
            dry = subprocess.run([nvcc, '--dryrun', '-c', src, '-o', os.path.join(tmp, 'probe.o')],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
    match = re.search(r'^#\$ TOP=(.+)$', dry.stdout + dry.stderr, re.MULTILINE)
    return os.path.normpath(match.group(1).strip()) if match else None


def wheel_include_dirs() -> list[str]:
    """Header folders of pip's nvidia-* CUDA packages (torch's CUDA wheels depend on them). Searched after
    the toolkit's own headers, they supply what a minimal toolkit lacks (cuSPARSE, cuBLAS, cuSOLVER)."""
    try:
        import nvidia
    except ImportError:
        return []
    return sorted(d for root in nvidia.__path__ for d in glob.glob(os.path.join(root, '*', 'include')))


def build(archs: Optional[str] = None, verbose: bool = False, directory: Optional[str] = None) -> ModuleType:
    """Compile (or reuse) and import the extension module. Raises on any failure."""
    home = locate_cuda_home()
    if home is not None:
        os.environ.setdefault('CUDA_HOME', home)   # cpp_extension reads it when first imported
    from torch.utils import cpp_extension
    if home is not None and not os.environ.get('CUDA_PATH'):
        cpp_extension.CUDA_HOME = os.environ['CUDA_HOME']   # in case it was imported before
    archs = archs or target_archs()
    includes = [flag for d in wheel_include_dirs() for flag in ('-isystem', d)]
    key = build_key(archs)
    directory = directory or build_dir(key)
    os.makedirs(directory, exist_ok=True)
    with file_lock(os.path.join(directory, 'build.lock')), _arch_env(archs):
        return cpp_extension.load(name=f'sg3c_ops_{key}', sources=[os.path.join(SOURCE_DIR, s) for s in SOURCES],
                                  build_directory=directory, extra_cflags=CXX_FLAGS + includes, extra_cuda_cflags=CUDA_FLAGS + includes,
                                  verbose=verbose)
