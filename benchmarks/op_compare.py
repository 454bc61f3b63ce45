#!/usr/bin/env python3
"""CUDA ops against the reference ops: forward, gradients and gradients of gradients, over random cases.

Each case draws an op's arguments at random (shapes, up/down factors, filter sizes and dimensionality,
paddings including crops, flips, gains, slopes, clamps, bias or none, channels-last layout or not). Both
implementations run on the same inputs; for each op and dtype the table gives the largest error over
the cases, relative to the reference's largest magnitude, of
  forward   y,
  grad      d<y, w>/dx and d<y, w>/db (w a fixed random weighting),
  grad2     d<d<y, w>/dx, v>/dw: the gradient through the backward graph that R1 and path-length
            regularisation take.
float16 runs are measured against the reference in float32 on the same (rounded) inputs, next to the
reference's own float16 error, so that a kernel is judged against what float16 allows; gradients on
the 99.9th percentile of the error (see GRAD_QUANTILE).

--layers adds the networks' own calls (network_cases: the StyleGAN3-T/-R layers at 256 and 1024 px and
StyleGAN2's resampling, real spatial sizes and filters, a few channels).

  python benchmarks/op_compare.py --layers --json=op_compare.json   # needs CUDA (SG3C_OPS is forced to cuda)
  python benchmarks/op_compare.py --cases=2 --layers --tiny --device=cpu --impl=ref   # the rehearsal on a CPU
  compute-sanitizer --tool racecheck python benchmarks/op_compare.py --cases=0 --sample=2 --dtypes=float16

The harness takes any two op tables, which is how its logic is tested on the CPU (tests/test_cuda_ops.py).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from torch_utils.ops.selftest import backend_ops, exact_float32   # noqa: E402
from torch_utils.ops.upfirdn2d import setup_filter   # noqa: E402

OPS = ('bias_act', 'upfirdn2d', 'filtered_lrelu')
# Largest relative error accepted: float32 differs by summation order only; float16 kernels must be no
# worse than a few times the reference's own float16 error (plus a floor for tiny outputs).
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2}
FP16_SLACK = 4.0
# A sample before the activation within rounding of zero or of the clamp can fall on the other side in
# one implementation's sums than in the other's: its gradient then differs by the leaky slope, in the few
# samples it reaches (likely at the networks' largest layers, whatever the precision). Gradients are
# therefore judged on this quantile of the error (tests/test_cuda_kernels_on_cpu.py excludes exactly
# those samples instead).
GRAD_QUANTILE = 0.999


@dataclass
class Case:
    op: str
    shape: tuple[int, ...]
    kwargs: dict                    # scalar arguments
    filters: dict = field(default_factory=dict)   # name -> list of taps (nested for 2-D)
    bias: bool = True
    channels_last: bool = False
    seed: int = 0
    name: str = ''

    def describe(self) -> str:
        sizes = {k: np.shape(v) for k, v in self.filters.items()}
        return (f'{self.name + ": " if self.name else ""}{self.op} x={list(self.shape)}{" cl" if self.channels_last else ""} '
                f'bias={self.bias} filters={sizes} {self.kwargs}')


def _out_len(n: int, up: int, down: int, p0: int, p1: int, k: int) -> int:
    full = n * up + p0 + p1 - k + 1
    return -(-full // down) if full > 0 else 0


def _taps(rng: random.Random, two_d: bool, kh: int, kw: int) -> list:
    if two_d:
        return [[rng.uniform(0.1, 1.0) for _ in range(kw)] for _ in range(kh)]
    return [rng.uniform(0.1, 1.0) for _ in range(kw)]


def random_cases(per_op: int, seed: int = 0, ops: tuple[str, ...] = OPS) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for op in ops:
        made = 0
        while made < per_op:
            case = _draw(op, rng, seed=rng.randrange(1 << 30))
            if case is not None:
                cases.append(case)
                made += 1
    return cases


def _draw(op: str, rng: random.Random, seed: int) -> Optional[Case]:
    n, c = rng.randint(1, 3), rng.randint(1, 6)
    h, w = rng.randint(1, 16), rng.randint(1, 16)
    cl = rng.random() < 0.3 and c > 1
    if op == 'bias_act':
        act = rng.choice(['linear', 'relu', 'lrelu', 'lrelu'])
        shape = (n, c, h, w) if rng.random() < 0.7 else (n * h, c)
        kwargs = dict(act=act, alpha=rng.choice([None, 0.2, rng.uniform(0, 1)]),
                      gain=rng.choice([None, 1.0, rng.uniform(0.1, 3)]), clamp=rng.choice([None, rng.uniform(0.2, 2)]))
        return Case(op, shape, kwargs, bias=rng.random() < 0.8, channels_last=cl and len(shape) == 4, seed=seed)
    up, down = rng.choice([1, 1, 2, 4]), rng.choice([1, 1, 2, 4])
    two_d = rng.random() < 0.5
    kw = rng.randint(1, 8 if two_d else 12)
    kh = rng.randint(1, 8) if two_d else kw
    pad = [rng.randint(-2, 8) for _ in range(4)]
    if op == 'upfirdn2d':
        if _out_len(w, up, down, pad[0], pad[1], kw) <= 0 or _out_len(h, up, down, pad[2], pad[3], kh) <= 0:
            return None
        kwargs = dict(up=up, down=down, padding=pad, flip_filter=rng.random() < 0.5, gain=rng.uniform(0.5, 4))
        return Case(op, (n, c, h, w), kwargs, {'f': _taps(rng, two_d, kh, kw)}, bias=False, channels_last=cl, seed=seed)
    # filtered_lrelu: upsampling filter (1-D or 2-D), then downsampling filter (1-D or 2-D)
    two_d_down = rng.random() < 0.5
    kd = rng.randint(1, 8 if two_d_down else 12)
    tmp_w, tmp_h = w * up + pad[0] + pad[1] - kw + 1, h * up + pad[2] + pad[3] - kh + 1
    if tmp_w < kd or tmp_h < kd:
        return None
    kwargs = dict(up=up, down=down, padding=pad, gain=rng.uniform(0.5, 2), slope=rng.choice([0.2, rng.uniform(0, 1)]),
                  clamp=rng.choice([None, rng.uniform(0.5, 3)]), flip_filter=rng.random() < 0.5)
    filters = {'fu': _taps(rng, two_d, kh, kw), 'fd': _taps(rng, two_d_down, kd, kd)}
    return Case(op, (n, c, h, w), kwargs, filters, bias=rng.random() < 0.8, channels_last=cl, seed=seed)


def network_cases(clamp: float = 1.0, channels: int = 4, distinct: bool = False) -> list[Case]:
    """The networks' calls (benchmarks/op_bench.py's layer_cases) with real spatial sizes and filters, one
    image of `channels` channels (a sample at the largest layers), the clamp at `clamp` so that a unit-variance
    signal reaches it. `distinct`: one case per kind of layer (config, factors, padding, filter shapes), the
    smallest of it at 256 px and the largest at 1024 px (for tests on a CPU)."""
    from op_bench import layer_cases
    chosen: dict = {}
    for layer in layer_cases():
        if distinct:
            res = 1024 if '1024px' in layer['name'] else 256
            kind = (layer['name'].split()[0], res, layer['up'], layer['down'], tuple(layer['padding']),
                    np.shape(layer['fu']), np.shape(layer['fd']))
            if kind in chosen and (layer['size'] < chosen[kind]['size']) != (res == 256):
                continue
        else:
            kind = len(chosen)
        chosen[kind] = layer
    cases = []
    for i, layer in enumerate(chosen.values()):
        shape = (1, min(channels, layer['channels']), layer['size'], layer['size'])
        if layer['op'] == 'upfirdn2d':
            kwargs = dict(up=layer['up'], down=layer['down'], padding=layer['padding'])
            cases.append(Case('upfirdn2d', shape, kwargs, {'f': layer['fu']}, bias=False, seed=i, name=layer['name']))
            continue
        kwargs = dict(up=layer['up'], down=layer['down'], padding=layer['padding'], gain=layer['gain'],
                      slope=layer['slope'], clamp=clamp, flip_filter=False)
        filters = {k: layer[k] for k in ('fu', 'fd') if layer[k] is not None}
        cases.append(Case('filtered_lrelu', shape, kwargs, filters, bias=True, seed=i, name=layer['name']))
    return cases


def _draw_tensor(shape, gen: torch.Generator, device: torch.device, dtype: torch.dtype, rounding: torch.dtype,
                 scale: float = 1.0) -> torch.Tensor:
    """Normal values rounded to `rounding`, then held in `dtype`: an op in float32 sees float16's inputs."""
    return (torch.randn(shape, generator=gen) * scale).to(rounding).to(device=device, dtype=dtype)


