"""The CUDA implementations of bias_act, upfirdn2d and filtered_lrelu, as autograd Functions.

The compiled module (torch_utils/ops/cuda/, see ops.h there) has one tiled kernel for all resampling:
  input tile -> [stage A: zero-insert, correlate, decimate] -> [activation] -> [stage B: correlate,
  decimate] -> output tile,
all in shared memory, one launch. Plain upfirdn2d is stage A alone; filtered_lrelu is the whole chain
(bias, upsampling, leaky ReLU, gain, clamp, downsampling), keeping for backward only a record of 2 bits
per upsampled ("mid") sample: which side of the leaky ReLU it fell on and whether it was clamped.

Every backward pass is written in terms of the same Functions (never as a bare kernel call), so the
gradient graph is itself differentiable: R1 and path-length regularisation differentiate through it.
- upfirdn2d's gradient is an upfirdn2d of the output gradient with the taps flipped and the up/down
  factors swapped (the adjoint of zero-insert -> pad -> correlate -> decimate);
- filtered_lrelu's gradient is the adjoint chain with the derivative read from the record in place of
  the activation: a linear map of the output gradient, whose own adjoint is the forward chain with the
  same record (the gradient of the gradient);
- bias_act with linear / (leaky) ReLU keeps the same 2-bit record per element, and its backward is one
  elementwise kernel that is linear in its input and therefore its own derivative.

No call synchronises with the host: filters are flipped and scaled by the kernels as they load them, and
what a call needs to know about its plan is cached per shape (so a generator's forward can be captured
in a CUDA graph once it has run once). Calls the kernels do not cover (other activations, negative
gains or slopes, filters that need gradients, non-4-D images, plans that do not fit) return None, and
the reference op runs instead.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Iterator, Optional, Sequence

import torch

from . import cuda_build

ACT_NONE, ACT_APPLY, ACT_RECORD, ACT_MASKED = 0, 1, 2, 3   # tile.h's Act
_NO_CLAMP = -1.0

_module: Optional[ModuleType] = None
_failure: Optional[str] = None


def _ext() -> ModuleType:
    assert _module is not None, 'CUDA ops used before load()'
    return _module


@contextlib.contextmanager
def use_module(module: ModuleType) -> Iterator[None]:
    """Run the kernels' Python layer over another build of the same ops (the CPU harness in tests)."""
    global _module, _state
    saved = _module, _state
    _module, _state = module, 'ready'
    try:
        yield
    finally:
        _module, _state = saved


# ---------------------------------------------------------------------------------------------------------
# Geometry

def _adjoint_axis(n_in: int, n_out: int, up: int, down: int, pad0: int, taps: int) -> tuple[int, int, int, int]:
    """(up, down, pad0, pad1) of the upfirdn that maps an output gradient back onto the input samples.

    Transposing zero-insert(up) -> pad(pad0) -> correlate(taps) -> keep-every(down) gives
    zero-insert(down) -> pad(taps - 1 - pad0) -> correlate(flipped taps) -> keep-every(up), with the end
    padding chosen so that exactly n_in samples come out."""
    return down, up, taps - 1 - pad0, n_in * up - n_out * down + pad0 - up + 1


def _adjoint(x_shape: Sequence[int], y_shape: Sequence[int], taps_hw: Sequence[int], up, down, pad):
    """The adjoint upfirdn's (up, down, padding) for an [N, C, H, W] input and output and [kh, kw] taps."""
    ux, dx, px0, px1 = _adjoint_axis(x_shape[3], y_shape[3], up[0], down[0], pad[0], taps_hw[1])
    uy, dy, py0, py1 = _adjoint_axis(x_shape[2], y_shape[2], up[1], down[1], pad[2], taps_hw[0])
    return (ux, uy), (dx, dy), (px0, px1, py0, py1)


def _taps_hw(f: torch.Tensor) -> tuple[int, int]:
    """(kh, kw) of a 2-D filter, or of a 1-D (separable) one applied along both axes."""
    return (int(f.shape[0]), int(f.shape[-1]))


