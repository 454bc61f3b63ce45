#!/usr/bin/env python3
"""Op-level speed on a GPU: filtered_lrelu at the StyleGAN3-T/-R layer shapes (256 px at batch 32, 1024 px
at batch 4, the channel counts the networks use) and upfirdn2d at StyleGAN2's resampling shapes (256 px,
batch 32), forward and forward+backward, float16 (float32 with --dtype): our kernels, our reference ops,
and NVIDIA's ops from a checkout of NVlabs/stylegan3 (a separate process: both packages are called
torch_utils), with the ratios ours / NVIDIA.

  python benchmarks/op_bench.py --json=op_bench.json [--nvidia-repo=DIR --nvidia-python=PYTHON] [--quick]
  python benchmarks/op_bench.py --build-nvidia --nvidia-repo=DIR   # compile NVIDIA's plugins only (cached)
  python benchmarks/op_bench.py --device=cpu --tiny --impl=ref ... # the GPU check's rehearsal on a CPU

Each time is the mean of 10 back-to-back calls after 3 warm-ups (CUDA events). The same inputs, drawn on
the device from a seeded generator, go to all three; each side reports a checksum of its outputs, so the
table also shows whether they agree. NVIDIA's process runs beside ours, case by case (the largest
StyleGAN3-T layers first), and the JSON is rewritten after every case, so a run stopped by its time limit
keeps what finished. Each NVIDIA row says whether NVIDIA's CUDA plugin ran or, where it does not load (as on
torch >= 2.x with Python 3.12: docs/cuda_ops.md), NVIDIA's own reference path (`impl='ref'`).
Figures only; nothing here asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
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
MESSAGE = 'SG3C-OP-BENCH '   # marks the worker's answers among whatever NVIDIA's code prints


# ------------------------------------------------------------------ the cases

def layer_cases(quick: bool = False, tiny: bool = False) -> list[dict]:
    """One case per distinct filtered_lrelu layer of StyleGAN3-T/-R at 256 and 1024 px, and StyleGAN2's
    upfirdn2d calls at 256 px, with the networks' own filters as numbers (so NVIDIA's process, which cannot
    import our packages, builds the same tensors). `tiny`: one image of one channel at the largest 256 px shape
    of each kind of layer (config, op, factors), for the rehearsal on a CPU."""
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
    if tiny:
        kinds: dict = {}
        for c in in_order([c for c in cases if '1024px' not in c['name']]):
            kinds.setdefault((c['name'].split()[0], c['op'], c['up'], c['down']), dict(c, batch=1, channels=1))
        cases = list(kinds.values())
    return cases


def work(case: dict) -> int:
    return case['batch'] * case['channels'] * (case['size'] * case['up']) ** 2


def in_order(cases: list[dict]) -> list[dict]:
    """StyleGAN3-T's layers first, the most work first (the shapes that decide training speed come back
    even from a run cut short), then the rest as listed."""
    first = sorted((c for c in cases if c['name'].startswith('stylegan3-t')), key=work, reverse=True)
    return first + [c for c in cases if not c['name'].startswith('stylegan3-t')]


def draw(shape: list[int], seed: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normal values drawn on `device` by a seeded generator of that device: the same in every process on
    one device, and no CPU time on batch-32 shapes (12 G elements in all)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dtype)


def inputs(case: dict, dtype: torch.dtype, device: torch.device) -> tuple:
    """(x, bias, fu, fd) of a case, seeded: the same in every process."""
    x = draw([case['batch'], case['channels'], case['size'], case['size']], 0, dtype, device)
    b = draw([case['channels']], 2, dtype, device) if case['op'] == 'filtered_lrelu' else None
    fu, fd = (None if case[k] is None else torch.tensor(case[k], dtype=torch.float32, device=device) for k in ('fu', 'fd'))
    return x, b, fu, fd


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int = REPEATS, warmup: int = WARMUP) -> float:
    """Milliseconds per call over `repeats` back-to-back calls (the GPU kept busy, as in a network) after
    `warmup` calls; CUDA events on a GPU, the wall clock on a CPU."""
    for _ in range(warmup):
        fn()
    if device.type != 'cuda':
        start_s = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start_s) * 1000 / repeats
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeats


def measure(ops: dict, case: dict, dtype: torch.dtype, device: torch.device, repeats: int = REPEATS,
            warmup: int = WARMUP) -> dict:
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
        forward = time_ms(lambda: call(x), device, repeats, warmup)
    xg = x.detach().requires_grad_(True)
    dy = draw(list(y.shape), 1, dtype, device)

    def step():
        torch.autograd.grad(call(xg), [xg], dy)
    both = time_ms(step, device, repeats, warmup)
    return {'forward_ms': forward, 'fwd_bwd_ms': both, 'checksum': float(y.double().abs().sum()),
            'shape': list(y.shape)}


# ------------------------------------------------------------------ NVIDIA's side (its own process)

def nvidia_ops(repo: str, device: torch.device) -> tuple[dict, dict]:
    """NVIDIA's two ops, each pinned to its CUDA plugin where that loads on this device and to NVIDIA's own
    reference path where not, and per op which ran: {'plugin': bool, 'impl': 'cuda' | 'ref', 'note': str}."""
    sys.path[:] = [repo] + [p for p in sys.path if os.path.abspath(p or '.') not in (REPO, os.path.dirname(__file__))]
    from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d   # NVIDIA's
    ops, status = {}, {}
    for name, module in (('filtered_lrelu', filtered_lrelu), ('upfirdn2d', upfirdn2d), ('bias_act', bias_act)):
        if device.type != 'cuda':
            status[name] = {'plugin': False, 'impl': 'ref', 'note': f"{device.type}: NVIDIA's reference path"}
        else:
            try:
                module._init()   # (builds the plugin, or loads it from torch's extension cache)
                status[name] = {'plugin': True, 'impl': 'cuda', 'note': 'CUDA plugin'}
            except Exception as e:   # noqa: BLE001 - NVIDIA's loader fails on current torch; their ref path runs
                status[name] = {'plugin': False, 'impl': 'ref', 'note': f"plugin failed ({_error(e)}): NVIDIA's ref"}
        if name != 'bias_act':
            op, impl = getattr(module, name), status[name]['impl']
            ops[name] = lambda *a, _op=op, _impl=impl, **k: _op(*a, impl=_impl, **k)
    return ops, status


def _error(e: BaseException) -> str:
    text = str(e).strip()
    return f'{type(e).__name__}: {text.splitlines()[-1][:200] if text else ""}'


def _answer(message: dict) -> None:
    print(MESSAGE + json.dumps(message), flush=True)


def nvidia_worker(job_path: str) -> None:
    """Answer the plugins' status, then one line per case that arrives on stdin, until stdin closes."""
    with open(job_path) as f:
        job = json.load(f)
    device = torch.device(job['device'])
    ops, status = nvidia_ops(job['repo'], device)
    _answer({'plugins': status})
    dtype = getattr(torch, job['dtype'])
    for line in sys.stdin:
        case = json.loads(line)
        try:
            row = measure(ops, case, dtype, device, job['repeats'], job['warmup'])
        except Exception as e:   # noqa: BLE001 - one failing case should not hide the others
            row = {'error': _error(e)}
        row.update(status[case['op']])
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        _answer(row)


