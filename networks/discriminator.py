"""Residual discriminator shared by StyleGAN2 and StyleGAN3.

    img -> b{res}: fromrgb (first block) -> conv0 -> conv1 (2x down), residual 1x1 skip, down to 8x8
        -> b4 epilogue: minibatch stddev -> conv -> fc -> out
    conditional: out is projected onto an embedding of the label c (cmap), scaled by 1/sqrt(cmap_dim).
"""
from __future__ import annotations

import itertools
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from torch_utils.ops.dispatch import fp16_enabled
from torch_utils.ops.upfirdn2d import downsample2d, setup_filter

from .persistence import records_init_kwargs
from .layers import Conv2dLayer, FullyConnectedLayer, MappingNetwork
from .pyramid import resolution_pyramid


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convs, the second downsampling 2x; layers with index < freeze_layers are frozen (Freeze-D)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 first_layer_idx: int, architecture: str = 'resnet', activation: str = 'lrelu',
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, freeze_layers: int = 0):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f'unknown discriminator architecture {architecture!r}')
        super().__init__()
        self.in_channels, self.architecture = in_channels, architecture
        self.use_fp16, self.channels_last = use_fp16, use_fp16 and fp16_channels_last
        self.register_buffer('resample_filter', setup_filter(list(resample_filter)))
        # Freeze-D numbers the layers of all blocks from the image on; this block's start at first_layer_idx.
        index = itertools.count(first_layer_idx)

        def layer(in_ch: int, out_ch: int, kernel_size: int, **kwargs) -> Conv2dLayer:
            return Conv2dLayer(in_ch, out_ch, kernel_size, trainable=next(index) >= freeze_layers,
                               channels_last=self.channels_last, **kwargs)

        act = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = layer(img_channels, tmp_channels, 1, **act)
        self.conv0 = layer(tmp_channels, tmp_channels, 3, **act)
        self.conv1 = layer(tmp_channels, out_channels, 3, down=2, resample_filter=resample_filter, **act)
        if architecture == 'resnet':
            self.skip = layer(tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter)
        self.num_layers = next(index) - first_layer_idx

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], force_fp32: bool = False):
        device = (x if x is not None else img).device
        fp16 = self.use_fp16 and not force_fp32 and fp16_enabled(device)
        dtype = torch.float16 if fp16 else torch.float32
        fmt = torch.channels_last if self.channels_last and fp16 else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=fmt)
        if self.in_channels == 0 or self.architecture == 'skip':
            img = img.to(dtype=dtype, memory_format=fmt)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None
        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv1(self.conv0(x), gain=np.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(nn.Module):
    """Appends the average standard deviation over groups of `group_size` samples as extra channels.

    With `by_class`, each sample's group is instead every sample of the batch with the same label. Groups
    that mix classes show a conditional G's per-class mode collapse (one garment per class) as plenty of
    variety, so D cannot see it; within a class it shows as a standard deviation near zero."""

    def __init__(self, group_size: Optional[int], num_channels: int = 1, by_class: bool = False):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels
        self.by_class = by_class

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.by_class and c is not None and c.shape[1] > 0:
            return torch.cat([x, self._std_within_class(x, c)], dim=1)
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)               # group members along dim 0
        y = (y - y.mean(dim=0)).square().mean(dim=0)        # variance within each group
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])           # [n/g, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)

    def _std_within_class(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = x.shape
        f = self.num_channels
        same = (c[:, None, :] == c[None, :, :]).all(dim=-1).to(x.dtype)    # [n, n]: j has i's label
        weight = same / same.sum(dim=1, keepdim=True)
        y = x.reshape(n, f, -1)                                              # [n, F, ch/F*h*w]
        mean = torch.einsum('ij,jfd->ifd', weight, y)
        var = torch.einsum('ij,ijfd->ifd', weight, (y[None] - mean[:, None]).square())
        y = (var + 1e-8).sqrt().mean(dim=2)                                  # [n, F]; a lone label gives 1e-4
        return y.reshape(n, f, 1, 1).expand(n, f, h, w)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch stddev, conv, fc, output (or label projection)."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = 'resnet', mbstd_group_size: Optional[int] = 4, mbstd_num_channels: int = 1,
                 mbstd_by_class: bool = False, activation: str = 'lrelu', conv_clamp: Optional[float] = None):
        super().__init__()
        self.architecture, self.cmap_dim = architecture, cmap_dim
        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels, by_class=mbstd_by_class) \
            if mbstd_num_channels > 0 else None
        # The stddev channels join the features; then the whole 4x4 map goes through one dense layer.
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, cmap_dim or 1)   # a score, or an embedding to project c onto

    def forward(self, x: torch.Tensor, img: Optional[torch.Tensor], cmap: Optional[torch.Tensor],
                c: Optional[torch.Tensor] = None, force_fp32: bool = False) -> torch.Tensor:
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x, c)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


@records_init_kwargs
class Discriminator(nn.Module):
    """D(img, c) -> logits [N, 1]."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = 'resnet',
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 4,
                 conv_clamp: Optional[float] = 256, cmap_dim: Optional[int] = None,
                 block_kwargs: Optional[dict] = None, mapping_kwargs: Optional[dict] = None,
                 epilogue_kwargs: Optional[dict] = None):
        coarse_to_fine = resolution_pyramid(img_resolution, channel_base, channel_max, num_fp16_res)
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        head = coarse_to_fine[0]   # the 4x4 epilogue
        if c_dim == 0:
            cmap_dim = 0
        elif cmap_dim is None:
            cmap_dim = head.channels
        shared = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)

        # From the image down to 8x8, each block halving the resolution into the next one's channels.
        self.block_resolutions = []
        first_layer_idx = 0
        for below, scale in reversed(list(zip(coarse_to_fine, coarse_to_fine[1:]))):
            block = DiscriminatorBlock(0 if scale is coarse_to_fine[-1] else scale.channels, scale.channels,
                                       below.channels, resolution=scale.resolution, first_layer_idx=first_layer_idx,
                                       use_fp16=scale.fp16, **(block_kwargs or {}), **shared)
            self.add_module(f'b{scale.resolution}', block)
            self.block_resolutions.append(scale.resolution)
            first_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(head.channels, cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}),
                                        **shared)

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor], update_emas: bool = False,
                **block_kwargs) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap, c)
