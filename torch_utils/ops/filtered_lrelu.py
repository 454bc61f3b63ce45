"""Filtered leaky ReLU: StyleGAN3's alias-free nonlinearity.

bias -> upsample by `up` with filter `fu` -> leaky ReLU, gain, clamp -> downsample by `down` with
filter `fd`. The nonlinearity runs at the temporarily raised sampling rate so that the frequencies
it creates above the output band are removed before decimation. The reference path is built from
`upfirdn2d` (polyphase, no zero insertion) and `bias_act`, so it is differentiable to any order.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

from . import dispatch
from .bias_act import bias_act
from .upfirdn2d import upfirdn2d


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                   padding: Union[int, Sequence[int]] = 0, gain: float = math.sqrt(2), slope: float = 0.2,
                   clamp: Optional[float] = None, flip_filter: bool = False, impl: Optional[str] = None) -> torch.Tensor:
    """Apply bias `b`, upsample (`fu`, `up`, `padding`), leaky ReLU with `slope`, `gain` and `clamp`,
    then downsample (`fd`, `down`). Output size per axis:
    (in * up + pad0 + pad1 - (len(fu) - 1) - (len(fd) - 1) + (down - 1)) // down.
    """
    kernel = dispatch.kernel_for('filtered_lrelu', x, impl)
    if kernel is not None:
        return kernel(x, fu, fd, b, up=up, down=down, padding=padding, gain=gain, slope=slope, clamp=clamp,
                      flip_filter=flip_filter)
    x = bias_act(x, b, impl='ref')
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2, flip_filter=flip_filter, impl='ref')
    x = bias_act(x, act='lrelu', alpha=slope, gain=gain, clamp=clamp, impl='ref')
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter, impl='ref')
