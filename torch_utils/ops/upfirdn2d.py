"""Upsample, pad, FIR-filter and downsample a batch of images (`upfirdn2d`).

Semantics (per channel, per axis; matching scipy.signal.upfirdn and NVIDIA's op):
  1. insert `up - 1` zeros after every sample,
  2. pad with zeros (negative padding crops),
  3. convolve with the filter `f` keeping only fully overlapping outputs,
  4. keep every `down`-th sample.

The reference implementation never materialises the zero-inserted image: upsampling is a strided
transposed convolution over just the input samples that reach the output (polyphase filtering), and
downsampling a strided convolution that computes only the kept samples (a call that does both still
filters at the upsampled rate before decimating). Separable (1-D) filters run as two 1-D passes. All
passes are per-channel (grouped) convolutions, in channels-last layout on CPU, where oneDNN's
depthwise kernels are an order of magnitude faster than single-channel convolutions.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import dispatch

IntPair = Union[int, Sequence[int]]


def _pair(v: IntPair) -> tuple[int, int]:
    """(x, y) from an int or a pair."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    vx, vy = v
    return int(vx), int(vy)


def parse_padding(padding: Union[int, Sequence[int]]) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1) from an int, an (x, y) pair or an (x0, x1, y0, y1) quadruple."""
    if isinstance(padding, (int, np.integer)):
        return (int(padding),) * 4
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    x0, x1, y0, y1 = padding
    return x0, x1, y0, y1


def filter_size(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """(width, height) of a 1-D (separable) or 2-D filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(f, device: Optional[torch.device] = None, normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """Turn a list/array of taps into the float32 filter tensor that `upfirdn2d` takes.

    A 1-D filter of 8 or more taps stays 1-D (applied separably); shorter ones become their 2-D outer
    product, as NVIDIA's networks store them (the [1,3,3,1] filters in the pickles are 4x4).
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f.reshape(1)
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device) if device is not None else f


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def upsample_window(n: int, up: int, k: int, pad0: int, pad1: int) -> Optional[tuple[int, int, int, int]]:
    """How to compute one axis of "zero-insert by `up`, pad, convolve with `k` taps" as a transposed convolution.

    Returns (i0, i1, crop0, crop1): transpose-convolve only input samples [i0, i1) (those whose filter
    footprint reaches the output), then crop `crop0`/`crop1` samples from the two ends of the result
    (negative: pad with zeros). None if no input sample reaches the output (it is all zeros).
    """
    n_out = n * up + pad0 + pad1 - k + 1
    first = k - 1 - pad0   # index of output 0 within the full transposed convolution of the whole input
    i0 = max(ceil_div(first - k + 1, up), 0)
    i1 = min((first + n_out - 1) // up + 1, n)
    if i1 <= i0 or n_out <= 0:
        return None
    crop0 = first - up * i0
    crop1 = up * (i1 - i0 - 1) + k - crop0 - n_out
    return i0, i1, crop0, crop1


def preferred_format(x: torch.Tensor) -> torch.memory_format:
    """oneDNN runs depthwise (per-channel) convolutions many times faster on channels-last tensors;
    cuDNN does not need it."""
    return torch.channels_last if x.device.type == 'cpu' and x.ndim == 4 else torch.contiguous_format


def depthwise_weight(k: torch.Tensor, channels: int) -> torch.Tensor:
    """[kh, kw] taps -> the [channels, 1, kh, kw] weight of a per-channel (groups=channels) convolution."""
    return k[None, None].expand(channels, 1, *k.shape).contiguous()


def transposed_pass(x: torch.Tensor, w: torch.Tensor, up: tuple[int, int], pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Zero-insert (ux, uy), pad and convolve each channel with depthwise weight `w` [C, 1, kh, kw], computing
    only products with input samples (polyphase): a grouped transposed convolution over the useful inputs."""
    ux, uy = up
    px0, px1, py0, py1 = pad
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    wx = upsample_window(wd, ux, kw, px0, px1)
    wy = upsample_window(h, uy, kh, py0, py1)
    if wx is None or wy is None:
        out_h, out_w = h * uy + py0 + py1 - kh + 1, wd * ux + px0 + px1 - kw + 1
        return x.new_zeros([n, c, max(out_h, 0), max(out_w, 0)])
    (ix0, ix1, cx0, cx1), (iy0, iy1, cy0, cy1) = wx, wy
    x = x[:, :, iy0:iy1, ix0:ix1]
    # Symmetric crops come free with the transposed convolution's own padding; the rest is cropped/padded after.
    cpx, cpy = max(min(cx0, cx1), 0), max(min(cy0, cy1), 0)
    x = F.conv_transpose2d(x, w, stride=(uy, ux), padding=(cpy, cpx), groups=c)
    rest = [cx0 - cpx, cx1 - cpx, cy0 - cpy, cy1 - cpy]
    if any(rest):
        x = F.pad(x, [-r for r in rest])
    return x


def _filter_pass(x: torch.Tensor, k: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
                 pad: tuple[int, int, int, int]) -> torch.Tensor:
    """One upfirdn pass of a 2-D kernel `k` [kh, kw] (true convolution) over every channel of x."""
    (ux, uy), (dx, dy) = up, down
    # Hand back the caller's layout: the convolutions that follow then sum in the same order as they
    # would without this op's layout change, which keeps whole networks' outputs bit-for-bit stable.
    fmt_in = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 \
        else torch.contiguous_format
    x = x.contiguous(memory_format=preferred_format(x))
    w = depthwise_weight(k, x.shape[1])
    if ux == 1 and uy == 1:
        px0, px1, py0, py1 = pad
        if px0 == px1 >= 0 and py0 == py1 >= 0:   # the convolution pads by itself, without a padded copy
            x = F.conv2d(x, w.flip([2, 3]), stride=(dy, dx), padding=(py0, px0), groups=x.shape[1])
        else:
            x = F.conv2d(F.pad(x, list(pad)), w.flip([2, 3]), stride=(dy, dx), groups=x.shape[1])
    else:
        x = transposed_pass(x, w, (ux, uy), pad)
        if dx > 1 or dy > 1:
            x = x[:, :, ::dy, ::dx]
    return x.contiguous(memory_format=fmt_in)


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 1, down: IntPair = 1,
              padding: Union[int, Sequence[int]] = 0, flip_filter: bool = False, gain: float = 1,
              impl: Optional[str] = None) -> torch.Tensor:
    """Pad, upsample, filter and downsample `x` [N, C, H, W] with FIR filter `f` (see module doc).

    `f` is 1-D (separable), 2-D, or None (identity). `padding` is relative to the upsampled image.
    `flip_filter=True` correlates instead of convolving. `gain` scales the output.
    """
    up, down = _pair(up), _pair(down)
    px0, px1, py0, py1 = parse_padding(padding)
    kernel = dispatch.kernel_for('upfirdn2d', x, impl)
    y = kernel(x, f, up=up, down=down, padding=(px0, px1, py0, py1), flip_filter=flip_filter, gain=gain) \
        if kernel is not None else None
    if y is not None:   # (None: a call the kernels do not cover)
        return y
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        return _filter_pass(x, f, up, down, (px0, px1, py0, py1))
    x = _filter_pass(x, f[None, :], (up[0], 1), (down[0], 1), (px0, px1, 0, 0))
    return _filter_pass(x, f[:, None], (1, up[1]), (1, down[1]), (0, 0, py0, py1))


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: Union[int, Sequence[int]] = 0,
             flip_filter: bool = False, gain: float = 1, impl: Optional[str] = None) -> torch.Tensor:
    """Filter keeping the image size (plus any extra `padding`, relative to the output)."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 2, padding: Union[int, Sequence[int]] = 0,
               flip_filter: bool = False, gain: float = 1, impl: Optional[str] = None) -> torch.Tensor:
    """Upsample by an integer factor so that the output is `up` times the input (plus `padding`)."""
    ux, uy = _pair(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [px0 + (fw + ux - 1) // 2, px1 + (fw - ux) // 2, py0 + (fh + uy - 1) // 2, py1 + (fh - uy) // 2]
    return upfirdn2d(x, f, up=(ux, uy), padding=pad, flip_filter=flip_filter, gain=gain * ux * uy, impl=impl)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: IntPair = 2, padding: Union[int, Sequence[int]] = 0,
                 flip_filter: bool = False, gain: float = 1, impl: Optional[str] = None) -> torch.Tensor:
    """Downsample by an integer factor so that the output is the input divided by `down` (plus `padding`)."""
    dx, dy = _pair(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [px0 + (fw - dx + 1) // 2, px1 + (fw - dx) // 2, py0 + (fh - dy + 1) // 2, py1 + (fh - dy) // 2]
    return upfirdn2d(x, f, down=(dx, dy), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


dispatch.register_reference('upfirdn2d', upfirdn2d)
