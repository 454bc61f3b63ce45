"""2-D convolution fused with FIR up/downsampling (StyleGAN2's resampling convolutions).

Meaning: `downsample_f(conv_w(upsample_f(pad(x))))` where padding is applied once, on the
upsampled input, and the FIR filter `f` low-passes around each resampling step. Implemented
without zero insertion or wasted outputs: upsampling runs as a strided transposed convolution
followed by the FIR filter; downsampling filters first (the two commute) and then runs a strided
convolution; 1x1 kernels resample on the cheaper side of the convolution.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .upfirdn2d import filter_size, parse_padding, upfirdn2d


def _transpose_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[O, I/g, kh, kw] conv weight -> the [I, O/g, kh, kw] layout conv_transpose2d expects."""
    o, i, kh, kw = w.shape
    w = w.reshape(groups, o // groups, i, kh, kw).transpose(1, 2)
    return w.reshape(groups * i, o // groups, kh, kw)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                    padding: Union[int, Sequence[int]] = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """Convolve x [N, I, H, W] with w [O, I/groups, kh, kw], optionally up/downsampling by integer factors.

    `padding` is relative to the upsampled image. `flip_weight=True` correlates (like F.conv2d),
    False convolves. `f` must come from `setup_filter`.
    """
    _, _, kh, kw = w.shape
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    # Keep the resampled image aligned with the input's pixel centres.
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pointwise = kh == 1 and kw == 1
    # The kernel F.conv2d must correlate with (not needed by the transposed convolution below).
    corr = w if flip_weight or pointwise or up > 1 else w.flip([2, 3])

    if up > 1:
        if pointwise:
            x = F.conv2d(x, corr, groups=groups)
            x = upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
        else:
            # conv_transpose2d convolves: it takes the kernel to convolve with, `corr` flipped (or w itself).
            conv = w.flip([2, 3]) if flip_weight else w
            x = F.conv_transpose2d(x, _transpose_weight(conv, groups), stride=up, groups=groups)
            pad = [px0 - kw + 1, px1 + up - kw, py0 - kh + 1, py1 + up - kh]
            x = upfirdn2d(x, f, padding=pad, gain=up ** 2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    if down > 1:
        if pointwise:
            x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
            return F.conv2d(x, corr, groups=groups)
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return F.conv2d(x, corr, stride=down, groups=groups)

    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return F.conv2d(x, corr, padding=(py0, px0), groups=groups)
    return F.conv2d(F.pad(x, [px0, px1, py0, py1]), corr, groups=groups)
