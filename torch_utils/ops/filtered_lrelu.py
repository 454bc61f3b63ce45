"""Filtered leaky ReLU: StyleGAN3's alias-free nonlinearity.

bias -> upsample by `up` with filter `fu` -> leaky ReLU, gain, clamp -> downsample by `down` with
filter `fd`. The nonlinearity runs at the temporarily raised sampling rate so that the frequencies
it creates above the output band are removed before decimation.

The reference path is plain PyTorch, so it runs anywhere and is differentiable to any order. It is
arranged for speed on CPUs, where it is what designers without a GPU run:
- upsampling is a per-channel transposed convolution over the input samples that reach the output
  (polyphase: no multiplications by inserted zeros), one 1-D pass per axis for separable filters;
- downsampling is a strided per-channel convolution (only the kept samples are computed);
- `gain` is folded into the upsampling taps (leaky ReLU is positively homogeneous) and the clamp is
  moved in front of the activation, so the full-rate tensor sees two in-place passes and no copies;
- without autograd, channels are processed in chunks whose full-rate intermediates stay in cache,
  in channels-last layout (oneDNN's fast depthwise kernels). Chunks also keep allocations small
  enough for the allocator to reuse, instead of page-faulting fresh memory on every layer.
Filters the fast path does not cover (2-D upsampling filters) use the composition of `upfirdn2d`
and `bias_act`, which defines the op.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from . import cpu_workers, dispatch
from .bias_act import bias_act
from .upfirdn2d import parse_padding, preferred_format, transposed_pass, upfirdn2d, upsample_window

# Bytes of full-rate intermediate per chunk: a few chunks' worth fits in a laptop's last-level cache.
CHUNK_BYTES = 8 << 20
# Channels-last vectorises over channels; keep chunks a multiple of one AVX-512 register of floats.
CHUNK_ALIGN = 16


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                   padding: Union[int, Sequence[int]] = 0, gain: float = math.sqrt(2), slope: float = 0.2,
                   clamp: Optional[float] = None, flip_filter: bool = False, impl: Optional[str] = None) -> torch.Tensor:
    """Apply bias `b`, upsample (`fu`, `up`, `padding`), leaky ReLU with `slope`, `gain` and `clamp`,
    then downsample (`fd`, `down`). Output size per axis:
    (in * up + pad0 + pad1 - (len(fu) - 1) - (len(fd) - 1) + (down - 1)) // down.
    """
    padding = parse_padding(padding)
    if clamp is not None and clamp < 0:
        clamp = None
    kernel = dispatch.kernel_for('filtered_lrelu', x, impl)
    y = kernel(x, fu, fd, b, up=int(up), down=int(down), padding=padding, gain=float(gain), slope=float(slope),
               clamp=clamp, flip_filter=flip_filter) if kernel is not None else None
    if y is not None:   # (None: a call the kernels do not cover)
        return y
    if fu is None and fd is None and up == 1 and down == 1 and not any(padding):
        # (StyleGAN3's ToRGB: hand back the usual layout, whatever layout the convolution produced)
        return bias_act(x, b, act='lrelu', alpha=slope, gain=gain, clamp=clamp, impl='ref').contiguous()
    if x.ndim == 4 and (fu is None or fu.ndim == 1) and (fd is None or fd.ndim in (1, 2)) and gain > 0 and slope >= 0:
        return _separable_up(x, fu, fd, b, int(up), int(down), padding, float(gain), float(slope), clamp, flip_filter)
    return _composed(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)


def _composed(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter) -> torch.Tensor:
    """The definition, op by op."""
    x = bias_act(x, b, impl='ref')
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2, flip_filter=flip_filter, impl='ref')
    x = bias_act(x, act='lrelu', alpha=slope, gain=gain, clamp=clamp, impl='ref')
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter, impl='ref')


def _depthwise_weights(fu: torch.Tensor, fd: torch.Tensor, channels: int) -> tuple[torch.Tensor, ...]:
    """Grouped-conv weights for `channels` channels: the 1-D upsampling taps along x and along y, then the
    downsampling taps (one 2-D kernel, or 1-D along x and along y)."""
    ku, kd = fu.shape[0], fd.shape[-1]
    wu_x = fu.reshape(1, 1, 1, ku).expand(channels, 1, 1, ku).contiguous()
    wu_y = fu.reshape(1, 1, ku, 1).expand(channels, 1, ku, 1).contiguous()
    if fd.ndim == 2:
        return wu_x, wu_y, fd.reshape(1, 1, kd, kd).expand(channels, 1, kd, kd).contiguous()
    return (wu_x, wu_y, fd.reshape(1, 1, 1, kd).expand(channels, 1, 1, kd).contiguous(),
            fd.reshape(1, 1, kd, 1).expand(channels, 1, kd, 1).contiguous())


def _separable_up(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], b: Optional[torch.Tensor],
                  up: int, down: int, padding: tuple[int, int, int, int], gain: float, slope: float,
                  clamp: Optional[float], flip_filter: bool) -> torch.Tensor:
    """filtered_lrelu for a separable (1-D) upsampling filter and a 1-D or 2-D downsampling filter."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    dtype = x.dtype
    fu = x.new_ones([1]) if fu is None else fu.to(dtype)
    fd = x.new_ones([1]) if fd is None else fd.to(dtype)
    ku, kd = fu.shape[0], fd.shape[-1]
    # Upsampling taps carry up**2 (zero insertion) and `gain`: lrelu(g * v) = g * lrelu(v) for g > 0.
    fu = fu * (up * math.sqrt(gain))
    if not flip_filter:   # conv_transpose2d convolves; conv2d correlates
        fd = fd.flip(list(range(fd.ndim)))
    else:
        fu = fu.flip(0)
    # clamp(lrelu(v), -c, c) == lrelu(clamp(v, -c / slope, c)) for slope > 0 (and v's sign is kept).
    lo = None if clamp is None or slope == 0 else -clamp / slope
    hi = clamp

    tmp_h, tmp_w = h * up + py0 + py1 - ku + 1, w * up + px0 + px1 - ku + 1
    out_h, out_w = (tmp_h - kd) // down + 1, (tmp_w - kd) // down + 1
    wx = upsample_window(w, up, ku, px0, px1)
    wy = upsample_window(h, up, ku, py0, py1)
    if wx is None or wy is None or out_h <= 0 or out_w <= 0:
        # No input sample reaches the output: it is lrelu of zeros, i.e. zeros.
        return x.new_zeros([n, c, max(out_h, 0), max(out_w, 0)])

    fmt = preferred_format(x)
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, b, fu, fd))
    per_channel = tmp_h * tmp_w * n * x.element_size()
    if grad or x.device.type != 'cpu':
        chunk = c   # autograd keeps every intermediate anyway; GPUs want big launches
    else:
        chunk = cpu_workers.chunk_size(c, CHUNK_BYTES // per_channel, CHUNK_ALIGN)

    (ix0, ix1, _, _), (iy0, iy1, _, _) = wx, wy
    # Dropped samples become zero padding, which keeps every kept sample where it was.
    window_pad = [px0 + up * ix0, px1 + up * (w - ix1), py0 + up * iy0, py1 + up * (h - iy1)]
    x = x[:, :, iy0:iy1, ix0:ix1]   # samples whose footprint misses the output are never touched
    if b is not None:
        b = b.to(dtype).reshape(1, -1, 1, 1)

    # Each upsampled value sums one polyphase component of the taps per axis, which bounds it by
    # max_phase(sum |taps|)^2 * max|input| (slack for rounding): when that bound lies inside the clamp
    # range, the clamp (a full-rate pass) cannot change anything and is skipped. Exact either way. Only on
    # the CPU, where the pass is dear: the bound is read on the host, a synchronisation a GPU (and a CUDA
    # graph capturing it) must not have.
    skip_check = hi is not None and not grad and x.device.type == 'cpu'
    phase_gain = max(float(fu[r::up].abs().sum()) for r in range(up)) ** 2 * (1 + 1e-4) if skip_check else 0.0

    full_w = _depthwise_weights(fu, fd, chunk)
    out = None if grad else torch.empty([n, c, out_h, out_w], dtype=dtype, device=x.device, memory_format=fmt)

    def run(c0: int) -> Optional[torch.Tensor]:
        c1 = min(c0 + chunk, c)
        ws = full_w if c1 - c0 == chunk else _depthwise_weights(fu, fd, c1 - c0)
        y = x[:, c0:c1]
        if grad:
            y = (y + b[:, c0:c1] if b is not None else y).contiguous(memory_format=fmt)
        else:   # bias and layout change in one pass
            dst = torch.empty(y.shape, dtype=dtype, device=y.device, memory_format=fmt)
            y = torch.add(y, b[:, c0:c1], out=dst) if b is not None else dst.copy_(y)
        clamp_lo, clamp_hi = lo, hi
        if skip_check:
            y_min, y_max = torch.aminmax(_flat(y))
            bound = max(float(y_max), -float(y_min)) * phase_gain
            if bound <= hi and (lo is None or -bound >= lo):
                clamp_lo = clamp_hi = None
        y = transposed_pass(y, ws[1], (1, up), (0, 0, window_pad[2], window_pad[3]))
        y = transposed_pass(y, ws[0], (up, 1), (window_pad[0], window_pad[1], 0, 0))
        if grad:
            if clamp_hi is not None:
                y = y.clamp(clamp_lo, clamp_hi)
            y = F.leaky_relu(y, slope)
        else:
            if clamp_hi is not None:
                y.clamp_(clamp_lo, clamp_hi)
            F.leaky_relu_(y, slope)
        if len(ws) == 3:
            y = F.conv2d(y, ws[2], stride=down, groups=c1 - c0)
        else:   # horizontal first: the vertical pass then runs on half as many rows
            y = F.conv2d(y, ws[2], stride=(1, down), groups=c1 - c0)
            y = F.conv2d(y, ws[3], stride=(down, 1), groups=c1 - c0)
        if out is None:
            return y
        out[:, c0:c1] = y
        return None

    if out is None:
        return run(0)   # a single chunk
    cpu_workers.map_chunks(run, range(0, c, chunk))
    return out


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor's elements as a 1-D view, in memory order (reductions on it need no layout copy)."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1)
    return t.reshape(-1)


dispatch.register_reference('filtered_lrelu', filtered_lrelu)
