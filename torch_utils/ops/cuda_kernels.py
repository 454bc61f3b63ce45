"""The CUDA implementations of bias_act, upfirdn2d and filtered_lrelu, as autograd Functions.

Every backward pass is written in terms of the same Functions (never as a bare kernel call), so the
gradient graph is itself differentiable: R1 and path-length regularisation differentiate through it.
- upfirdn2d's gradient is an upfirdn2d of the output gradient with the taps flipped and the up/down
  factors swapped (the adjoint of zero-insert -> pad -> correlate -> decimate);
- bias_act with the linear / (leaky) ReLU activations has a piecewise-constant derivative that can be
  read from the output alone (its sign and whether it hit the clamp), so backward keeps the output and
  multiplies by that derivative in one elementwise kernel; that kernel is linear in its input and is its
  own derivative;
- filtered_lrelu = [bias + upsample + leaky ReLU + gain + clamp] in one upfirdn2d launch (the fused
  middle step) followed by a plain upfirdn2d downsampling.

Where this loses speed against NVIDIA's fused filtered_lrelu kernel: the full-rate (upsampled) tensor is
written to memory and kept for backward in the activation dtype (NVIDIA keeps 2 bits of sign per
sample), 1-D upsampling filters run as their 2-D outer product, and no kernel tiles its input in shared
memory. Each op is one thread per output sample with float32 accumulation.

Calls the kernels do not cover (other activations, negative gains or slopes, filters that need gradients,
non-4-D images) return None, and the reference op runs instead.
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Callable, Optional, Sequence

import torch

from . import cuda_build

ACT_LINEAR, ACT_LRELU = 0, 1   # the codes of sg3c_ops.h's Activation
_NO_CLAMP = -1.0

_module: Optional[ModuleType] = None
_failure: Optional[str] = None


def _ext() -> ModuleType:
    assert _module is not None, 'CUDA ops used before load()'
    return _module


# ---------------------------------------------------------------------------------------------------------
# Geometry

def _resample_args(up: tuple[int, int], down: tuple[int, int], pad: tuple[int, int, int, int]) -> tuple[int, ...]:
    return (up[0], up[1], down[0], down[1]) + tuple(pad)


def _adjoint_axis(n_in: int, n_out: int, up: int, down: int, pad0: int, taps: int) -> tuple[int, int, int, int]:
    """(up, down, pad0, pad1) of the upfirdn that maps an output gradient back onto the input samples.

    Transposing zero-insert(up) -> pad(pad0) -> correlate(taps) -> keep-every(down) gives
    zero-insert(down) -> pad(taps - 1 - pad0) -> correlate(flipped taps) -> keep-every(up), with the end
    padding chosen so that exactly n_in samples come out."""
    return down, up, taps - 1 - pad0, n_in * up - n_out * down + pad0 - up + 1


def _adjoint(x_shape: Sequence[int], y_shape: Sequence[int], taps: torch.Tensor, up, down, pad):
    ux, dx, px0, px1 = _adjoint_axis(x_shape[3], y_shape[3], up[0], down[0], pad[0], taps.shape[1])
    uy, dy, py0, py1 = _adjoint_axis(x_shape[2], y_shape[2], up[1], down[1], pad[2], taps.shape[0])
    return (ux, uy), (dx, dy), (px0, px1, py0, py1)


# ---------------------------------------------------------------------------------------------------------
# Autograd Functions

class _BiasActGrad(torch.autograd.Function):
    """dx = dy * (derivative of the activation epilogue, read from the forward output y)."""

    @staticmethod
    def forward(ctx, dy: torch.Tensor, y: torch.Tensor, epi: tuple) -> torch.Tensor:
        ctx.save_for_backward(y)
        ctx.epi = epi
        return _ext().bias_act_grad(dy, y, *epi)

    @staticmethod
    def backward(ctx, ddx: torch.Tensor):
        y, = ctx.saved_tensors
        # Linear in dy; the derivative is piecewise constant in y, so y receives no gradient.
        return _BiasActGrad.apply(ddx, y, ctx.epi), None, None


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, b: Optional[torch.Tensor], dim: int, epi: tuple) -> torch.Tensor:
        y = _ext().bias_act(x, b, dim, *epi)
        ctx.save_for_backward(y)
        ctx.dim, ctx.epi = dim, epi
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        y, = ctx.saved_tensors
        dx = _BiasActGrad.apply(dy, y, ctx.epi)
        db = None
        if ctx.needs_input_grad[1]:
            db = dx.sum([d for d in range(dx.ndim) if d != ctx.dim])
        return dx, db, None, None


class _UpFirDn(torch.autograd.Function):
    """Plain upfirdn2d with correlation taps (float32, [kh, kw]); no bias, no activation."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, taps: torch.Tensor, up, down, pad) -> torch.Tensor:
        y = _ext().upfirdn2d(x, taps, None, *_resample_args(up, down, pad), ACT_LINEAR, 0.0, 1.0, _NO_CLAMP)
        ctx.save_for_backward(taps)
        ctx.geometry = (x.shape, y.shape, up, down, pad)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        taps, = ctx.saved_tensors
        x_shape, y_shape, up, down, pad = ctx.geometry
        flipped = taps.flip([0, 1])
        dx = _UpFirDn.apply(dy, flipped, *_adjoint(x_shape, y_shape, taps, up, down, pad))
        return dx, None, None, None, None


