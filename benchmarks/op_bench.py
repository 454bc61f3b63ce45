#!/usr/bin/env python3
"""Op-level speed on a GPU: filtered_lrelu at the StyleGAN3-T/-R layer shapes (256 px at batch 32, 1024 px
at batch 4, the channel counts the networks use) and upfirdn2d at StyleGAN2's resampling shapes (256 px,
batch 32), forward and forward+backward, float16 (float32 with --dtype): our kernels, our reference ops,
and NVIDIA's ops from a checkout of NVlabs/stylegan3 (a separate process: both packages are called
torch_utils), with the ratios ours / NVIDIA.

  python benchmarks/op_bench.py --json=op_bench.json [--nvidia-repo=DIR --nvidia-python=PYTHON] [--quick]
  python benchmarks/op_bench.py --build-nvidia --nvidia-repo=DIR   # compile NVIDIA's plugins only (cached)

Each time is the mean of 10 back-to-back calls after 3 warm-ups (CUDA events). The same seeded inputs go to
all three; each side reports a checksum of its outputs, so the table also shows whether they agree.
Figures only; nothing here asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Optional

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    # Only when imported from elsewhere, and then last: in front, benchmarks/inversion.py and metrics.py
    # would shadow the packages of the same names for the importer.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from nvidia_env import nvidia_env   # noqa: E402

WORKER_FLAG = '--nvidia-worker'
REPEATS, WARMUP = 10, 3


# ------------------------------------------------------------------ the cases

def layer_cases(quick: bool = False) -> list[dict]:
    """One case per distinct filtered_lrelu layer of StyleGAN3-T/-R at 256 and 1024 px, and StyleGAN2's
    upfirdn2d calls at 256 px, with the networks' own filters as numbers (so NVIDIA's process, which cannot
    import our packages, builds the same tensors)."""
    sys.path.insert(0, REPO)
    from networks.stylegan3 import design_lowpass_filter, synthesis_geometry

    def taps(*args, **kwargs) -> Optional[list]:
        f = design_lowpass_filter(*args, **kwargs)
        return None if f is None else f.tolist()

    cases = []
    for cfg in ('stylegan3-t', 'stylegan3-r'):
        radial = cfg == 'stylegan3-r'
        for res, batch in ((256, 32), (1024, 4)):
            if quick and res == 1024:
                continue
            seen = set()
            for g in synthesis_geometry(res, 3, conv_kernel=1 if radial else 3, use_radial_filters=radial,
                                        channel_base=65536 if radial else 32768, channel_max=1024 if radial else 512):
                size = g.src.size + g.kernel - 1
                key = (size, g.up, g.down, g.padding, g.torgb, g.radial)
                if key in seen:
                    continue
                seen.add(key)
                cases.append(dict(op='filtered_lrelu', name=f'{cfg} {res}px L{len(seen) - 1}', batch=batch,
                                  channels=g.dst.channels, size=size, up=g.up, down=g.down, padding=list(g.padding),
                                  gain=1.0 if g.torgb else float(np.sqrt(2)), slope=1.0 if g.torgb else 0.2,
                                  clamp=256.0,
                                  fu=taps(g.up_taps, cutoff=g.src.cutoff, width=g.src.half_width * 2, fs=g.inner_rate),
                                  fd=taps(g.down_taps, cutoff=g.dst.cutoff, width=g.dst.half_width * 2,
                                          fs=g.inner_rate, radial=g.radial)))
    # StyleGAN2 256: the generator's filter after each transposed conv and its ToRGB upsampling, the
    # discriminator's downsampling (channels as channel_base=32768, channel_max=512 give them), with the
    # [1, 3, 3, 1] filter as the networks store it (4x4).
    f = (np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64).tolist()
    for res in (16, 32, 64, 128, 256):
        ch = min(32768 // res, 512)
        common = dict(op='upfirdn2d', batch=32, fu=f, fd=None)
        cases.append(dict(common, name=f'stylegan2 G filter {res}px', channels=ch, size=res + 1, up=1, down=1,
                          padding=[1, 1, 1, 1]))
        cases.append(dict(common, name=f'stylegan2 G toRGB up {res}px', channels=3, size=res // 2, up=2, down=1,
                          padding=[2, 1, 2, 1]))
        cases.append(dict(common, name=f'stylegan2 D down {res}px', channels=ch, size=res, up=1, down=2,
                          padding=[1, 1, 1, 1]))
    return cases


def inputs(case: dict, dtype: torch.dtype, device: torch.device) -> tuple:
    """(x, bias, fu, fd) of a case, seeded: the same in every process."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([case['batch'], case['channels'], case['size'], case['size']], generator=gen).to(device, dtype)
    b = torch.randn([case['channels']], generator=gen).to(device, dtype) if case['op'] == 'filtered_lrelu' else None
    fu, fd = (None if case[k] is None else torch.tensor(case[k], dtype=torch.float32, device=device) for k in ('fu', 'fd'))
    return x, b, fu, fd


