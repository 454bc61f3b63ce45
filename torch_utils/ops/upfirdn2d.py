"""Upsample, pad, FIR-filter and downsample a batch of images (`upfirdn2d`).

Semantics (per channel, per axis; matching scipy.signal.upfirdn and NVIDIA's op):
  1. insert `up - 1` zeros after every sample,
  2. pad with zeros (negative padding crops),
  3. convolve with the filter `f` keeping only fully overlapping outputs,
  4. keep every `down`-th sample.

The reference implementation never materialises the zero-inserted image and never computes samples
that step 4 throws away: upsampling is a strided transposed convolution (polyphase filtering), and
downsampling a strided convolution. Separable (1-D) filters run as two 1-D passes.
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


def _filter_pass(x: torch.Tensor, k: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
                 pad: tuple[int, int, int, int]) -> torch.Tensor:
    """One upfirdn pass of a 2-D kernel `k` [kh, kw] (true convolution) over every channel of x."""
    n, c, h, w = x.shape
    kh, kw = k.shape
    (ux, uy), (dx, dy) = up, down
    px0, px1, py0, py1 = pad
    x = x.reshape(n * c, 1, h, w)
    k = k[None, None]
    if ux == 1 and uy == 1:
        x = F.pad(x, [px0, px1, py0, py1])
        x = F.conv2d(x, k.flip([2, 3]), stride=(dy, dx))
    else:
        # Transposed conv = zero insertion + full convolution, computing only the non-zero products.
        x = F.conv_transpose2d(x, k, stride=(uy, ux))
        x = F.pad(x, [px0 - kw + 1, ux + px1 - kw, py0 - kh + 1, uy + py1 - kh])
        if dx > 1 or dy > 1:
            x = x[:, :, ::dy, ::dx]
    return x.reshape(n, c, x.shape[2], x.shape[3])


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 1, down: IntPair = 1,
              padding: Union[int, Sequence[int]] = 0, flip_filter: bool = False, gain: float = 1,
              impl: Optional[str] = None) -> torch.Tensor:
    """Pad, upsample, filter and downsample `x` [N, C, H, W] with FIR filter `f` (see module doc).

    `f` is 1-D (separable), 2-D, or None (identity). `padding` is relative to the upsampled image.
    `flip_filter=True` correlates instead of convolving. `gain` scales the output.
    """
    kernel = dispatch.kernel_for('upfirdn2d', x, impl)
    if kernel is not None:
        return kernel(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)

    up, down = _pair(up), _pair(down)
    px0, px1, py0, py1 = parse_padding(padding)
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
