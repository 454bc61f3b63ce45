#!/usr/bin/env python3
"""Instructions per output sample of our CUDA kernels and NVIDIA's, at the networks' real shapes, without a GPU.

  python benchmarks/kernel_cost.py [--nvidia-repo=DIR] [--cases=t256] [--json=kernel_cost.json]

Method. Each kernel is compiled for sm_90 with nvcc into a cubin in a temporary folder (ours from
torch_utils/ops/cuda/ with cuda_build.py's flags; NVIDIA's filtered_lrelu from the checkout given, as its
own loader would compile it: its sources unchanged, --use_fast_math, torch's CUDA flags), disassembled
with nvdisasm, and run thread by thread by a small interpreter of the SASS (benchmarks/sass_trace.py) with
the launch parameters the real call would pass: ours from the harness's own planner (`kernel_args`),
NVIDIA's from its host code's rules (the kernel its `choose_filtered_lrelu_kernel` picks at 227 KB of
shared memory, an H100/H200's opt-in limit, and the parameters its filtered_lrelu.cpp fills in). Every
instruction a thread steps through counts, predicated-off ones included (what a warp issues, per thread).
A sample of blocks (evenly spaced over one image plane's tiles) and of threads (every `--thread-step`-th)
is run, and

    instructions per output sample = (instructions of the sampled threads x thread step) / (outputs of the
                                      sampled blocks).

Forward is the recording pass (fp16, gradients wanted); backward the masked adjoint pass of the same layer
(NVIDIA's: its sign-reading kernel with the factors swapped, as its backward calls it). The table adds
registers per thread and static shared memory (cuobjdump), dynamic shared memory and the resulting
occupancy of an H100 SM (64 warps, 64 K registers, 228 KB).

Uncertainty. The integer path (loop bounds, index decode, branches) is the GPU's exactly; what is not
modelled: divergence inside a warp (both sides' branches are mostly uniform per warp; a divergent warp
issues both paths, so the count is a lower bound there), and the sampling (threads: < 1 %; blocks: edge
tiles differ from inner ones, a few % at the smallest layers). Instruction counts are not time: memory
traffic, bank conflicts, latency and occupancy decide the rest, so a ratio of counts estimates a ratio
of times within perhaps 1.5x either way. Figures only; nothing here asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import sass_trace   # noqa: E402

ARCH = 'sm_90'
PARAM_BASE = 0x210            # where sm_90 kernels find their parameters in constant bank 0
SHARED_KB = 227               # cudaDevAttrMaxSharedMemoryPerBlockOptin of an H100/H200, in KB
SM_WARPS, SM_REGS, SM_SMEM, SM_BLOCKS = 64, 65536, 228 * 1024, 32
# torch.utils.cpp_extension's own nvcc flags, which both builds get.
TORCH_CUDA_FLAGS = ['-D__CUDA_NO_HALF_OPERATORS__', '-D__CUDA_NO_HALF_CONVERSIONS__', '-D__CUDA_NO_BFLOAT16_CONVERSIONS__',
                    '-D__CUDA_NO_HALF2_OPERATORS__', '--expt-relaxed-constexpr', '-std=c++17']


def tool(name: str) -> str:
    """nvdisasm / cuobjdump: on PATH, or in the triton wheel of this or $SG3C_CUDA_PYTHON's environment."""
    found = shutil.which(name)
    if found:
        return found
    pythons = [sys.executable] + ([os.environ['SG3C_CUDA_PYTHON']] if os.environ.get('SG3C_CUDA_PYTHON') else [])
    for python in pythons:
        probe = subprocess.run([python, '-c', 'import triton, os; print(os.path.dirname(triton.__file__))'],
                               capture_output=True, text=True)
        path = os.path.join(probe.stdout.strip(), 'backends', 'nvidia', 'bin', name)
        if probe.returncode == 0 and os.path.isfile(path):
            return path
    sys.exit(f'kernel_cost: no {name}: put it on PATH or set SG3C_CUDA_PYTHON to a Python with triton installed')


def torch_include() -> list[str]:
    import torch
    root = os.path.join(os.path.dirname(torch.__file__), 'include')
    return ['-I', root, '-I', os.path.join(root, 'torch', 'csrc', 'api', 'include')]


