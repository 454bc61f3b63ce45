"""HyperStyle's idea (Alaluf et al., 2022): predict per-image offsets of the generator's conv weights.

For each chosen modulated conv (every non-ToRGB layer by default) the hypernetwork predicts an offset
matrix D [out, in], and the layer runs with weight * (1 + D) broadcast over its kernel, as HyperStyle
does. Like the encoder it sees (target, current reconstruction) and refines iteratively: D accumulates.

Where HyperStyle predicts full matrices through shared refinement blocks, D here is a rank-r product
A @ B^T per layer, which keeps the hypernetwork small for 512-channel layers. A starts at zero, so an
untrained hypernetwork leaves the generator unchanged.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from networks.persistence import records_init_kwargs

from .encoder import ConvBackbone


def modulated_layers(G: nn.Module, include_torgb: bool = False) -> list[tuple[str, int, int]]:
    """(parameter name inside G.synthesis, out channels, in channels) of each modulated conv weight."""
    return [(f'{layer.name}.weight', int(layer.module.weight.shape[0]), int(layer.module.weight.shape[1]))
            for layer in G.synthesis.style_layers() if include_torgb or not layer.is_torgb]


@records_init_kwargs
class WeightHypernetwork(nn.Module):
    """(target, current reconstruction) -> {weight name: offsets [N, out, in]}."""

    def __init__(self, img_resolution: int, img_channels: int, layers: list, rank: int = 4,
                 base_channels: int = 32, max_channels: int = 256, hidden: int = 256, max_input: int = 256):
        super().__init__()
        self.layers = [(str(n), int(o), int(i)) for n, o, i in layers]
        self.rank = rank
        self.backbone = ConvBackbone(2 * img_channels, img_resolution, base_channels, max_channels, max_input)
        self.trunk = nn.Linear(self.backbone.channels[-1] * 16, hidden)
        self.left = nn.ModuleList()
        self.right = nn.ModuleList()
        for _, out_ch, in_ch in self.layers:
            left = nn.Linear(hidden, out_ch * rank)
            nn.init.zeros_(left.weight)
            nn.init.zeros_(left.bias)
            self.left.append(left)
            self.right.append(nn.Linear(hidden, in_ch * rank))

    def forward(self, target: torch.Tensor, current: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.backbone(torch.cat([target, current], dim=1))[-1]
        h = F.leaky_relu(self.trunk(F.adaptive_avg_pool2d(feat, 4).flatten(1)), 0.2)
        out = {}
        for (name, out_ch, in_ch), left, right in zip(self.layers, self.left, self.right):
            a = left(h).reshape(-1, out_ch, self.rank)
            b = right(h).reshape(-1, in_ch, self.rank)
            out[name] = a @ b.transpose(1, 2) / self.rank ** 0.5
        return out


def synthesize(G: nn.Module, ws: torch.Tensor, offsets: Optional[dict[str, torch.Tensor]] = None) -> torch.Tensor:
    """G.synthesis(ws, noise_mode='const') with weight * (1 + offsets[i]) for sample i."""
    if not offsets:
        return G.synthesis(ws, noise_mode='const')
    weights = dict(G.synthesis.named_parameters())
    images = []
    for i in range(ws.shape[0]):   # weights differ per sample, so samples run one by one
        params = {name: weights[name] * (1 + d[i][:, :, None, None]) for name, d in offsets.items()}
        images.append(torch.func.functional_call(G.synthesis, params, (ws[i:i + 1],), {'noise_mode': 'const'}))
    return torch.cat(images)


def fold_offsets(G: nn.Module, offsets: dict[str, torch.Tensor], index: int = 0) -> nn.Module:
    """A copy of G whose weights include sample `index`'s offsets: an ordinary generator for snapshots."""
    tuned = copy.deepcopy(G)
    params = dict(tuned.synthesis.named_parameters())
    with torch.no_grad():
        for name, d in offsets.items():
            params[name].mul_(1 + d[index][:, :, None, None].to(params[name].dtype))
    return tuned


def refine(hypernet: WeightHypernetwork, G: nn.Module, target: torch.Tensor, ws: torch.Tensor, iterations: int,
           mask: Optional[torch.Tensor] = None) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """HyperStyle's iterative refinement without gradients: [(offsets, image)] after each iteration."""
    with torch.no_grad():
        image = synthesize(G, ws)
        offsets: dict[str, torch.Tensor] = {}
        steps = []
        for _ in range(iterations):
            seen = target if mask is None else target * mask + image * (1 - mask)
            delta = hypernet(seen, image)
            offsets = {k: offsets.get(k, 0) + v for k, v in delta.items()}
            image = synthesize(G, ws, offsets)
            steps.append((offsets, image))
    return steps