class _UpsampleAct(torch.autograd.Function):
    """filtered_lrelu's fused middle step: bias, upsample (pad, correlate), leaky ReLU, gain, clamp."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, b: Optional[torch.Tensor], taps: torch.Tensor, up, pad, epi) -> torch.Tensor:
        y = _ext().upfirdn2d(x, taps, b, *_resample_args(up, (1, 1), pad), *epi)
        ctx.save_for_backward(taps, y)
        ctx.geometry = (x.shape, up, pad)
        ctx.epi = epi
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        taps, y = ctx.saved_tensors
        x_shape, up, pad = ctx.geometry
        g = _BiasActGrad.apply(dy, y, ctx.epi)
        dx = _UpFirDn.apply(g, taps.flip([0, 1]), *_adjoint(x_shape, y.shape, taps, up, (1, 1), pad))
        db = dx.sum([0, 2, 3]) if ctx.needs_input_grad[1] else None
        return dx, db, None, None, None, None


# ---------------------------------------------------------------------------------------------------------
# The ops. The reference ops (bias_act.py, upfirdn2d.py, filtered_lrelu.py) call these with their arguments
# already parsed; None means "not covered here" and the reference op goes on.

def _needs_grad(t: Optional[torch.Tensor]) -> bool:
    return t is not None and t.requires_grad


def _epilogue(act: str, alpha: float, gain: float, clamp: Optional[float]) -> Optional[tuple]:
    """Kernel epilogue arguments, or None when the kernels do not cover this activation."""
    if gain <= 0 or (clamp is not None and clamp < 0):
        return None
    clamp = _NO_CLAMP if clamp is None else float(clamp)
    if act == 'linear':
        return ACT_LINEAR, 0.0, float(gain), clamp
    if act in ('relu', 'lrelu'):
        slope = 0.0 if act == 'relu' else float(alpha)
        return (ACT_LRELU, slope, float(gain), clamp) if slope >= 0 else None
    return None


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
             clamp: Optional[float]) -> Optional[torch.Tensor]:
    epi = _epilogue(act, alpha, gain, clamp)
    if epi is None or x.ndim == 0:
        return None
    return _BiasAct.apply(x, None if b is None else b.to(x.dtype), dim % x.ndim, epi)


def _correlation_taps(f: torch.Tensor, flip_filter: bool, scale: float, device: torch.device) -> torch.Tensor:
    """The reference ops convolve with `f` (correlate when flip_filter); the kernels always correlate."""
    f = f.to(device=device, dtype=torch.float32) * scale
    return (f if flip_filter else f.flip(list(range(f.ndim)))).contiguous()


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: tuple[int, int], down: tuple[int, int],
              padding: tuple[int, int, int, int], flip_filter: bool, gain: float) -> Optional[torch.Tensor]:
    if x.ndim != 4 or _needs_grad(f):
        return None
    if f is None:
        f = torch.ones([1, 1])
    px0, px1, py0, py1 = padding
    taps = _correlation_taps(f, flip_filter, gain ** (f.ndim / 2), x.device)
    if taps.ndim == 2:
        return _UpFirDn.apply(x, taps, up, down, padding)
    x = _UpFirDn.apply(x, taps[None, :], (up[0], 1), (down[0], 1), (px0, px1, 0, 0))
    return _UpFirDn.apply(x, taps[:, None].contiguous(), (1, up[1]), (1, down[1]), (0, 0, py0, py1))


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], b: Optional[torch.Tensor],
                   up: int, down: int, padding: tuple[int, int, int, int], gain: float, slope: float,
                   clamp: Optional[float], flip_filter: bool) -> Optional[torch.Tensor]:
    epi = _epilogue('lrelu', slope, gain, clamp)
    if epi is None or x.ndim != 4 or _needs_grad(fu) or _needs_grad(fd):
        return None
    if fu is None:
        fu = torch.ones([1, 1])
    if fu.ndim == 1:
        fu = torch.outer(fu, fu)   # one fused launch needs the 2-D taps
    taps = _correlation_taps(fu, flip_filter, float(up) ** 2, x.device)
    y = _UpsampleAct.apply(x, None if b is None else b.to(x.dtype), taps, (up, up), padding, epi)
    return upfirdn2d(y, fd, (1, 1), (down, down), (0, 0, 0, 0), flip_filter, 1.0)


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
