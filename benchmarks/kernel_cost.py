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


# ------------------------------------------------------------------ NVIDIA's filtered_lrelu (a checkout, as given)

NVIDIA_SOURCES = {'forward': 'filtered_lrelu_wr.cu', 'backward': 'filtered_lrelu_rd.cu'}   # sign write / read
INT_MAX = 2 ** 31 - 1


def build_nvidia(repo: str, work: str) -> tuple[dict[str, Kernel], list[dict]]:
    """Compile the checkout's filtered_lrelu sources (unchanged, into `work`) with the flags its loader
    passes, and read its kernel table (choose_filtered_lrelu_kernel's CASE lines) from the same sources."""
    ops = os.path.join(os.path.abspath(repo), 'torch_utils', 'ops')
    procs = []
    for src in NVIDIA_SOURCES.values():
        cubin = os.path.join(work, src + '.cubin')
        cmd = ['nvcc', '-cubin', f'-arch={ARCH}', '--use_fast_math', *TORCH_CUDA_FLAGS, '-I', ops, *torch_include(),
               '-o', cubin, os.path.join(ops, src)]
        procs.append((cubin, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for cubin, proc in procs:
        out = proc.communicate()[0]
        if proc.returncode != 0:
            raise RuntimeError(f'nvcc failed on NVIDIA\'s {cubin}: {out[-2000:]}')
    with open(os.path.join(ops, 'filtered_lrelu.cu')) as f:
        text = f.read()
    modes = {m.group(1): int(m.group(2)) for m in re.finditer(r'(MODE_\w+)\s*=\s*(\d+)', text)}
    table = []
    for m in re.finditer(r'^\s*CASE\(([^)]*)\)', text, re.MULTILINE):
        v = [x.strip() for x in re.sub(r'/\*.*?\*/', '', m.group(1)).split(',')]
        if len(v) != 11 or not v[0].isdigit():
            continue
        sh, up, fu, down, fd = (int(x) for x in v[:5])
        tw, th, warps, xrep, wskip = (int(x) for x in v[6:])
        table.append(dict(sh=sh, up=up, fu=fu, down=down, fd=fd, mode=modes[v[5]], tw=tw, th=th, warps=warps,
                          xrep=xrep, wskip=wskip))
    return load_kernels([c for c, _ in procs]), table


def _choose(table: list[dict], up: int, down: int, fu_shape: tuple, fd_shape: tuple) -> dict:
    """The first CASE that matches, by the rules of NVIDIA's choose_filtered_lrelu_kernel."""
    for c in table:
        su, sd = fu_shape[1] == 0, fd_shape[1] == 0
        mode_ok = (su == (c['mode'] in (0, 2))) and (sd == (c['mode'] in (0, 1)))
        if c['sh'] <= SHARED_KB and mode_ok and c['up'] == up and c['down'] == down and \
                max(fu_shape) <= c['fu'] and max(fd_shape) <= c['fd']:
            return c
    raise LookupError(f'NVIDIA has no kernel for up {up} down {down} filters {fu_shape} {fd_shape}')


def _nvidia_kernel_name(kernels: dict, case: dict, dtype: str, index64: bool, write: bool, read: bool) -> str:
    ctype = {'float16': 'c10::Half', 'float32': 'float'}[dtype]
    want = [ctype, 'long' if index64 else 'int', str(case['sh']), str(write).lower(), str(read).lower(), str(case['mode']),
            str(case['up']), str(case['fu']), str(case['down']), str(case['fd']), str(case['tw']), str(case['th']),
            str(case['warps'] * 32), str(bool(case['xrep'])).lower(), str(bool(case['wskip'])).lower()]
    names = [n for n in kernels if 'filtered_lrelu_kernel' in n and 'act_kernel' not in n]
    demangled = subprocess.run(['c++filt'], input='\n'.join(names), capture_output=True, text=True).stdout.splitlines()
    for mangled, plain in zip(names, demangled):
        m = re.search(r'filtered_lrelu_kernel<(.*)>\(', plain)
        if m and [a.strip() for a in m.group(1).split(',')] == want:
            return mangled
    raise LookupError(f'no compiled NVIDIA kernel filtered_lrelu_kernel<{", ".join(want)}>')


def _nvidia_params(v: dict) -> bytes:
    """filtered_lrelu_kernel_params as NVIDIA's filtered_lrelu.h lays it out (sm_90 ABI)."""
    b = bytearray(320)
    struct.pack_into('<2i2i2ii', b, 0, v['up'], v['down'], *v['fu_shape'], *v['fd_shape'], 0)
    struct.pack_into('<6Q', b, 32, 1 << 40, 2 << 40, 3 << 40, 6 << 40 if v['signs'] else 0, 4 << 40, 5 << 40)
    struct.pack_into('<2i3fi3i', b, 80, *v['pad0'], v['gain'], v['slope'], v['clamp'], v['flip'], v['tiles_x_dim'],
                     v['tiles_x_rep'], 0)
    struct.pack_into('<4i4i2i2ii', b, 128, *v['x_shape'], *v['y_shape'], *v['s_shape'], *v['s_ofs'], v['sw_limit'])
    struct.pack_into('<4q4qq3q3q', b, 192, *v['x_stride'], *v['y_stride'], v['b_stride'], *v['fu_stride'], *v['fd_stride'])
    return bytes(b)


def _filter_shape(shape: tuple) -> tuple[int, int]:
    """NVIDIA's [size, 0] for a separable filter, [width, height] for a 2-D one."""
    return (shape[-1], shape[0] if len(shape) == 2 else 0)


def nvidia_launches(kernels: dict, table: list[dict], layer: dict, dtype: str, max_blocks: int) -> dict[str, Launch]:
    """NVIDIA's forward (sign-writing) and backward (sign-reading, factors swapped) launches of one layer,
    with the parameters its filtered_lrelu.py and filtered_lrelu.cpp would pass."""
    import numpy as np
    n, c, xs = layer['batch'], layer['channels'], layer['size']
    up, down, (px0, px1, py0, py1) = layer['up'], layer['down'], layer['padding']
    fu_n, fd_n = np.shape(layer['fu']), np.shape(layer['fd'])
    fu_w, fd_w = fu_n[-1], fd_n[-1]
    fu_h, fd_h = (fu_n[0] if len(fu_n) == 2 else fu_w), (fd_n[0] if len(fd_n) == 2 else fd_w)
    yw = (xs * up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + down - 1) // down
    yh = (xs * up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + down - 1) // down
    sw_active = yw * down - (down - 1) + fd_w - 1
    sh = yh * down - (down - 1) + fd_h - 1
    s_shape = (((sw_active + 15) & ~15) >> 2, sh)
    fwd = dict(up=up, down=down, fu=_filter_shape(fu_n), fd=_filter_shape(fd_n), pad0=(px0, py0), gain=layer['gain'],
               slope=layer['slope'], clamp=layer['clamp'], flip=0, x=(xs, xs), y=(yw, yh), s_shape=s_shape,
               s_ofs=(0, 0), sw_limit=(sw_active + 3) >> 2, write=True, read=False)
    bwd = dict(up=down, down=up, fu=_filter_shape(fd_n), fd=_filter_shape(fu_n),
               pad0=(fu_w - 1 + fd_w - 1 - px0, fu_h - 1 + fd_h - 1 - py0),
               gain=layer['gain'] * up ** 2 / down ** 2, slope=layer['slope'], clamp=float('inf'), flip=1, x=(yw, yh),
               y=(xs, xs), s_shape=s_shape, s_ofs=(-(fu_w - 1) + px0, -(fu_h - 1) + py0), sw_limit=s_shape[0],
               write=False, read=True)
    return {name: _nvidia_launch(kernels, table, v, n, c, dtype, max_blocks) for name, v in
            (('forward', fwd), ('backward', bwd))}


def _nvidia_launch(kernels: dict, table: list[dict], v: dict, n: int, c: int, dtype: str, max_blocks: int) -> Launch:
    sz = 2 if dtype == 'float16' else 4
    (xw, xh), (yw, yh) = v['x'], v['y']
    case = _choose(table, v['up'], v['down'], v['fu'], v['fd'])
    x_stride = (sz, sz * xw, sz * xw * xh, sz * xw * xh * c)
    y_stride = (sz, sz * yw, sz * yw * yh, sz * yw * yh * c)
    index64 = max(n * x_stride[3], n * y_stride[3]) > INT_MAX or n * c * v['s_shape'][0] * v['s_shape'][1] > INT_MAX
    gx, gy = (yw - 1) // case['tw'] + 1, (yh - 1) // case['th'] + 1
    tiles_x_dim, tiles_x_rep = (gx, case['xrep']) if case['xrep'] else (0, 0)
    if case['xrep']:
        gx, gy = gy, -(-gx // case['xrep'])
    params = _nvidia_params(dict(up=v['up'], down=v['down'], fu_shape=v['fu'], fd_shape=v['fd'], signs=True,
                                 pad0=v['pad0'], gain=v['gain'], slope=v['slope'], clamp=v['clamp'], flip=v['flip'],
                                 tiles_x_dim=tiles_x_dim, tiles_x_rep=tiles_x_rep, x_shape=(xw, xh, c, n),
                                 y_shape=(yw, yh, c, n), s_shape=v['s_shape'], s_ofs=v['s_ofs'],
                                 sw_limit=v['sw_limit'], x_stride=x_stride, y_stride=y_stride, b_stride=sz,
                                 fu_stride=(1, v['fu'][0] if v['fu'][1] else 0, 0),
                                 fd_stride=(1, v['fd'][0] if v['fd'][1] else 0, 0)))
    picked = []
    for index in sample(gx * gy, max_blocks):
        bx, by = index % gx, index // gx
        if case['xrep']:
            ty, txs = bx, range(by * case['xrep'], min((by + 1) * case['xrep'], tiles_x_dim))
        else:
            ty, txs = by, [bx]
        outputs = sum(min(case['tw'], yw - tx * case['tw']) * min(case['th'], yh - ty * case['th']) for tx in txs)
        picked.append(((bx, by, 0), outputs))
    name = _nvidia_kernel_name(kernels, case, dtype, index64, v['write'], v['read'])
    dynamic = (case['sh'] << 10) if case['sh'] != 48 else 0
    return Launch(name, params, (gx, gy, n * c), case['warps'] * 32, dynamic, picked)


# ------------------------------------------------------------------ the table

CASE_SETS = {
    't256': lambda n: n.startswith('stylegan3-t 256px'), 'r256': lambda n: n.startswith('stylegan3-r 256px'),
    't1024': lambda n: n.startswith('stylegan3-t 1024px'), 'r1024': lambda n: n.startswith('stylegan3-r 1024px'),
    'sg2': lambda n: n.startswith('stylegan2') and '256px' in n,
}


def layers(sets: list[str]) -> list[dict]:
    from op_bench import layer_cases
    chosen = [c for c in layer_cases() if any(CASE_SETS[s](c['name']) for s in sets)]
    # (ToRGB has no resampling: bias_act, not a tile kernel)
    return [c for c in chosen if c['op'] == 'upfirdn2d' or c['fu'] is not None]


def measure(layer: dict, ours: dict, harness, nvidia: Optional[tuple], args) -> list[dict]:
    rows = []
    launches = {'ours': our_launches(harness, ours, layer, args.dtype, args.blocks)}
    if nvidia is not None and layer['op'] == 'filtered_lrelu':
        try:
            launches['nvidia'] = nvidia_launches(*nvidia, layer, args.dtype, args.blocks)
        except LookupError as e:
            print(f'kernel_cost: {layer["name"]}: {e}', file=sys.stderr)
    for direction in launches['ours']:
        row = {'case': layer['name'], 'direction': direction, 'shape': [layer['batch'], layer['channels'],
                                                                        layer['size'], layer['size']],
               'up': layer['up'], 'down': layer['down']}
        for side, table in launches.items():
            kernels = ours if side == 'ours' else nvidia[0]
            row[side] = count(kernels, table[direction], args.thread_step)
        if 'nvidia' in row:
            row['ratio'] = row['ours']['per_output'] / row['nvidia']['per_output']
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


HEADER = ('| layer | pass | ours: instr/output, regs, smem KB, occupancy | NVIDIA: instr/output, regs, smem KB, occupancy '
          '| ours / NVIDIA |\n|---|---|---|---|---|')


def _side(r: Optional[dict]) -> str:
    if not r:
        return '-'
    return f'{r["per_output"]:.0f}, {r["registers"]}, {r["smem_bytes"] / 1024:.1f}, {r["occupancy"]:.2f}'


def format_row(row: dict) -> str:
    s = row['shape']
    ratio = f'{row["ratio"]:.2f}' if 'ratio' in row else '-'
    return (f'| {row["case"]} ({s[0]}x{s[1]}x{s[2]}², up {row["up"]} down {row["down"]}) | {row["direction"]} '
            f'| {_side(row.get("ours"))} | {_side(row.get("nvidia"))} | {ratio} |')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nvidia-repo', default=os.environ.get('SG3C_NVIDIA_REPO'),
                        help='an NVlabs/stylegan3 checkout to count the same way (default: $SG3C_NVIDIA_REPO)')
    parser.add_argument('--cases', default='t256,r256,t1024,r1024,sg2',
                        help=f'comma-separated, of {", ".join(CASE_SETS)} (default: all)')
    parser.add_argument('--dtype', default='float16', choices=['float16', 'float32'])
    parser.add_argument('--blocks', type=int, default=4, help='blocks sampled per launch (default 4)')
    parser.add_argument('--thread-step', type=int, default=8, help='run every n-th thread of a block (default 8)')
    parser.add_argument('--json', default=None, help='write the rows here')
    args = parser.parse_args()
    if shutil.which('nvcc') is None:
        print('kernel_cost: needs nvcc on PATH (CUDA 12 or later)', file=sys.stderr)
        return 2
    from torch_utils.ops import kernel_harness
    harness = kernel_harness.build()
    with tempfile.TemporaryDirectory(prefix='sg3c-kernel-cost-') as work:
        ours = build_ours(work)
        nvidia = build_nvidia(args.nvidia_repo, work) if args.nvidia_repo else None
        print(HEADER, flush=True)
        rows = [row for layer in layers(args.cases.split(',')) for row in measure(layer, ours, harness, nvidia, args)]
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'dtype': args.dtype, 'arch': ARCH, 'nvidia_repo': args.nvidia_repo, 'rows': rows}, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