@dataclass(frozen=True)
class Stage:
    """A filter as a stage of the kernel loads it: correlation taps = (flip ? reversed f : f) * scale."""
    flip: bool
    scale: float

    def adjoint(self) -> 'Stage':
        return Stage(not self.flip, self.scale)


@dataclass(frozen=True)
class Chain:
    """Geometry of one resample-act-resample launch, per axis (x, y):
    mid[t] = sum_k a[k] in_z[t + k - pad_a]  (in_z: the input zero-inserted by `up`), t in [0, mid);
    out[o] = sum_k b[k] mid[o * down + k - pad_b]."""
    size_in: tuple[int, int]
    up: int
    pad_a: tuple[int, int]
    taps_a: tuple[int, int]        # (kx, ky)
    mid: tuple[int, int]
    down: int
    pad_b: tuple[int, int]
    taps_b: tuple[int, int]
    size_out: tuple[int, int]

    def args(self) -> list[int]:
        return [self.up, self.up, 1, 1, *self.pad_a, *self.mid, self.down, self.down, *self.pad_b, *self.size_out]

    def adjoint(self) -> 'Chain':
        """The chain of the transposed map (same mid grid, so the same record applies)."""
        return Chain(self.size_out, self.down, tuple(k - 1 - p for k, p in zip(self.taps_b, self.pad_b)), self.taps_b,
                     self.mid, self.up, tuple(k - 1 - p for k, p in zip(self.taps_a, self.pad_a)), self.taps_a,
                     self.size_in)


@dataclass(frozen=True)
class Epilogue:
    leaky: bool
    alpha: float
    gain: float
    clamp: float   # < 0: none


def _epilogue(act: str, alpha: float, gain: float, clamp: Optional[float]) -> Optional[Epilogue]:
    """Kernel epilogue, or None when the kernels do not cover this activation (the 2-bit derivative
    record needs gain > 0 and a non-negative slope)."""
    if gain <= 0 or (clamp is not None and clamp < 0):
        return None
    clamp = _NO_CLAMP if clamp is None else float(clamp)
    if act == 'linear':
        return Epilogue(False, 0.0, float(gain), clamp)
    if act in ('relu', 'lrelu'):
        slope = 0.0 if act == 'relu' else float(alpha)
        return Epilogue(True, slope, float(gain), clamp) if slope >= 0 else None
    return None


# ---------------------------------------------------------------------------------------------------------
# Autograd Functions

class _BiasActGrad(torch.autograd.Function):
    """dx = dy * (the derivative recorded by the forward pass)."""

    @staticmethod
    def forward(ctx, dy: torch.Tensor, bits: torch.Tensor, strides: tuple, epi: Epilogue) -> torch.Tensor:
        ctx.save_for_backward(bits)
        ctx.strides, ctx.epi = strides, epi
        return _ext().bias_act_grad(dy, bits, list(strides), epi.leaky, epi.alpha, epi.gain, epi.clamp)

    @staticmethod
    def backward(ctx, ddx: torch.Tensor):
        bits, = ctx.saved_tensors
        # Linear in dy with a derivative that is piecewise constant in the input: its own derivative.
        return _BiasActGrad.apply(ddx, bits, ctx.strides, ctx.epi), None, None, None


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, b: Optional[torch.Tensor], dim: int, epi: Epilogue) -> torch.Tensor:
        record = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        y, bits = _ext().bias_act(x, b, dim, epi.leaky, epi.alpha, epi.gain, epi.clamp, record)
        ctx.save_for_backward(bits)
        ctx.dim, ctx.epi, ctx.strides = dim, epi, tuple(y.stride())
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        bits, = ctx.saved_tensors
        dx = _BiasActGrad.apply(dy, bits, ctx.strides, ctx.epi)
        db = dx.sum([d for d in range(dx.ndim) if d != ctx.dim]) if ctx.needs_input_grad[1] else None
        return dx, db, None, None


