"""StyleGAN2(-ADA) generator: mapping network + synthesis blocks from 4x4 up to the output resolution.

    z, c --MappingNetwork--> ws [N, num_ws, w_dim]
    b4:   learned const 4x4 -> conv1 -> torgb
    bRES: conv0 (2x up) -> conv1 -> torgb, image skip-connected and upsampled block to block ('skip'),
          or residual feature path ('resnet'), or plain ('orig').

Every conv is a modulated conv (style from an affine of w, weight demodulation), followed by per-pixel
noise, bias, leaky ReLU and clamping. The highest `num_fp16_res` resolutions run in float16 on CUDA.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from torch_utils.ops.bias_act import bias_act, default_gain
from torch_utils.ops.dispatch import fp16_enabled
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.upfirdn2d import setup_filter, upsample2d

from .persistence import records_init_kwargs
from .layers import Conv2dLayer, FullyConnectedLayer, MappedGenerator, StyleLayer, kernel_energy, scale_kernels
from .pyramid import resolution_pyramid


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: Optional[torch.Tensor] = None,
                     up: int = 1, down: int = 1, padding: int = 0, resample_filter: Optional[torch.Tensor] = None,
                     demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True) -> torch.Tensor:
    """Convolve each sample with `weight` scaled per input channel by its `styles` [N, I], then demodulated.

    fused: one grouped convolution with a per-sample weight tensor (cheapest for small batches).
    unfused: scale activations before and after a shared convolution (cheaper for training batches).
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Keep float16 activations in range: demodulation removes these scales again.
        weight = weight * (1 / np.sqrt(in_ch * kh * kw) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)

    # sum_{i,k} (w_oik s_i)^2 = sum_i s_i^2 sum_k w_oik^2: one [N, I] x [I, O] product instead of squaring and
    # summing the modulated [N, O, I, kh, kw] weights (at batch 64 on the unfused path, 64 copies of them). In
    # float64, which costs nothing at this size: a float32 product's rounding would show in the images.
    dcoefs = None
    if demodulate:
        sq = kernel_energy(weight)
        dcoefs = (styles.double().square() @ sq.t() + 1e-8).rsqrt().to(styles.dtype)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return _add_noise(x, noise)

    # Styles and demodulation scale whole [kh, kw] kernels: one [N, O, I] matrix, one pass over the weights.
    scale = styles.unsqueeze(1) if dcoefs is None else dcoefs.unsqueeze(2) * styles.unsqueeze(1)
    if n == 1:   # a plain conv; reshaping would restride a channels-last x and cost oneDNN a layout copy
        # (conv2d_resample upsamples with a transposed convolution of the unflipped weights)
        w = scale_kernels(weight, scale[0].expand(out_ch, in_ch), x, transposed=up > 1 and not flip_weight)
        return _add_noise(conv2d_resample(x, w, f=resample_filter, up=up, down=down, padding=padding,
                                          flip_weight=flip_weight), noise)
    w = weight.unsqueeze(0) * scale.unsqueeze(3).unsqueeze(4)   # [N, O, I, kh, kw]
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(-1, in_ch, kh, kw).to(x.dtype), f=resample_filter, up=up, down=down,
                        padding=padding, groups=n, flip_weight=flip_weight)
    return _add_noise(x.reshape(n, -1, *x.shape[2:]), noise)


def _add_noise(x: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
    """x + noise, into x: a convolution's fresh output (which the convolution's backward never reads)."""
    return x if noise is None else x.add_(noise.to(x.dtype))


def _style_and_weight(in_channels: int, out_channels: int, w_dim: int, kernel_size: int,
                      channels_last: bool) -> tuple[FullyConnectedLayer, nn.Parameter]:
    """The affine that maps w to per-input-channel styles (starting at 1), and the unit-scale conv weight."""
    affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=fmt)
    return affine, nn.Parameter(weight)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + noise + bias + leaky ReLU + clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = 'lrelu',
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None,
                 channels_last: bool = False):
        super().__init__()
        self.up, self.padding = up, kernel_size // 2
        self.register_buffer('resample_filter', setup_filter(list(resample_filter)))
        self.affine, self.weight = _style_and_weight(in_channels, out_channels, w_dim, kernel_size, channels_last)
        self.resolution, self.use_noise = resolution, use_noise   # one noise map, of the output's size
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.activation, self.act_gain, self.conv_clamp = activation, default_gain(activation), conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = 'random', fused_modconv: bool = True,
                gain: float = 1) -> torch.Tensor:
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f'noise_mode must be random, const or none, got {noise_mode!r}')
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode != 'none':
            pattern = self.noise_const if noise_mode == 'const' else \
                torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
            noise = pattern * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp,
                        inplace=True)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None, channels_last: bool = False):
        super().__init__()
        self.affine, self.weight = _style_and_weight(in_channels, out_channels, w_dim, kernel_size, channels_last)
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        # Without demodulation, the styles take the He scale of the weights instead.
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp, inplace=True)


