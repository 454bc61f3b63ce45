"""A W+ encoder in the style of e4e and ReStyle, trained from scratch for one generator.

* ReStyle: the encoder sees the target next to the current reconstruction (2C input channels) and predicts
  a *correction* to the current W+ latent; inversion starts at w_avg and applies a few corrections.
* e4e: the correction is one shared w for every layer plus per-layer offsets, and the offsets are switched
  on progressively during training (coarse layers first) under an L2 penalty, which keeps latents close to
  W where edits behave.
* pSp's feature pyramid: coarse, medium and fine layers of the generator read from coarse, medium and fine
  levels of the encoder's backbone.

Outputs are in units of the per-dimension spread of W, so the same heads fit generators whose W scales
differ. The last layer of every head starts at zero: an untrained encoder leaves the latent unchanged.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from networks.persistence import records_init_kwargs


class ResidualDown(nn.Module):
    """Two 3x3 convs with a strided first conv, plus a strided 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv0(x), 0.2)
        y = F.leaky_relu(self.conv1(y), 0.2)
        return (y + self.skip(x)) * 0.5 ** 0.5


class ConvBackbone(nn.Module):
    """Image (at most `max_input` px; larger inputs are area-downsampled) -> features at every 2x scale down to 4x4."""

    def __init__(self, in_channels: int, resolution: int, base_channels: int = 32, max_channels: int = 256,
                 max_input: int = 256):
        super().__init__()
        self.input_size = min(resolution, max_input)
        if self.input_size < 8:
            raise ValueError(f'resolution {resolution} is too small for the encoder (at least 8)')
        self.stem = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        stages = []
        channels = [base_channels]
        res = self.input_size
        while res > 4:
            ch = min(base_channels * self.input_size // (res // 2), max_channels)
            stages.append(ResidualDown(channels[-1], ch))
            channels.append(ch)
            res //= 2
        self.stages = nn.ModuleList(stages)
        self.channels = channels[1:]   # channels of each returned level, finest first

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode='area')
        x = F.leaky_relu(self.stem(x), 0.2)
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return levels


class StyleHead(nn.Module):
    """Feature map -> one w_dim vector, keeping a 4x4 layout so that position information survives."""

    def __init__(self, channels: int, w_dim: int, hidden: int):
        super().__init__()
        self.fc0 = nn.Linear(channels * 16, hidden)
        self.fc1 = nn.Linear(hidden, w_dim)
        nn.init.zeros_(self.fc1.weight)
        nn.init.zeros_(self.fc1.bias)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(feat, 4).flatten(1)
        return self.fc1(F.leaky_relu(self.fc0(x), 0.2))


@records_init_kwargs
class LatentEncoder(nn.Module):
    """(target, current reconstruction) -> W+ correction [N, num_ws, w_dim] in units of W's spread."""

    def __init__(self, img_resolution: int, img_channels: int, num_ws: int, w_dim: int, base_channels: int = 32,
                 max_channels: int = 256, head_hidden: int = 256, max_input: int = 256):
        super().__init__()
        self.num_ws = num_ws
        self.w_dim = w_dim
        self.backbone = ConvBackbone(2 * img_channels, img_resolution, base_channels, max_channels, max_input)
        # Coarse generator layers read the coarsest level, fine layers a finer one (up to three levels).
        num_levels = min(3, len(self.backbone.channels))
        self.level_of_ws = [len(self.backbone.channels) - 1 - min(i * num_levels // num_ws, num_levels - 1)
                            for i in range(num_ws)]
        self.heads = nn.ModuleList(StyleHead(self.backbone.channels[lvl], w_dim, head_hidden) for lvl in self.level_of_ws)
        self.register_buffer('w_scale', torch.ones([w_dim]))
        # e4e's progressive training: offsets of layers >= active_offsets are held at zero.
        self.register_buffer('active_offsets', torch.tensor(num_ws, dtype=torch.long))

    def forward(self, target: torch.Tensor, current: torch.Tensor, return_offsets: bool = False):
        levels = self.backbone(torch.cat([target, current], dim=1))
        base = self.heads[0](levels[self.level_of_ws[0]])
        offsets = [torch.zeros_like(base)]
        active = int(self.active_offsets)
        for i in range(1, self.num_ws):
            if i < active:
                offsets.append(self.heads[i](levels[self.level_of_ws[i]]))
            else:
                offsets.append(torch.zeros_like(base))
        offsets = torch.stack(offsets, dim=1)
        delta = (base[:, None] + offsets) * self.w_scale
        return (delta, offsets) if return_offsets else delta


def encode(encoder: LatentEncoder, G: nn.Module, target: torch.Tensor, w_avg: torch.Tensor, iterations: int,
           mask: Optional[torch.Tensor] = None, start: Optional[tuple[torch.Tensor, torch.Tensor]] = None
           ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """ReStyle's iterative inversion without gradients: [(ws, image)] after each correction.

    With a mask, the encoder sees the target inside the mask and its own current reconstruction outside,
    so nothing outside the mask reaches it (by induction: the first reconstruction is G(w_avg)).
    """
    with torch.no_grad():
        if start is None:
            ws = w_avg.to(target.device).expand(target.shape[0], G.num_ws, -1).clone()
            image = G.synthesis(ws, noise_mode='const')
        else:
            ws, image = start
        steps = []
        for _ in range(iterations):
            seen = target if mask is None else target * mask + image * (1 - mask)
            ws = ws + encoder(seen, image)
            image = G.synthesis(ws, noise_mode='const')
            steps.append((ws, image))
    return steps
