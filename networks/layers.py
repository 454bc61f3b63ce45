"""Building blocks shared by every network family: equalized-lr dense and conv layers, the mapping network.

Equalized learning rate: weights are stored at unit scale and multiplied by He's constant at run time,
so that Adam's per-parameter step sizes treat every layer alike. `lr_multiplier` further slows a layer
(the mapping network uses 0.01).

Module and parameter names follow NVIDIA's state-dict layout (`weight`, `bias`, `fc0`, `embed`,
`w_avg`, `resample_filter`), which is what lets official snapshots load into these classes.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from torch_utils import distributed
from torch_utils.ops.bias_act import bias_act, default_gain
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.upfirdn2d import setup_filter


@dataclass(frozen=True)
class StyleLayer:
    """One modulated layer of a synthesis network: the ws row it reads, its name inside the synthesis
    network, the module (whose `affine` maps w to its styles and whose `weight` it modulates), the
    resolution it works at, and whether it is a ToRGB layer."""
    w_index: int
    name: str
    module: nn.Module
    resolution: int
    is_torgb: bool


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def scale_kernels(w: torch.Tensor, scale: torch.Tensor, x: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """`w` [O, I, kh, kw] times `scale` [O, I] (kernel by kernel), in x's dtype, for a convolution of `x`.

    For a channels-last x and kernels bigger than 1x1, oneDNN would copy NCHW weights into channels-last
    first: without autograd the product is written in that layout directly, which spares the copy. With
    `transposed` (the weights feed conv_transpose2d as conv2d_resample's [I, O, kh, kw] view of them), the
    layout is the one that makes that view channels-last: [I, kh, kw, O] in memory. Else oneDNN gathers the
    view into it, a strided copy dearer than the product (StyleGAN2's upsampling layers: 10% of its time)."""
    scale = scale.unsqueeze(2).unsqueeze(3)
    if (w.shape[2] * w.shape[3] > 1 and x.is_contiguous(memory_format=torch.channels_last)
            and not (torch.is_grad_enabled() and (w.requires_grad or scale.requires_grad))):
        dtype = torch.result_type(w, scale)
        if transposed and w.is_contiguous():
            # The product in w's order, then one 2-D transpose ([O, I*kh*kw] -> [I*kh*kw, O]): 2.3x faster than
            # writing the product straight into the transposed order, whose writes stride across memory.
            o, i, kh, kw = w.shape
            out = torch.empty([i, kh, kw, o], dtype=dtype, device=w.device)
            out.view(i * kh * kw, o).copy_((w * scale).view(o, i * kh * kw).t())
            return out.permute(3, 0, 1, 2).to(x.dtype)
        if transposed:
            o, i, kh, kw = w.shape
            out = torch.empty([i, kh, kw, o], dtype=dtype, device=w.device).permute(3, 0, 1, 2)
        else:
            out = torch.empty(w.shape, dtype=dtype, device=w.device, memory_format=torch.channels_last)
        return torch.mul(w, scale, out=out).to(x.dtype)
    return (w * scale).to(x.dtype)


_energies: dict[int, tuple] = {}


def kernel_energy(w: torch.Tensor) -> torch.Tensor:
    """sum over each [kh, kw] kernel of w**2, as float64 [O, I] (demodulation's weight side).

    Without autograd (no_grad, inference mode), the sums of kernels bigger than 1x1 are kept per weight tensor
    (in w's dtype: 1/9 of a 3x3 weight's memory), keyed by its storage and version counter (any in-place change,
    an optimizer step or a loaded state dict, bumps it) and dropped with it, so that inference reads the weights
    once per layer (the modulated product) instead of three more times per call. 1x1 kernels need no sums: their
    squares, in float64, cost one pass and keep no second copy of the weights."""
    if torch.is_grad_enabled() or w.is_inference():   # (autograd may save it; inference tensors have no version)
        return w.square().sum(dim=[2, 3]).double()
    if w.shape[2] * w.shape[3] == 1:
        return w.reshape(w.shape[0], w.shape[1]).to(torch.float64, copy=True).square_()   # (never w's own memory)
    key = (w.data_ptr(), w._version, tuple(w.shape), w.dtype, w.device)
    hit = _energies.get(id(w))
    if hit is None or hit[0]() is not w or hit[1] != key:
        forget = lambda _, k=id(w): _energies.pop(k, None)   # noqa: E731  (runs when w is freed)
        hit = _energies[id(w)] = (weakref.ref(w, forget), key, w.square().sum(dim=[2, 3]))
    return hit[2].double()


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate, bias and activation."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = 'linear',
                 lr_multiplier: float = 1, weight_init: float = 1, bias_init=0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        if bias:
            init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features]) / lr_multiplier
            self.bias = nn.Parameter(torch.from_numpy(init.copy()))
        else:
            self.bias = None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation, inplace=True)

    def extra_repr(self) -> str:
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'


class Conv2dLayer(nn.Module):
    """Equalized-lr convolution with optional FIR up/downsampling, bias, activation and clamping."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = 'linear', up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None,
                 channels_last: bool = False, trainable: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = default_gain(activation)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=fmt)
        bias_t = torch.zeros([out_channels]) if bias else None
        if trainable:   # frozen layers (Freeze-D) keep their tensors as buffers so optimizers never see them
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_t) if bias_t is not None else None
        else:
            self.register_buffer('weight', weight)
            self.register_buffer('bias', bias_t)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                            flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp, inplace=True)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, '
                f'activation={self.activation}, up={self.up}, down={self.down}')


class MappingNetwork(nn.Module):
    """z (and class label c) -> w, broadcast to `num_ws` copies, with truncation towards the tracked mean w_avg.

    Serves StyleGAN2 (8 layers), StyleGAN3 (2 layers) and the discriminator's label embedding
    (`z_dim=0`, `num_ws=None`, no w_avg).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = 'lrelu', lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.998):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        embed_features = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f'fc{idx}', FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                         lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f'expected z of shape [N, {self.z_dim}], got {None if z is None else list(z.shape)}')
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f'expected c of shape [N, {self.c_dim}], got {None if c is None else list(c.shape)}')
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if update_emas and self.w_avg_beta is not None:
            batch_mean = distributed.mean_over_ranks(x.detach().mean(dim=0))
            self.w_avg.copy_(batch_mean.lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x

        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x

    def extra_repr(self) -> str:
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'


class MappedGenerator(nn.Module):
    """G(z, c) = synthesis(mapping(z, c)): the outer generator of both families, around their synthesis.
    Each family names itself in `family` ('stylegan2', 'stylegan3'); its synthesis network lists its
    modulated layers in `style_layers()`."""

    family = ''

    def __init__(self, synthesis: nn.Module, z_dim: int, c_dim: int, mapping_kwargs: dict):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = synthesis.w_dim
        self.img_resolution = synthesis.img_resolution
        self.img_channels = synthesis.img_channels
        self.synthesis = synthesis
        self.num_ws = synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=self.w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False, **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