def _output_size(n: int, up: int, down: int, pad0: int, pad1: int, taps: int) -> int:
    full = n * up + pad0 + pad1 - taps + 1
    return (full - 1) // down + 1 if full > 0 else 0


def _upfirdn(x: torch.Tensor, f: torch.Tensor, stage: Stage, up, down, pad) -> torch.Tensor:
    """One plain upfirdn2d launch: tiled when a plan fits, else one thread per output."""
    kh, kw = _taps_hw(f)
    out_w = _output_size(x.shape[3], up[0], down[0], pad[0], pad[1], kw)
    out_h = _output_size(x.shape[2], up[1], down[1], pad[2], pad[3], kh)
    geom = [up[0], up[1], down[0], down[1], pad[0], pad[2], out_w, out_h, 1, 1, 0, 0, out_w, out_h]
    result = _ext().resample(x, f, stage.flip, stage.scale, None, False, 1.0, None, None, geom, ACT_NONE, 0.0, 1.0,
                             _NO_CLAMP)
    if result is not None:
        return result[0]
    return _ext().upfirdn2d_direct(x, f, stage.flip, stage.scale, geom[:8])


class _UpFirDn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, stage: Stage, up, down, pad) -> torch.Tensor:
        y = _upfirdn(x, f, stage, up, down, pad)
        ctx.save_for_backward(f)
        ctx.geometry = (x.shape, y.shape, stage, up, down, pad)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        f, = ctx.saved_tensors
        x_shape, y_shape, stage, up, down, pad = ctx.geometry
        dx = _UpFirDn.apply(dy, f, stage.adjoint(), *_adjoint(x_shape, y_shape, _taps_hw(f), up, down, pad))
        return dx, None, None, None, None, None


def _chain(x: torch.Tensor, fa: torch.Tensor, sa: Stage, fb: torch.Tensor, sb: Stage, b: Optional[torch.Tensor],
           signs: Optional[torch.Tensor], chain: Chain, act: int, epi: Epilogue) -> tuple[torch.Tensor, torch.Tensor]:
    result = _ext().resample(x, fa, sa.flip, sa.scale, fb, sb.flip, sb.scale, b, signs, chain.args(), act, epi.alpha,
                             epi.gain, epi.clamp)
    if result is None:   # (planned before the forward pass: see _chain_fits)
        raise RuntimeError(f'sg3c ops: no tiled plan for {chain} with {list(x.shape)} {x.dtype}')
    return result


