"""Small TorchScript stand-ins for NVIDIA's detectors, with the same call interface.

They exist for the tests and for timing the metric pipeline where the real files cannot be fetched.
Numbers computed with them are NOT comparable to published FIDs; files are written under the official
names only into directories the caller chooses (never the detector cache).

The Inception stand-in's features are the block averages of the pixels on a `grid` x `grid` layout
(3 * grid^2 values in [0, 255]), optionally mapped through a fixed random projection and tanh to
`feature_dim` values; `no_output_bias=True` calls return a softmax over `num_classes` fixed random
logits of those features. The VGG16 stand-in returns the same pooled features for `return_features`,
and for `return_lpips` the image itself scaled by 1/255, so that the "LPIPS distance" of two images is
their squared pixel distance / 255^2.
"""
from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F


class StandInInception(torch.nn.Module):
    def __init__(self, grid: int = 4, feature_dim: int = 0, num_classes: int = 1008, resize: int = 0, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        pooled = 3 * grid * grid
        self.grid = grid
        self.resize = resize
        self.project = feature_dim > 0
        width = feature_dim if self.project else pooled
        self.register_buffer('projection', torch.randn([pooled, max(feature_dim, 1)], generator=gen) / pooled ** 0.5)
        self.register_buffer('out_weight', torch.randn([width, num_classes], generator=gen) / width ** 0.5)
        self.register_buffer('out_bias', torch.randn([num_classes], generator=gen))

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = img.to(torch.float32)
        if self.resize > 0:
            x = F.interpolate(x, size=[self.resize, self.resize], mode='bilinear', align_corners=False)
        features = F.adaptive_avg_pool2d(x, [self.grid, self.grid]).flatten(1)
        if self.project:
            features = torch.tanh((features / 127.5 - 1) @ self.projection)
        if return_features:
            return features
        logits = (features / 255.0 if not self.project else features) @ self.out_weight
        if not no_output_bias:
            logits = logits + self.out_bias
        return torch.softmax(logits, dim=1)


class StandInVGG16(torch.nn.Module):
    def __init__(self, grid: int = 4):
        super().__init__()
        self.grid = grid

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32)
        if return_lpips:
            return x.flatten(1) / 255.0
        return F.adaptive_avg_pool2d(x, [self.grid, self.grid]).flatten(1)


def save_standin_detectors(directory: str, grid: int = 4, feature_dim: int = 0, resize: int = 0) -> dict[str, str]:
    """Write both stand-ins as TorchScript under the official file names; returns {name: path}."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        for name, filename, module in (
                ('inception', 'inception-2015-12-05.pt', StandInInception(grid=grid, feature_dim=feature_dim, resize=resize)),
                ('vgg16', 'vgg16.pt', StandInVGG16(grid=grid))):
            path = os.path.join(directory, filename)
            torch.jit.save(torch.jit.script(module.eval()), path)
            paths[name] = path
    return paths
