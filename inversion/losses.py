"""Reconstruction losses shared by projection, pivotal tuning and encoder training; all respect a mask."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from .perceptual import Perceptual


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-image mean squared error [N] over the pixels (and channels) where the mask is set."""
    diff = (a - b).square()
    if mask is None:
        return diff.flatten(1).mean(dim=1)
    # Multiplying by a 0/1 mask zeroes the error outside exactly, whatever the target holds there.
    weight = mask.expand_as(diff)
    return (diff * weight).flatten(1).sum(dim=1) / weight.flatten(1).sum(dim=1).clamp(min=1)


class ReconstructionLoss:
    """perceptual_weight * perceptual distance + pixel_weight * MSE, against a target embedded once."""

    def __init__(self, target: torch.Tensor, mask: Optional[torch.Tensor], perceptual: Optional[Perceptual],
                 perceptual_weight: float = 1.0, pixel_weight: float = 1.0):
        if perceptual is None and pixel_weight <= 0:
            raise ValueError('nothing to optimise: no perceptual network and pixel_weight is 0')
        self.target = target
        self.mask = mask
        self.perceptual = perceptual if perceptual_weight > 0 else None
        self.perceptual_weight = perceptual_weight
        self.pixel_weight = pixel_weight
        self.embedding: Any = self.perceptual.embed(target, mask) if self.perceptual is not None else None

    def terms(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image loss terms [N] and their weighted sum under 'loss'."""
        out = {}
        total = torch.zeros(images.shape[0], device=images.device)
        if self.perceptual is not None:
            out['perceptual'] = self.perceptual.distance(self.embedding, images, self.mask)
            total = total + self.perceptual_weight * out['perceptual']
        if self.pixel_weight > 0:
            out['mse'] = masked_mse(images, self.target, self.mask)
            total = total + self.pixel_weight * out['mse']
        out['loss'] = total
        return out


def noise_autocorrelation(buffers: list[torch.Tensor], min_size: int = 8) -> torch.Tensor:
    """Sum of squared one-pixel autocorrelations of each noise map, at every 2x coarser scale down to 8x8.

    Optimised noise maps drift towards copying image content; white noise has no autocorrelation, so
    penalising it keeps them noise (the regulariser of NVIDIA's projector, written here from its definition).
    """
    total = torch.zeros([], device=buffers[0].device if buffers else 'cpu')
    for buf in buffers:
        x = buf.reshape(1, 1, *buf.shape[-2:])
        while True:
            for dim in (2, 3):
                total = total + (x * x.roll(1, dims=dim)).mean().square()
            if x.shape[2] <= min_size:
                break
            x = F.avg_pool2d(x, 2)
    return total