def time_ms(fn: Callable[[], object]) -> float:
    """Milliseconds per call over REPEATS back-to-back calls (the GPU kept busy, as in a network) after
    WARMUP calls."""
    for _ in range(WARMUP):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(REPEATS):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / REPEATS


def measure(ops: dict, case: dict, dtype: torch.dtype, device: torch.device) -> dict:
    """Forward and forward+backward times (ms) and an output checksum, with `ops` = the two public ops."""
    x, b, f1, f2 = inputs(case, dtype, device)
    if case['op'] == 'filtered_lrelu':
        def call(t):
            return ops['filtered_lrelu'](t, f1, f2, b, up=case['up'], down=case['down'], padding=case['padding'],
                                         gain=case['gain'], slope=case['slope'], clamp=case['clamp'])
    else:
        def call(t):
            return ops['upfirdn2d'](t, f1, up=case['up'], down=case['down'], padding=case['padding'])
    with torch.no_grad():
        y = call(x)
        forward = time_ms(lambda: call(x))
    xg = x.detach().requires_grad_(True)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)

    def step():
        torch.autograd.grad(call(xg), [xg], dy)
    both = time_ms(step)
    return {'forward_ms': forward, 'fwd_bwd_ms': both, 'checksum': float(y.double().abs().sum()),
            'shape': list(y.shape)}


# ------------------------------------------------------------------ NVIDIA's side (its own process)

def nvidia_ops(repo: str) -> dict:
    sys.path[:] = [repo] + [p for p in sys.path if os.path.abspath(p or '.') not in (REPO, os.path.dirname(__file__))]
    from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d   # NVIDIA's
    bias_act._init()
    upfirdn2d._init()
    filtered_lrelu._init()
    return {'filtered_lrelu': filtered_lrelu.filtered_lrelu, 'upfirdn2d': upfirdn2d.upfirdn2d}


def nvidia_worker(job_path: str) -> None:
    with open(job_path) as f:
        job = json.load(f)
    ops = nvidia_ops(job['repo'])   # (builds the plugins, or loads them from torch's extension cache)
    if job.get('build_only'):
        print(json.dumps({'built': True}))
        return
    dtype = getattr(torch, job['dtype'])
    device = torch.device('cuda')
    rows = []
    for case in job['cases']:
        try:
            rows.append(measure(ops, case, dtype, device))
        except Exception as e:   # noqa: BLE001 - one failing case should not hide the others
            rows.append({'error': f'{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'})
        torch.cuda.empty_cache()
    print(json.dumps({'rows': rows}))


