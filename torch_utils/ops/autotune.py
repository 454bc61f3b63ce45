"""SG3C_OPS=auto never makes a run slower or wrong against the reference ops: per op and shape class, the
first call on a GPU checks the kernel's values against the reference op's on a slice of that call's own batch
(keeping the reference, with one warning line, if they disagree), then times both on that slice and keeps the
faster. The reference op's intermediates are several times its input: an out-of-memory error while timing
it counts as "the kernel wins", never as a crash.

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
import sys
import time
from typing import Any, Callable, Optional

import torch

from torch_utils import safe_json
from torch_utils.atomic import atomic_write_json

from .cuda_build import file_lock

KERNEL, REFERENCE = 'kernel', 'ref'
REPEATS = 3   # timed runs per candidate after one warm-up; the fastest counts
TABLE_LIMIT = 16 << 20   # bytes of the choices file read
SLICE = 4     # images of the call's batch that the check and the timing run on
# Largest difference accepted, relative to the reference's largest magnitude: float32 differs by summation
# order; float16 by the rounding of its outputs (one float16 ulp near the largest value is ~1e-3).
TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 3e-2}
DEFAULT_TOLERANCE = 1e-3


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
        """Time both, remember and return the faster ('kernel' on a tie, or when the reference runs out of
        memory: it saves memory)."""
        t_kernel = self.timer(kernel)
        try:
            t_reference = self.timer(reference)
        except torch.cuda.OutOfMemoryError:
            _release()
            t_reference = float('inf')
        winner = KERNEL if t_kernel <= t_reference else REFERENCE
        self.choices[key] = {'choice': winner, 'kernel_s': t_kernel,
                             'ref_s': t_reference if t_reference < float('inf') else 'out of memory'}
        self._write()
        return winner

    def reject(self, key: str, reason: str) -> str:
        """Remember that the kernel disagreed with the reference in this class: the reference runs."""
        self.choices[key] = {'choice': REFERENCE, 'disagrees': reason}
        self._write()
        return REFERENCE

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            with file_lock(self.path + '.lock'):   # ranks sharing the build merge their tables under its lock
                table = self._read()
                table[self.device_name] = {**table.get(self.device_name, {}), **self.choices}
                atomic_write_json(self.path, table, indent=1, sort_keys=True)
        except OSError:   # a read-only cache: the choices still hold for this process
            pass


def _release() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def batch_slice(args: tuple, kwargs: dict, images: int = SLICE) -> tuple:
    """The call's arguments with its input (the first argument) cut to its first `images` along the batch
    dimension, where that dimension is not the one a bias runs along (bias_act's `dim`)."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] <= images or kwargs.get('dim', 1) % x.ndim == 0:
        return args
    return (x[:images],) + tuple(args[1:])


def _run_with_grad(fn: Callable, args: tuple, kwargs: dict) -> Callable[[], Any]:
    """A closure that runs fn on the call's inputs, and its backward when the call needs gradients; it
    returns the output and the gradients (the output gradient a fixed ramp, so that a wrong map shows)."""
    def detach(v):
        return v.detach().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v

    def run():
        a = tuple(detach(v) for v in args)
        k = {name: detach(v) for name, v in kwargs.items()}
        leaves = [v for v in list(a) + list(k.values()) if isinstance(v, torch.Tensor) and v.requires_grad]
        grads: tuple = ()
        with torch.set_grad_enabled(bool(leaves) and torch.is_grad_enabled()):
            y = fn(*a, **k)
            if leaves and y is not None and y.requires_grad:
                weight = torch.linspace(-1, 1, y.numel(), device=y.device, dtype=y.dtype).reshape(y.shape)
                grads = torch.autograd.grad(y, leaves, weight, allow_unused=True)
        return y, grads
    return run


def disagreement(got: Any, want: Any) -> Optional[str]:
    """None when the kernel's (output, gradients) match the reference's within TOLERANCE, else what differs."""
    (y, grads), (y_ref, grads_ref) = got, want
    if y is None:   # (a call the kernel does not cover: the reference runs it anyway)
        return None
    for name, a, b in [('output', y, y_ref)] + [(f'gradient {i}', g, h) for i, (g, h) in enumerate(zip(grads, grads_ref))]:
        if a is None or b is None:
            if (a is None) != (b is None):
                return f'{name}: one side has none'
            continue
        if a.shape != b.shape:
            return f'{name}: shape {list(a.shape)}, the reference {list(b.shape)}'
        tol = TOLERANCE.get(b.dtype, DEFAULT_TOLERANCE)
        scale = max(b.detach().abs().max().item(), 1e-6) if b.numel() else 1.0
        err = (a.detach().float() - b.detach().float()).abs().max().item() if b.numel() else 0.0
        if not err <= tol * scale:   # (NaN too)
            return f'{name} off by {err / scale:.1e} of its largest magnitude (tolerance {tol:g})'
    return None


def _warn_disagreement(op: str, key: str, reason: str) -> None:
    sys.stderr.write(f'stylegan3-clothing: the CUDA {op} kernel disagrees with the reference op ({reason}) '
                     f'in shape class [{key[:160]}]; using the reference op there\n')


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
            choice = self._choose(key, batch_slice(args, kwargs), kwargs)
        return self.kernel(*args, **kwargs) if choice == KERNEL else None

    def _choose(self, key: str, args: tuple, kwargs: dict) -> str:
        """Check, then time, the kernel against the reference on (a slice of) the call's inputs."""
        kernel = _run_with_grad(self.kernel, args, kwargs)
        reference = _run_with_grad(lambda *a, **k: self.reference(*a, **k, impl='ref'), args, kwargs)
        try:
            want = reference()
        except torch.cuda.OutOfMemoryError:   # the kernel passed its self-test; nothing else can be compared
            _release()
            want = None
        if want is not None:
            reason = disagreement(kernel(), want)
            del want
            if reason is not None:
                _warn_disagreement(self.op, key, reason)
                return self.chooser.reject(key, reason)
        return self.chooser.decide(key, kernel, reference)
