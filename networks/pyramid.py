"""The resolution pyramid that the StyleGAN2 generator climbs and the discriminator descends."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """One resolution of the pyramid, with the feature channels that blocks there carry."""
    resolution: int
    channels: int
    fp16: bool       # blocks at this resolution run in float16 (on CUDA)


def resolution_pyramid(img_resolution: int, channel_base: int = 32768, channel_max: int = 512,
                       num_fp16_res: int = 4) -> list[Scale]:
    """Scales 4x4, 8x8, ..., img_resolution, from coarse to fine.

    Channels halve each time the resolution doubles (channel_base / resolution, at most channel_max). The
    `num_fp16_res` finest scales run in float16, but never 4x4."""
    if img_resolution < 4 or img_resolution & (img_resolution - 1):
        raise ValueError(f'img_resolution must be a power of two >= 4, got {img_resolution}')
    finest = int(img_resolution).bit_length() - 1
    coarsest_fp16 = max(2 ** (finest + 1 - num_fp16_res), 8)
    return [Scale(resolution=2 ** k, channels=min(channel_base // 2 ** k, channel_max), fp16=2 ** k >= coarsest_fp16)
            for k in range(2, finest + 1)]