def compile_cubin(source: str, out_dir: str, flags: list[str], includes: list[str]) -> str:
    cubin = os.path.join(out_dir, os.path.basename(source) + '.cubin')
    cmd = ['nvcc', '-cubin', f'-arch={ARCH}', *flags, *TORCH_CUDA_FLAGS, *includes, *torch_include(), '-o', cubin, source]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'nvcc failed on {source}: {(proc.stderr or proc.stdout)[-2000:]}')
    return cubin


@dataclass
class Kernel:
    program: sass_trace.Program
    registers: int
    static_smem: int


def load_kernels(cubins: list[str]) -> dict[str, Kernel]:
    kernels = {}
    for cubin in cubins:
        sass = subprocess.run([tool('nvdisasm'), '-c', cubin], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([tool('cuobjdump'), '-res-usage', cubin], capture_output=True, text=True, check=True).stdout
        resources = {m.group(1): (int(m.group(2)), int(m.group(3)))
                     for m in re.finditer(r'Function (\S+):\s*\n\s*REG:(\d+) STACK:\d+ SHARED:(\d+)', usage)}
        for name, program in sass_trace.programs(sass).items():
            regs, smem = resources.get(name, (0, 0))
            kernels[name] = Kernel(program, regs, smem)
    return kernels


def occupancy(threads: int, registers: int, smem: int) -> tuple[int, float]:
    """(blocks per SM, active warps / 64) on an H100 SM."""
    warps = (threads + 31) // 32
    per_warp = ((max(registers, 1) * 32 + 255) // 256) * 256
    by_regs = (SM_REGS // per_warp) // warps
    by_smem = SM_SMEM // (smem + 1024) if smem else SM_BLOCKS
    blocks = max(0, min(SM_WARPS // warps, by_regs, by_smem, SM_BLOCKS))
    return blocks, blocks * warps / SM_WARPS


@dataclass
class Launch:
    """One kernel launch to count: its kernel, parameters, grid, threads, and outputs per block."""
    kernel: str
    params: bytes
    grid: tuple[int, int, int]
    threads: int
    dynamic_smem: int
    blocks: list              # sampled (blockIdx, outputs of that block)


def count(kernels: dict[str, Kernel], launch: Launch, thread_step: int) -> dict:
    """Run the sampled threads of the sampled blocks; instructions per output sample and resources."""
    k = kernels[launch.kernel]
    bank0 = bytearray(PARAM_BASE + len(launch.params))
    struct.pack_into('<6I', bank0, 0, launch.threads, 1, 1, *launch.grid)
    struct.pack_into('<I', bank0, 0x28, 0xFFFC00)   # (the stack pointer's start)
    bank0[PARAM_BASE:] = launch.params
    total, outputs = 0, 0
    k.program.profile.clear()
    for ctaid, block_outputs in launch.blocks:
        for tid in range(0, launch.threads, thread_step):
            t = sass_trace.Thread({0: bytes(bank0)}, tid=(tid, 0, 0), ctaid=ctaid)
            total += k.program.run(t) * min(thread_step, launch.threads - tid)
        outputs += block_outputs
    blocks_per_sm, occ = occupancy(launch.threads, k.registers, launch.dynamic_smem + k.static_smem)
    return {'per_output': total / max(outputs, 1), 'registers': k.registers,
            'smem_bytes': launch.dynamic_smem + k.static_smem, 'threads': launch.threads,
            'blocks_per_sm': blocks_per_sm, 'occupancy': occ, 'kernel': launch.kernel,
            'profile': dict(sorted(k.program.profile.items(), key=lambda kv: -kv[1])[:12])}


def sample(n: int, most: int) -> list[int]:
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


# ------------------------------------------------------------------ our kernels

def build_ours(work: str) -> dict[str, Kernel]:
    from torch_utils.ops import cuda_build
    cubins = [compile_cubin(os.path.join(cuda_build.SOURCE_DIR, s), work, cuda_build.CUDA_FLAGS, [])
              for s in cuda_build.SOURCES if s.startswith('tiles_')]
    return load_kernels(cubins)


def _our_kernel_name(kernels: dict, spec_args: str, dtype: str) -> str:
    ints = spec_args.split()[1:]
    mangled = ''.join(f'Li{"n" + v[1:] if v.startswith("-") else v}E' for v in ints)
    type_code = {'float16': 'N3c104HalfE', 'float32': 'f'}[dtype]
    want = f'SpecI{mangled}EE{type_code}EEv'
    return next(n for n in kernels if want in n)


def our_launch(harness, kernels: dict, x_shape, fa_shape, fb_shape, chain, act: int, bias: bool, layer: dict,
               dtype: str, max_blocks: int) -> Launch:
    import torch
    tdtype = getattr(torch, dtype)
    x = torch.empty(x_shape, dtype=tdtype, device='meta')
    fa = torch.empty(fa_shape) if fa_shape else None
    fb = torch.empty(fb_shape) if fb_shape else None
    spec, params = harness.kernel_args(x, fa, fb, chain.args(), act, bias, layer.get('slope', 0.2),
                                       layer.get('gain', 1.0), layer.get('clamp', -1.0))
    described = harness.describe(x, fa, fb, chain.args(), act).split()
    tile_w, tile_h = (int(v) for v in described[2].split('x'))
    cb, smem_elems, blocks = int(described[4]), int(described[6]), int(described[8])
    out_w, out_h = chain.args()[12], chain.args()[13]
    tiles_x, tiles_y = -(-out_w // tile_w), -(-out_h // tile_h)
    channels = x_shape[1]
    picked = []
    for index in sample(tiles_x * tiles_y, max_blocks):   # (one image and channel group: the rest repeat it)
        tx, ty = index % tiles_x, index // tiles_x
        outputs = min(tile_w, out_w - tx * tile_w) * min(tile_h, out_h - ty * tile_h) * min(cb, channels)
        picked.append(((index, 0, 0), outputs))
    name = _our_kernel_name(kernels, spec, dtype)
    return Launch(name, params.numpy().tobytes(), (blocks, 1, 1), 256, smem_elems * 4, picked)


def our_launches(harness, kernels: dict, layer: dict, dtype: str, max_blocks: int) -> dict[str, Launch]:
    """Forward (recording) and backward (masked adjoint) launches of one layer, or one upfirdn2d launch."""
    from torch_utils.ops import cuda_kernels
    import numpy as np
    n, c, size = layer['batch'], layer['channels'], layer['size']
    x_shape = [n, c, size, size]
    if layer['op'] == 'upfirdn2d':
        fa = list(np.shape(layer['fu']))
        (px0, px1, py0, py1), up, down = layer['padding'], layer['up'], layer['down']
        out = (size * up + px0 + px1 - fa[-1]) // down + 1
        geom = cuda_kernels.Chain((size, size), up, (px0, py0), (fa[-1], fa[0]), (out, out), 1, (0, 0), (1, 1),
                                  (out, out))
        args = geom.args()
        args[2:4] = [down, down]
        args[6:8] = [out, out]
        chain = _FixedArgs(args)
        return {'forward': our_launch(harness, kernels, x_shape, fa, None, chain, cuda_kernels.ACT_NONE, False, {},
                                      dtype, max_blocks)}
    fu, fd = list(np.shape(layer['fu'])), list(np.shape(layer['fd']))
    chain = cuda_kernels.chain_of(x_shape, fu, fd, layer['up'], layer['down'], layer['padding'])
    y_shape = [n, c, chain.size_out[1], chain.size_out[0]]
    return {'forward': our_launch(harness, kernels, x_shape, fu, fd, chain, cuda_kernels.ACT_RECORD, True, layer,
                                  dtype, max_blocks),
            'backward': our_launch(harness, kernels, y_shape, fd, fu, chain.adjoint(), cuda_kernels.ACT_MASKED, False,
                                   layer, dtype, max_blocks)}


class _FixedArgs:
    """A launch geometry given as kernel_args' 14 integers (plain upfirdn2d: stage A alone)."""

    def __init__(self, args: list[int]):
        self._args = list(args)

    def args(self) -> list[int]:
        return list(self._args)