class SynthesisBlock(nn.Module):
    """One resolution: (const | 2x-up conv0) -> conv1 -> torgb, consuming num_conv + num_torgb ws."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = 'skip', resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = 256, use_fp16: bool = False, fp16_channels_last: bool = False,
                 fused_modconv_default=True, **layer_kwargs):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f'unknown synthesis architecture {architecture!r}')
        super().__init__()
        first = in_channels == 0   # the 4x4 block starts from a learned constant instead of features
        self.in_channels, self.architecture, self.is_last = in_channels, architecture, is_last
        self.use_fp16, self.channels_last = use_fp16, use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', setup_filter(list(resample_filter)))
        conv = functools.partial(SynthesisLayer, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp,
                                 channels_last=self.channels_last, **layer_kwargs)

        if first:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = conv(in_channels, out_channels, up=2, resample_filter=resample_filter)
        self.conv1 = conv(out_channels, out_channels)
        self.num_conv = 1 if first else 2
        self.num_torgb = 1 if is_last or architecture == 'skip' else 0
        if self.num_torgb:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
        if architecture == 'resnet' and not first:
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                force_fp32: bool = False, fused_modconv=None, update_emas: bool = False, **layer_kwargs):
        w_iter = iter(ws.unbind(dim=1))
        fp16 = self.use_fp16 and not force_fp32 and fp16_enabled(ws.device)
        dtype = torch.float16 if fp16 else torch.float32
        # On the CPU, oneDNN runs convolutions and the FIR filters' per-channel convolutions on channels-last
        # tensors directly; contiguous (NCHW) ones cost a reorder per convolution and layout copies per filter.
        # (Not where tests run the GPU's float16 branches on the CPU: they keep the GPU's layouts too.)
        cpu = ws.device.type == 'cpu'
        onednn = cpu and not fp16_enabled(ws.device)
        fmt = torch.channels_last if (self.channels_last and fp16) or onednn else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == 'inference_only':
            fused_modconv = not self.training
        if fused_modconv and cpu and ws.shape[0] > 1:
            # Per-sample weights are N copies of each weight tensor; on a CPU, writing and reading them costs
            # more than the convolution (4.3 vs 9.9 img/s at 64x64, batch 64). Results differ only by rounding.
            fused_modconv = False

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]).contiguous(memory_format=fmt)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        else:
            x = x.to(dtype=dtype, memory_format=fmt)
            # resnet: the convs and a 1x1 shortcut, both scaled by sqrt(1/2) so that their sum keeps the variance.
            resnet = self.architecture == 'resnet'
            shortcut = self.skip(x, gain=np.sqrt(0.5)) if resnet else None
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5) if resnet else 1,
                           **layer_kwargs)
            if resnet:
                x = shortcut + x

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws -> image through blocks b4, b8, ..., b{img_resolution}."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 4, **block_kwargs):
        scales = resolution_pyramid(img_resolution, channel_base, channel_max, num_fp16_res)
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [scale.resolution for scale in scales]
        for below, scale in zip([None] + scales[:-1], scales):
            self.add_module(f'b{scale.resolution}', SynthesisBlock(
                below.channels if below else 0, scale.channels, w_dim=w_dim, resolution=scale.resolution,
                img_channels=img_channels, is_last=scale is scales[-1], use_fp16=scale.fp16, **block_kwargs))
        # Each conv takes a w of its own; a block's torgb shares the w of the next block's conv0, and the last
        # torgb, with no next block, takes one more.
        self.num_ws = sum(getattr(self, f'b{res}').num_conv for res in self.block_resolutions) + 1

    def forward(self, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f'expected ws of shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}')
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), **block_kwargs)
            w_idx += block.num_conv
        return img

    def style_layers(self) -> list[StyleLayer]:
        """Every modulated conv and ToRGB layer in forward order, with the ws row it reads: each conv reads a
        row of its own, a block's ToRGB the row of the next block's first conv."""
        out = []
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            convs = [name for name in ('conv0', 'conv1') if hasattr(block, name)]
            out += [StyleLayer(w_idx + i, f'b{res}.{name}', getattr(block, name), int(res), False)
                    for i, name in enumerate(convs)]
            if hasattr(block, 'torgb'):
                out.append(StyleLayer(w_idx + block.num_conv, f'b{res}.torgb', block.torgb, int(res), True))
            w_idx += block.num_conv
        return out


@records_init_kwargs
class Generator(MappedGenerator):
    """StyleGAN2 generator: G(z, c) = synthesis(mapping(z, c))."""

    family = 'stylegan2'

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, **synthesis_kwargs):
        synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                     **synthesis_kwargs)
        super().__init__(synthesis, z_dim=z_dim, c_dim=c_dim, mapping_kwargs=mapping_kwargs or {})
