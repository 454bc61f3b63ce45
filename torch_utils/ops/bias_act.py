"""Fused bias + activation + gain + clamp.

`y = clamp(act(x + b) * gain, -clamp, +clamp)`, with the bias broadcast along `dim`. Each activation
carries the gain that keeps unit variance for unit-variance input (sqrt(2) for the ReLU family), which
the networks apply by default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import dispatch


@dataclass(frozen=True)
class Activation:
    fn: Callable[[torch.Tensor, float], torch.Tensor]   # (x, alpha) -> y
    default_alpha: float
    default_gain: float


ACTIVATIONS: dict[str, Activation] = {
    'linear':   Activation(lambda x, a: x, 0.0, 1.0),
    'relu':     Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    'lrelu':    Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    'tanh':     Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    'sigmoid':  Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    'elu':      Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    'selu':     Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    'softplus': Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    'swish':    Activation(lambda x, a: x * torch.sigmoid(x), 0.0, math.sqrt(2)),
}


def default_gain(act: str) -> float:
    return ACTIVATIONS[act].default_gain


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = 'linear',
             alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None,
             impl: Optional[str] = None, inplace: bool = False) -> torch.Tensor:
    """Add bias `b` along `dim`, apply `act`, scale by `gain` (default: the activation's) and clamp.

    `inplace=True`: the caller owns `x` (a temporary) and lets it be overwritten with the result where that
    saves a pass (the reference inference path for linear, relu and lrelu); otherwise `x` is never written."""
    spec = ACTIVATIONS[act]
    alpha = spec.default_alpha if alpha is None else float(alpha)
    gain = spec.default_gain if gain is None else float(gain)
    if clamp is not None and clamp < 0:
        clamp = None
    kernel = dispatch.kernel_for('bias_act', x, impl)
    y = kernel(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp) if kernel is not None else None
    if y is not None:   # (None: a call the kernels do not cover)
        return y

    shape = [1] * x.ndim
    shape[dim] = -1
    grad = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    if act in _INPLACE_ACTS and not grad:
        return _inplace(x, b if b is None else b.reshape(shape), act, alpha, gain, clamp, inplace)
    if b is not None:
        x = x + b.reshape(shape)
    x = spec.fn(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


_INPLACE_ACTS = ('linear', 'relu', 'lrelu')


def _inplace(x: torch.Tensor, b: Optional[torch.Tensor], act: str, alpha: float, gain: float,
             clamp: Optional[float], overwrite: bool) -> torch.Tensor:
    """Inference path: at most one allocation (none when the caller lets `x` be overwritten), then in-place
    passes in the same order as the autograd path (so results are bit-identical, which keeps networks'
    outputs identical too)."""
    if overwrite:
        y = x.add_(b) if b is not None else x
    else:
        y = x + b if b is not None else x.clone()
    if act == 'relu':
        y.relu_()
    elif act == 'lrelu':
        F.leaky_relu_(y, alpha)
    if gain != 1:
        y.mul_(gain)
    if clamp is not None:
        y.clamp_(-clamp, clamp)
    return y


dispatch.register_reference('bias_act', bias_act)
