"""SG3C_OPS=auto never makes a run slower than the reference ops: per op and shape class, the first call
on a GPU times the kernel against the reference op on that call's own inputs and keeps the faster.

The choices are remembered in `autotune.json` beside the compiled kernels (one build per source version,
torch and architecture; inside it, one table per GPU model), so later processes and ranks reuse them
without timing. Timing synchronises with the device once per shape class; a call that first comes while a
CUDA graph is being captured (where nothing may synchronise) takes the kernel without timing or
remembering, and the decision is made at the next ordinary call.

A shape class is what decides which implementation is faster: the op, its scalar arguments (factors,
paddings, activation), the filters' shapes, and each tensor's dtype, layout, exact spatial size, whether
it needs gradients, and its batch x channels rounded up to a power of two.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

import torch

from torch_utils import safe_json
from torch_utils.atomic import atomic_write_json

from .cuda_build import file_lock

KERNEL, REFERENCE = 'kernel', 'ref'
REPEATS = 3   # timed runs per candidate after one warm-up; the fastest counts
TABLE_LIMIT = 16 << 20   # bytes of the choices file read


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.ndim == 4:
            n, c, h, w = value.shape
            layout = 'cl' if value.is_contiguous(memory_format=torch.channels_last) and c > 1 else 'nchw'
            batch = 1 << max(int(n * c) - 1, 0).bit_length()
            return f'{str(value.dtype)[6:]}[{batch}x{h}x{w} {layout}{" grad" if value.requires_grad else ""}]'
        return f'{str(value.dtype)[6:]}{list(value.shape)}{" grad" if value.requires_grad else ""}'
    if isinstance(value, (list, tuple)):
        return '(' + ','.join(_describe(v) for v in value) + ')'
    if isinstance(value, float):
        return f'{value:.6g}'
    return repr(value)


def shape_class(op: str, args: tuple, kwargs: dict) -> str:
    """The key under which a call's choice is remembered (see the module doc)."""
    grad = torch.is_grad_enabled()
    parts = [op, 'train' if grad else 'infer'] + [_describe(a) for a in args]
    parts += [f'{k}={_describe(v)}' for k, v in sorted(kwargs.items())]
    return ' '.join(parts)


def cuda_timer(fn: Callable[[], Any]) -> float:
    """Seconds per call of fn on the current CUDA stream: fastest of REPEATS after a warm-up."""
    fn()
    best = float('inf')
    for _ in range(REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    return best


def wall_timer(fn: Callable[[], Any]) -> float:
    """Seconds per call on the CPU (tests): fastest of REPEATS after a warm-up."""
    fn()
    best = float('inf')
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


class Chooser:
    """The remembered choices of one device model, read from and written to `path` (None: memory only)."""

    def __init__(self, path: Optional[str], device_name: str, timer: Callable[[Callable[[], Any]], float] = cuda_timer):
        self.path = path
        self.device_name = device_name
        self.timer = timer
        self.choices: dict[str, dict] = self._read().get(device_name, {})

    def _read(self) -> dict:
        if self.path is None or not os.path.isfile(self.path):
            return {}
        try:
            table = safe_json.load_file(self.path, TABLE_LIMIT)
            return table if isinstance(table, dict) else {}
        except (OSError, ValueError):   # unreadable or half-written by an old version: time again
            return {}

    def choice(self, key: str) -> Optional[str]:
        entry = self.choices.get(key)
        return entry.get('choice') if isinstance(entry, dict) else None

    def decide(self, key: str, kernel: Callable[[], Any], reference: Callable[[], Any]) -> str:
        """Time both, remember and return the faster ('kernel' on a tie: it saves memory)."""
        t_kernel, t_reference = self.timer(kernel), self.timer(reference)
        winner = KERNEL if t_kernel <= t_reference else REFERENCE
        self.choices[key] = {'choice': winner, 'kernel_s': t_kernel, 'ref_s': t_reference}
        self._write()
        return winner

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            with file_lock(self.path + '.lock'):
                table = self._read()
                table[self.device_name] = {**table.get(self.device_name, {}), **self.choices}
                atomic_write_json(self.path, table, indent=1, sort_keys=True)
        except OSError:   # a read-only cache: the choices still hold for this process
            pass


def _run_with_grad(fn: Callable, args: tuple, kwargs: dict) -> Callable[[], Any]:
    """A closure that runs fn on the call's inputs, and its backward when the call needs gradients."""
    def detach(v):
        return v.detach().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v

    def run():
        a = tuple(detach(v) for v in args)
        k = {name: detach(v) for name, v in kwargs.items()}
        leaves = [v for v in list(a) + list(k.values()) if isinstance(v, torch.Tensor) and v.requires_grad]
        with torch.set_grad_enabled(bool(leaves) and torch.is_grad_enabled()):
            y = fn(*a, **k)
            if leaves and y is not None and y.requires_grad:
                torch.autograd.grad(y, leaves, torch.ones_like(y), allow_unused=True)
        return y
    return run


class Tuned:
    """An op's kernel that steps aside (returns None, so the reference op runs) in the shape classes where
    the reference was faster."""

    def __init__(self, op: str, kernel: Callable, reference: Callable, chooser: Chooser,
                 capturing: Callable[[], bool] = torch.cuda.is_current_stream_capturing):
        self.op, self.kernel, self.reference, self.chooser, self.capturing = op, kernel, reference, chooser, capturing

    def __call__(self, *args, **kwargs):
        key = shape_class(self.op, args, kwargs)
        choice = self.chooser.choice(key)
        if choice is None:
            if self.capturing():
                return self.kernel(*args, **kwargs)
            kernel = _run_with_grad(self.kernel, args, kwargs)
            reference = _run_with_grad(lambda *a, **k: self.reference(*a, **k, impl='ref'), args, kwargs)
            choice = self.chooser.decide(key, kernel, reference)
        return self.kernel(*args, **kwargs) if choice == KERNEL else None