class _Masked(torch.autograd.Function):
    """t -> B(derivative * A(t)): the derivative from a forward pass's record; linear in t."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, fa, sa: Stage, fb, sb: Stage, signs: torch.Tensor, chain: Chain,
                epi: Epilogue) -> torch.Tensor:
        ctx.save_for_backward(fa, fb, signs)
        ctx.args = (sa, sb, chain, epi)
        return _chain(t, fa, sa, fb, sb, None, signs, chain, ACT_MASKED, epi)[0]

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        fa, fb, signs = ctx.saved_tensors
        sa, sb, chain, epi = ctx.args
        dt = _Masked.apply(g, fb, sb.adjoint(), fa, sa.adjoint(), signs, chain.adjoint(), epi)
        return dt, None, None, None, None, None, None, None


class _FilteredLrelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, b: Optional[torch.Tensor], fa, sa: Stage, fb, sb: Stage, chain: Chain,
                epi: Epilogue) -> torch.Tensor:
        record = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        y, signs = _chain(x, fa, sa, fb, sb, b, None, chain, ACT_RECORD if record else ACT_APPLY, epi)
        ctx.save_for_backward(fa, fb, signs)
        ctx.args = (sa, sb, chain, epi)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        fa, fb, signs = ctx.saved_tensors
        sa, sb, chain, epi = ctx.args
        dx = _Masked.apply(dy, fb, sb.adjoint(), fa, sa.adjoint(), signs, chain.adjoint(), epi)
        db = dx.sum([0, 2, 3]) if ctx.needs_input_grad[1] else None
        return dx, db, None, None, None, None, None, None


# ---------------------------------------------------------------------------------------------------------
# The ops. The reference ops (bias_act.py, upfirdn2d.py, filtered_lrelu.py) call these with their arguments
# already parsed; None means "not covered here" and the reference op goes on.

def _needs_grad(t: Optional[torch.Tensor]) -> bool:
    return t is not None and t.requires_grad


def _float_filter(f: Optional[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    if f is None:   # identity (a fill on the device: no host-to-device copy)
        return torch.ones([1], dtype=torch.float32, device=x.device)
    return f if f.dtype == torch.float32 and f.device == x.device else f.to(device=x.device, dtype=torch.float32)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
             clamp: Optional[float]) -> Optional[torch.Tensor]:
    epi = _epilogue(act, alpha, gain, clamp)
    if epi is None or x.ndim == 0:
        return None
    return _BiasAct.apply(x, None if b is None else b.to(x.dtype), dim % x.ndim, epi)


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: tuple[int, int], down: tuple[int, int],
              padding: tuple[int, int, int, int], flip_filter: bool, gain: float) -> Optional[torch.Tensor]:
    if x.ndim != 4 or _needs_grad(f) or (f is not None and f.ndim not in (1, 2)):
        return None
    f = _float_filter(f, x)
    kh, kw = _taps_hw(f)
    if _output_size(x.shape[3], up[0], down[0], padding[0], padding[1], kw) <= 0 or \
            _output_size(x.shape[2], up[1], down[1], padding[2], padding[3], kh) <= 0:
        return None
    # The reference convolves (correlates with the reversed taps) unless flip_filter.
    stage = Stage(not flip_filter, float(gain) ** (f.ndim / 2))
    return _UpFirDn.apply(x, f, stage, tuple(up), tuple(down), tuple(padding))


_plans: dict = {}   # chain geometry, layout, dtype -> whether the forward and adjoint launches have plans


def _chain_fits(x: torch.Tensor, fa: torch.Tensor, fb: torch.Tensor, chain: Chain) -> bool:
    """Whether the forward (recording) and adjoint (masked) launches have tiled plans; decided once per
    geometry from shapes alone ("meta" tensors: no device work)."""
    key = (tuple(x.shape), tuple(x.stride()), x.dtype, fa.dim(), fb.dim(), chain)
    fits = _plans.get(key)
    if fits is None:
        meta = lambda shape, dtype=torch.float32: torch.empty(shape, dtype=dtype, device='meta')   # noqa: E731
        x_meta = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device='meta')
        adj = chain.adjoint()
        y_meta = meta([x.shape[0], x.shape[1], chain.size_out[1], chain.size_out[0]], x.dtype)
        fits = bool(_ext().describe(x_meta, meta(fa.shape), meta(fb.shape), chain.args(), ACT_RECORD)) and \
            bool(_ext().describe(y_meta, meta(fb.shape), meta(fa.shape), adj.args(), ACT_MASKED))
        _plans[key] = fits
    return fits


def chain_of(x_shape: Sequence[int], fu_shape: Sequence[int], fd_shape: Sequence[int], up: int, down: int,
             padding: Sequence[int]) -> Optional[Chain]:
    """The launch geometry of filtered_lrelu on an [N, C, H, W] input with filters of these shapes ([k] for a
    separable filter, [kh, kw]), or None when the upsampled signal is smaller than the down filter."""
    (kah, kaw), (kbh, kbw) = (int(fu_shape[0]), int(fu_shape[-1])), (int(fd_shape[0]), int(fd_shape[-1]))
    px0, px1, py0, py1 = padding
    mid = (x_shape[3] * up + px0 + px1 - kaw + 1, x_shape[2] * up + py0 + py1 - kah + 1)
    out = ((mid[0] - kbw) // down + 1, (mid[1] - kbh) // down + 1)
    if min(mid) <= 0 or mid[0] < kbw or mid[1] < kbh:
        return None
    return Chain((x_shape[3], x_shape[2]), up, (px0, py0), (kaw, kah), mid, down, (0, 0), (kbw, kbh), out)


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], b: Optional[torch.Tensor],
                   up: int, down: int, padding: tuple[int, int, int, int], gain: float, slope: float,
                   clamp: Optional[float], flip_filter: bool) -> Optional[torch.Tensor]:
    epi = _epilogue('lrelu', slope, gain, clamp)
    if epi is None or x.ndim != 4 or _needs_grad(fu) or _needs_grad(fd):
        return None
    if fu is None and fd is None and up == 1 and down == 1 and not any(padding):
        return bias_act(x, b, 1, 'lrelu', slope, gain, clamp)   # (StyleGAN3's ToRGB: no resampling at all)
    if (fu is not None and fu.ndim not in (1, 2)) or (fd is not None and fd.ndim not in (1, 2)):
        return None
    fa, fb = _float_filter(fu, x), _float_filter(fd, x)
    chain = chain_of(x.shape, fa.shape, fb.shape, up, down, padding)
    if chain is None or not _chain_fits(x, fa, fb, chain):
        return None
    # Upsampling taps carry up**2 (per axis `up` for a separable filter), as the reference's upfirdn2d gain.
    sa = Stage(not flip_filter, float(up) ** (2 if fa.ndim == 2 else 1))
    sb = Stage(not flip_filter, 1.0)
    return _FilteredLrelu.apply(x, None if b is None else b.to(x.dtype), fa, sa, fb, sb, chain, epi)


OPS: dict[str, Callable] = {'bias_act': bias_act, 'upfirdn2d': upfirdn2d, 'filtered_lrelu': filtered_lrelu}


# ---------------------------------------------------------------------------------------------------------
# Loading, with a self-test at first use

_self_test: Optional[Callable[[torch.device], Optional[str]]] = None
_state = 'new'   # -> 'testing' -> 'ready' | 'failed'


def set_self_test(check: Callable[[torch.device], Optional[str]]) -> None:
    """The check run right after loading: None when the kernels agree with the reference ops, else what
    disagreed (torch_utils/ops/__init__.py installs selftest.agree_with_reference; kept out of this module so
    that it does not import the reference ops that import it)."""
    global _self_test
    _self_test = check


def _warn(reason: str) -> None:
    # One line, whatever the underlying error printed: the run goes on with the reference ops.
    first = (reason.strip().splitlines() or [''])[0][:300]
    sys.stderr.write(f'stylegan3-clothing: CUDA ops unavailable, using the reference ops ({first})\n')


def load() -> Optional[str]:
    """Build, import and self-test the kernels once per process. None on success, else the reason
    (already reported in one warning line)."""
    global _module, _failure, _state
    if _state != 'new':
        return _failure
    try:
        if not torch.cuda.is_available():
            raise RuntimeError('no CUDA device')
        _module = cuda_build.build()
        if _self_test is None:
            raise RuntimeError('no self-test installed')
        _state = 'testing'   # get() hands out the kernels to the self-test
        # (first use may come inside no_grad/inference_mode: the test needs autograd)
        with torch.inference_mode(False), torch.enable_grad():
            _failure = _self_test(torch.device('cuda', torch.cuda.current_device()))
    except Exception as e:   # noqa: BLE001 - any build/import/test failure means "use the reference ops"
        _failure = f'{type(e).__name__}: {e}'
    _state = 'ready' if _failure is None else 'failed'
    if _failure is not None:
        _module = None
        _warn(_failure)
    return _failure


def get(op: str) -> Optional[Callable]:
    """The CUDA implementation of `op`, or None when the kernels cannot be used (reason warned once)."""
    if _state == 'new':
        load()
    return OPS[op] if _state in ('testing', 'ready') else None


def failure() -> Optional[str]:
    return _failure


def autotune_path() -> Optional[str]:
    """Where `auto` remembers its choices: beside the loaded build (None when there is no file)."""
    where = getattr(_module, '__file__', None)
    return os.path.join(os.path.dirname(where), 'autotune.json') if where else None