class NvidiaWorker:
    """NVIDIA's side in its own process (its package names clash with ours), fed one case at a time so that
    its rows come beside ours; what it prints besides its answers goes to `log`."""

    def __init__(self, repo: str, python: str, job: dict, log: Optional[str] = None):
        self.tmp = tempfile.TemporaryDirectory()
        path = os.path.join(self.tmp.name, 'job.json')
        with open(path, 'w') as f:
            json.dump(dict(job, repo=os.path.abspath(repo)), f)
        self.log = open(log or os.devnull, 'a')
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), WORKER_FLAG, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=nvidia_env(),
                                     cwd=self.tmp.name)
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(MESSAGE):
                self.answers.put(json.loads(line[len(MESSAGE):]))
            else:
                self.log.write(line)
        self.answers.put(None)   # (the process ended)

    def answer(self, timeout: Optional[float]) -> dict:
        try:
            message = self.answers.get(timeout=timeout)
        except queue.Empty:
            self.close()
            return {'error': f'NVIDIA worker gave no answer in {timeout:.0f} s'}
        if message is None:
            return {'error': f'NVIDIA worker ended (exit status {self.proc.wait()}; its log says why)'}
        return message

    def ask(self, case: dict, timeout: Optional[float]) -> dict:
        if self.proc.poll() is not None:
            return {'error': f'NVIDIA worker ended (exit status {self.proc.returncode})'}
        self.proc.stdin.write(json.dumps(case) + '\n')
        self.proc.stdin.flush()
        return self.answer(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()
        self.tmp.cleanup()


# ------------------------------------------------------------------ driver

def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def format_table(rows: list[dict]) -> str:
    lines = ['| case | shape in | ours kernel fwd / fwd+bwd (ms) | our reference | NVIDIA (its impl) '
             '| kernel / NVIDIA fwd, fwd+bwd | reference / NVIDIA | outputs agree |', '|---|---|---|---|---|---|---|---|']

    def ms(r: dict) -> str:
        return f'{r["forward_ms"]:.3f} / {r["fwd_bwd_ms"]:.3f}' if 'forward_ms' in r else r.get('error', '-')[:60]

    def pair(a: dict, b: dict) -> str:
        f, g = ratio(a.get('forward_ms'), b.get('forward_ms')), ratio(a.get('fwd_bwd_ms'), b.get('fwd_bwd_ms'))
        return f'{f:.2f}, {g:.2f}' if f and g else '-'

    for r in rows:
        c, k, ref, nv = r['case'], r['kernel'], r['reference'], r.get('nvidia', {})
        sums = [s.get('checksum') for s in (k, ref, nv) if s.get('checksum')]
        agree = f'{max(sums) / min(sums) - 1:.1e}' if len(sums) > 1 and min(sums) > 0 else '-'
        theirs = f'{ms(nv)} ({nv.get("impl", "?")})' if nv else '-'
        lines.append(f'| {c["name"]} {c["op"]} | {c["batch"]}x{c["channels"]}x{c["size"]}² up{c["up"]} down{c["down"]} '
                     f'| {ms(k)} | {ms(ref)} | {theirs} | {pair(k, nv)} | {pair(ref, nv)} | {agree} |')
    return '\n'.join(lines)


def write_json(path: str, result: dict) -> None:
    """Atomically: a run killed mid-write keeps the previous rows."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)


def build_nvidia(args: argparse.Namespace) -> int:
    """Start NVIDIA's worker once, so that its plugins compile (cached by torch) before anyone times them."""
    worker = NvidiaWorker(args.nvidia_repo, args.nvidia_python, job_of(args))
    status = worker.answer(timeout=None)
    worker.close()
    print(json.dumps(status)[:2000])
    return 0 if 'plugins' in status else 1


def job_of(args: argparse.Namespace) -> dict:
    return {'dtype': args.dtype, 'device': args.device, 'repeats': args.repeats, 'warmup': args.warmup}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', default=None, help='write the rows here (rewritten after every case)')
    parser.add_argument('--dtype', default='float16', choices=['float16', 'float32'])
    parser.add_argument('--device', default='cuda', help="'cuda' (default) or 'cpu' (the rehearsal)")
    parser.add_argument('--impl', default='cuda', choices=['cuda', 'ref'],
                        help="our ops in the kernel column: 'ref' stands the reference in (the rehearsal)")
    parser.add_argument('--repeats', type=int, default=REPEATS, help='timed calls per figure')
    parser.add_argument('--warmup', type=int, default=WARMUP, help='untimed calls before them')
    parser.add_argument('--nvidia-repo', default=os.environ.get('SG3C_NVIDIA_REPO'))
    parser.add_argument('--nvidia-python', default=os.environ.get('SG3C_NVIDIA_PYTHON') or sys.executable)
    parser.add_argument('--nvidia-log', default=None, help="NVIDIA's process's own output goes here")
    parser.add_argument('--nvidia-timeout', type=float, default=300, help="seconds for one NVIDIA answer")
    parser.add_argument('--quick', action='store_true', help='256 px layers only')
    parser.add_argument('--tiny', action='store_true', help='256 px shapes, batch 1, at most 2 channels')
    parser.add_argument('--build-nvidia', action='store_true', help="only compile NVIDIA's plugins (cached by torch)")
    return parser.parse_args()


def our_side(impl: str, device: torch.device) -> tuple[dict, Optional[str]]:
    """Our ops in the kernel column, or why they cannot run."""
    sys.path.insert(0, REPO)
    from torch_utils.ops.selftest import backend_ops
    if impl == 'cuda':
        from torch_utils.ops import cuda_kernels
        failure = 'our kernels need a CUDA device' if device.type != 'cuda' else cuda_kernels.load()
        if failure is not None:
            print(f'op_bench: our kernels cannot be used: {failure}', file=sys.stderr)
            return {}, failure
    return backend_ops(impl), None


def main() -> int:
    args = parse_args()
    if args.build_nvidia:
        return build_nvidia(args)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('op_bench: needs a CUDA device (--device=cpu rehearses on the CPU)', file=sys.stderr)
        return 2
    kernel_ops, failure = our_side(args.impl, device)
    from torch_utils.ops.selftest import backend_ops
    dtype = getattr(torch, args.dtype)
    worker = NvidiaWorker(args.nvidia_repo, args.nvidia_python, job_of(args), args.nvidia_log) \
        if args.nvidia_repo else None
    result = {'dtype': args.dtype, 'device': args.device, 'kernel_impl': args.impl, 'rows': [], 'nvidia_error': None,
              'torch': torch.__version__,
              'gpu': torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}
    if worker is not None:
        hello = worker.answer(args.nvidia_timeout)
        result['nvidia_plugins'], result['nvidia_error'] = hello.get('plugins'), hello.get('error')
    try:
        for case in in_order(layer_cases(args.quick, args.tiny)):
            row = {'case': case}
            for name, ops in (('kernel', kernel_ops), ('reference', backend_ops('ref'))):
                try:
                    row[name] = measure(ops, case, dtype, device, args.repeats, args.warmup) if ops else \
                        {'error': failure}
                except Exception as e:   # noqa: BLE001 - report and go on
                    row[name] = {'error': _error(e)}
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
            if worker is not None:
                row['nvidia'] = worker.ask(case, args.nvidia_timeout)
            result['rows'].append(row)
            result['table'] = format_table(result['rows'])
            if args.json:
                write_json(args.json, result)
            print(f'{case["name"]}: kernel {row["kernel"]}, reference {row["reference"]}, '
                  f'NVIDIA {row.get("nvidia", "-")}', flush=True)
    finally:
        if worker is not None:
            worker.close()
    print(result.get('table', ''))
    return 0


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:
        nvidia_worker(sys.argv[2])
    else:
        sys.exit(main())