def run_nvidia(repo: str, python: str, job: dict, timeout: Optional[float] = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'job.json')
        with open(path, 'w') as f:
            json.dump(dict(job, repo=os.path.abspath(repo)), f)
        proc = subprocess.run([python, os.path.abspath(__file__), WORKER_FLAG, path], capture_output=True, text=True,
                              env=nvidia_env(), cwd=tmp, timeout=timeout)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {'error': f'NVIDIA run failed: {lines[-1] if lines else proc.returncode}', 'stderr': proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ driver

def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def format_table(rows: list[dict]) -> str:
    lines = ['| case | shape in | ours kernel fwd / fwd+bwd (ms) | our reference | NVIDIA | kernel / NVIDIA fwd, fwd+bwd '
             '| reference / NVIDIA | outputs agree |', '|---|---|---|---|---|---|---|---|']

    def ms(r: dict) -> str:
        return f'{r["forward_ms"]:.3f} / {r["fwd_bwd_ms"]:.3f}' if 'forward_ms' in r else r.get('error', '-')[:40]

    def pair(a: dict, b: dict) -> str:
        f, g = ratio(a.get('forward_ms'), b.get('forward_ms')), ratio(a.get('fwd_bwd_ms'), b.get('fwd_bwd_ms'))
        return f'{f:.2f}, {g:.2f}' if f and g else '-'

    for r in rows:
        c, k, ref, nv = r['case'], r['kernel'], r['reference'], r.get('nvidia', {})
        sums = [s.get('checksum') for s in (k, ref, nv) if s.get('checksum')]
        agree = f'{max(sums) / min(sums) - 1:.1e}' if len(sums) > 1 and min(sums) > 0 else '-'
        lines.append(f'| {c["name"]} {c["op"]} | {c["batch"]}x{c["channels"]}x{c["size"]}² up{c["up"]} down{c["down"]} '
                     f'| {ms(k)} | {ms(ref)} | {ms(nv) if nv else "-"} | {pair(k, nv)} | {pair(ref, nv)} | {agree} |')
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', default=None, help='write the rows here')
    parser.add_argument('--dtype', default='float16', choices=['float16', 'float32'])
    parser.add_argument('--nvidia-repo', default=os.environ.get('SG3C_NVIDIA_REPO'))
    parser.add_argument('--nvidia-python', default=os.environ.get('SG3C_NVIDIA_PYTHON') or sys.executable)
    parser.add_argument('--quick', action='store_true', help='256 px layers only')
    parser.add_argument('--build-nvidia', action='store_true', help="only compile NVIDIA's plugins (cached by torch)")
    args = parser.parse_args()
    if args.build_nvidia:
        result = run_nvidia(args.nvidia_repo, args.nvidia_python, {'build_only': True})
        print(json.dumps(result)[:2000])
        return 0 if result.get('built') else 1
    if not torch.cuda.is_available():
        print('op_bench: needs a CUDA device', file=sys.stderr)
        return 2
    sys.path.insert(0, REPO)
    from torch_utils.ops import cuda_kernels
    from torch_utils.ops.selftest import backend_ops
    failure = cuda_kernels.load()
    if failure is not None:
        print(f'op_bench: our kernels cannot be used: {failure}', file=sys.stderr)
    dtype = getattr(torch, args.dtype)
    device = torch.device('cuda')
    cases = layer_cases(args.quick)
    rows = []
    for case in cases:
        row = {'case': case}
        for name, impl in (('kernel', 'cuda'), ('reference', 'ref')):
            try:
                row[name] = measure(backend_ops(impl), case, dtype, device) if failure is None or impl == 'ref' else \
                    {'error': failure}
            except Exception as e:   # noqa: BLE001 - report and go on
                row[name] = {'error': f'{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'}
            torch.cuda.empty_cache()
        rows.append(row)
        print(f'{case["name"]}: kernel {row["kernel"]}, reference {row["reference"]}', flush=True)
    nvidia_error = None
    if args.nvidia_repo:
        result = run_nvidia(args.nvidia_repo, args.nvidia_python, {'cases': cases, 'dtype': args.dtype})
        nvidia_error = result.get('error')
        for row, theirs in zip(rows, result.get('rows', [])):
            row['nvidia'] = theirs
    table = format_table(rows)
    print(table)
    if nvidia_error:
        print(f'op_bench: {nvidia_error}', file=sys.stderr)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'dtype': args.dtype, 'rows': rows, 'nvidia_error': nvidia_error, 'table': table,
                       'torch': torch.__version__, 'gpu': torch.cuda.get_device_name(0)}, f, indent=1)
    return 0


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:
        nvidia_worker(sys.argv[2])
    else:
        sys.exit(main())