def _inputs(case: Case, device: torch.device, dtype: torch.dtype,
            rounding: torch.dtype) -> tuple[torch.Tensor, Optional[torch.Tensor], dict]:
    gen = torch.Generator().manual_seed(case.seed)
    x = _draw_tensor(case.shape, gen, device, dtype, rounding)
    if case.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    b = _draw_tensor([case.shape[1]], gen, device, dtype, rounding, 0.5) if case.bias else None
    filters = {name: setup_filter(taps, device=device, separable=np.ndim(taps) == 1) for name, taps in case.filters.items()}
    return x, b, filters


def _call(op: Callable, case: Case, x: torch.Tensor, b: Optional[torch.Tensor], filters: dict) -> torch.Tensor:
    if case.op == 'bias_act':
        return op(x, b, **case.kwargs)
    if case.op == 'upfirdn2d':
        return op(x, filters['f'], **case.kwargs)
    return op(x, filters.get('fu'), filters.get('fd'), b, **case.kwargs)   # (no filter: None)


def evaluate(op: Callable, case: Case, device: torch.device, dtype: torch.dtype,
             rounding: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    """Forward output, first and second order gradients of one op on one case (inputs rounded to
    `rounding`, default `dtype`), all as float32."""
    rounding = rounding or dtype
    x, b, filters = _inputs(case, device, dtype, rounding)
    x.requires_grad_(True)
    params = [x] + ([b.requires_grad_(True)] if b is not None else [])
    y = _call(op, case, x, b, filters)
    gen = torch.Generator().manual_seed(case.seed + 1)
    wt = _draw_tensor(y.shape, gen, device, dtype, rounding).requires_grad_(True)
    grads = torch.autograd.grad((y * wt).sum(), params, create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    v = _draw_tensor(x.shape, gen, device, dtype, rounding)
    g2 = (grads[0] * v).sum()
    grad2 = torch.autograd.grad(g2, [wt])[0] if g2.requires_grad else torch.zeros_like(wt)
    out = {'forward': y, 'grad_x': grads[0], 'grad2': grad2}
    if b is not None:
        out['grad_b'] = grads[1]
    return {k: t.detach().float() for k, t in out.items()}


def relative_error(got: torch.Tensor, want: torch.Tensor, quantile: Optional[float] = None) -> float:
    """Largest (or `quantile` of the) absolute difference, relative to the largest magnitude of `want`."""
    if got.shape != want.shape:
        return math.inf
    if want.numel() == 0:
        return 0.0
    diff = (got - want).abs().flatten()
    if not torch.isfinite(diff).all():
        return math.inf
    err = diff.max().item() if quantile is None else torch.quantile(diff.float(), quantile).item()
    return err / max(want.abs().max().item(), 1e-6)


QUANTITIES = {'forward': ('forward',), 'grad': ('grad_x', 'grad_b'), 'grad2': ('grad2',)}


def compare(candidate: dict[str, Callable], reference: dict[str, Callable], cases: list[Case], device: torch.device,
            dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> list[dict]:
    """One row per (op, dtype): the largest relative error per quantity, the worst case, and pass/fail."""
    with exact_float32():
        return _compare(candidate, reference, cases, device, dtypes)


def _compare(candidate, reference, cases, device, dtypes) -> list[dict]:
    rows = []
    for dtype in dtypes:
        for op in sorted({c.op for c in cases}):
            row = {'op': op, 'dtype': str(dtype).replace('torch.', ''), 'cases': 0, 'worst_case': ''}
            row.update({q: 0.0 for q in QUANTITIES})
            row.update({f'ref_{q}': 0.0 for q in QUANTITIES})
            worst = -1.0
            for case in (c for c in cases if c.op == op):
                got = evaluate(candidate[op], case, device, dtype)
                want = evaluate(reference[op], case, device, torch.float32, rounding=dtype)
                ref_low = evaluate(reference[op], case, device, dtype) if dtype != torch.float32 else want
                score = 0.0
                for q, keys in QUANTITIES.items():
                    quantile = GRAD_QUANTILE if q != 'forward' else None
                    err = max((relative_error(got[k], want[k], quantile) for k in keys if k in want), default=0.0)
                    ref_err = max((relative_error(ref_low[k], want[k], quantile) for k in keys if k in want),
                                  default=0.0)
                    row[q] = max(row[q], err)
                    row[f'ref_{q}'] = max(row[f'ref_{q}'], ref_err)
                    score = max(score, err)
                if score > worst:
                    worst, row['worst_case'] = score, case.describe()
                row['cases'] += 1
            tol = TOLERANCE.get(dtype, 1e-2)
            limit = {q: max(tol, FP16_SLACK * row[f'ref_{q}']) if dtype != torch.float32 else tol for q in QUANTITIES}
            row['ok'] = all(row[q] <= limit[q] for q in QUANTITIES)
            rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f'{"op":<15} {"dtype":<8} {"cases":>5} {"forward":>9} {"grad":>9} {"grad2":>9}  '
             f'{"(ref fp16: fwd grad grad2)":>28}  ok']
    for r in rows:
        ref = '' if r['dtype'] == 'float32' else f'{r["ref_forward"]:.1e} {r["ref_grad"]:.1e} {r["ref_grad2"]:.1e}'
        lines.append(f'{r["op"]:<15} {r["dtype"]:<8} {r["cases"]:>5} {r["forward"]:>9.2e} {r["grad"]:>9.2e} '
                     f'{r["grad2"]:>9.2e}  {ref:>28}  {"yes" if r["ok"] else "NO"}')
    return '\n'.join(lines)


def chosen_cases(args: argparse.Namespace) -> list[Case]:
    """The random cases and, with --layers, the networks' calls (--tiny: one image of one channel at each kind
    of 256 px layer; --sample=N: the first N of those alone)."""
    cases = random_cases(args.cases, args.seed) if args.cases else []
    if args.layers or args.sample:
        layers = network_cases(channels=1, distinct=True) if args.tiny or args.sample else network_cases()
        if args.tiny or args.sample:
            layers = [c for c in layers if '1024px' not in c.name]
        cases += layers[:args.sample] if args.sample else layers
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cases', type=int, default=40, help='random cases per op (default 40)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--layers', action='store_true', help="also the networks' own calls (network_cases)")
    parser.add_argument('--tiny', action='store_true', help="--layers at 256 px, one image of one channel per kind")
    parser.add_argument('--sample', type=int, default=0,
                        help="only the first N tiny layer cases (with --cases=0: a short run for compute-sanitizer)")
    parser.add_argument('--dtypes', default='float32,float16', help='comma list (default: %(default)s)')
    parser.add_argument('--device', default='cuda', help="'cuda' (default) or 'cpu' (the rehearsal)")
    parser.add_argument('--impl', default='cuda', choices=['cuda', 'ref'],
                        help="the ops compared with the reference: 'ref' stands it in for the kernels (the rehearsal)")
    parser.add_argument('--json', default=None, help='write the rows here')
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('op_compare: needs a CUDA device (--device=cpu --impl=ref rehearses on the CPU)', file=sys.stderr)
        return 2
    start = time.perf_counter()
    failure = None
    if args.impl == 'cuda':
        from torch_utils.ops import cuda_kernels
        failure = 'the kernels need a CUDA device' if device.type != 'cuda' else cuda_kernels.load()   # (builds)
    result: dict = {'build_or_load_s': round(time.perf_counter() - start, 1), 'failure': failure, 'rows': [],
                    'impl': args.impl, 'device': args.device}
    if failure is None:
        dtypes = tuple(getattr(torch, d) for d in args.dtypes.split(','))
        result['rows'] = compare(backend_ops(args.impl), backend_ops('ref'), chosen_cases(args), device, dtypes)
        print(format_table(result['rows']))
    else:
        print(f'op_compare: the CUDA ops cannot be used: {failure}', file=sys.stderr)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return 0 if failure is None and all(r['ok'] for r in result['rows']) else 1


if __name__ == '__main__':
    sys.exit(main())
