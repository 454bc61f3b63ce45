"""Adaptive discriminator augmentation (ADA), after Karras et al., "Training Generative Adversarial
Networks with Limited Data" (NeurIPS 2020).

`AugmentPipe` applies a random, differentiable chain of transforms to a batch of images, each one
switched on per image with probability `p * multiplier`. The chain has five stages, always in this
order:

  1. pixel blitting      x-flip, 90-degree rotation, integer translation;
  2. general geometry    isotropic scale, rotation, anisotropic scale, fractional translation;
  3. colour              brightness, contrast, luma flip, hue rotation, saturation;
  4. image-space filter  random gain per frequency band;
  5. corruptions         additive Gaussian noise, cutout.

Stages 1-2 are folded into one inverse homography per image and executed in a single resampling;
stage 3 is folded into one 4x4 affine colour matrix per image. Blits therefore pass through the same
wavelet resampler as everything else, as in NVIDIA's code; since Symlet-6 is not exactly symmetric, a
mirror or quarter turn comes out displaced by about 0.1 px (exact on band-limited content only). We
keep that for parity rather than special-casing blits.

Everything is differentiable w.r.t. the images, to second order (the R1 penalty is taken on augmented
reals). torch's grid_sample has no double backward on CUDA, so the resampling runs through
torch_utils.ops.grid_sample, which has every order on every device.

The constructor keywords, their defaults and the buffers (`p`, `Hz_geom`, `Hz_fbank`) are those of
NVIDIA's `training.augment.AugmentPipe`, so the `augment_pipe` of an official snapshot can be rebuilt
from its init kwargs and state dict. Random numbers are drawn in the same order and amounts as there,
so with the same seed the two implementations produce the same images (up to float rounding).

`AdaptiveP` is the controller that tunes `p` from the discriminator's outputs on real images.
"""
from __future__ import annotations

import math
from typing import Callable, Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from networks.snapshot import register_family
from torch_utils.ops.grid_sample import grid_sample_bilinear

# Low-pass decomposition filters of two Symlet wavelets (published constants). Symlet-6 is the
# anti-aliasing filter of the geometric stage; Symlet-2 seeds the filter bank of stage 4.
SYM2_LOWPASS = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6_LOWPASS = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)

# Names accepted by `--augpipe` (NVIDIA's stylegan2-ada vocabulary): letters b, g, c, f, n, c stand for
# blit, geom, color, filter, noise, cutout.
_BLIT = ('xflip', 'rotate90', 'xint')
_GEOM = ('scale', 'rotate', 'aniso', 'xfrac')
_COLOR = ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation')
AUGMENT_PRESETS: dict[str, tuple[str, ...]] = {
    'blit': _BLIT,
    'geom': _GEOM,
    'color': _COLOR,
    'filter': ('imgfilter',),
    'noise': ('noise',),
    'cutout': ('cutout',),
    'bg': _BLIT + _GEOM,
    'bgc': _BLIT + _GEOM + _COLOR,
    'bgcf': _BLIT + _GEOM + _COLOR + ('imgfilter',),
    'bgcfn': _BLIT + _GEOM + _COLOR + ('imgfilter', 'noise'),
    'bgcfnc': _BLIT + _GEOM + _COLOR + ('imgfilter', 'noise', 'cutout'),
}
DEFAULT_PRESET = 'bgc'


def augment_kwargs_for(preset: str) -> dict[str, float]:
    """`AugmentPipe` keyword arguments for a named preset: the listed transforms get multiplier 1."""
    if preset not in AUGMENT_PRESETS:
        raise ValueError(f'unknown augmentation preset {preset!r}; choose one of {", ".join(AUGMENT_PRESETS)}')
    return {name: 1.0 for name in AUGMENT_PRESETS[preset]}


# ---------------------------------------------------------------------------------------------------
# Filters.

def geometric_filter() -> torch.Tensor:
    """Symlet-6 low-pass, normalised to unit DC gain (12 taps, float32)."""
    taps = torch.tensor(SYM6_LOWPASS, dtype=torch.float32)
    return taps / taps.sum()


def subband_filter_bank(num_bands: int = 4) -> torch.Tensor:
    """Zero-phase FIR filters [num_bands, taps] that split an image into octave bands.

    Row 0 passes the coarsest octave (unit DC gain), row `num_bands - 1` the finest. The rows sum to a
    unit impulse, so equal gains on all bands leave the image unchanged.
    """
    lo = np.asarray(SYM2_LOWPASS, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)          # quadrature mirror of the low-pass
    lo_power = np.convolve(lo, lo[::-1]) / 2        # |H(w)|^2 / 2, symmetric
    hi_power = np.convolve(hi, hi[::-1]) / 2        # complement: lo_power + hi_power = impulse
    bank = np.zeros([num_bands, 1])
    bank[0, 0] = 1.0
    for band in range(1, num_bands):
        # Everything collected so far moves down one octave (dilate by 2, then low-pass); the
        # octave just vacated at the top becomes this band.
        dilated = np.zeros([num_bands, 2 * bank.shape[1] - 1])
        dilated[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo_power) for row in dilated])
        start = (bank.shape[1] - hi_power.size) // 2
        bank[band, start:start + hi_power.size] += hi_power
    return torch.as_tensor(bank, dtype=torch.float32)


def _upsample2x(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Double H and W with the separable filter `taps` (even length), keeping DC gain 1 per axis."""
    n, c, h, w = x.shape
    k = (taps * 2).to(x.dtype)
    pad = (k.numel() - 2) // 2
    y = x.reshape(n * c, 1, h, w)
    y = F.conv_transpose2d(y, k.reshape(1, 1, 1, -1), stride=(1, 2), padding=(0, pad))
    y = F.conv_transpose2d(y, k.reshape(1, 1, -1, 1), stride=(2, 1), padding=(pad, 0))
    return y.reshape(n, c, 2 * h, 2 * w)


def _downsample2x(x: torch.Tensor, taps: torch.Tensor, crop: int) -> torch.Tensor:
    """Halve H and W with the separable filter `taps` after cropping `crop` pixels from every side.

    Correlation rather than convolution, so that following `_upsample2x` with this is the identity
    for an orthogonal wavelet filter.
    """
    n, c, h, w = x.shape
    k = taps.to(x.dtype)
    edge = crop - (k.numel() - 2) // 2              # the filter itself reaches this far outside
    y = x.reshape(n * c, 1, h, w)[:, :, edge:h - edge, edge:w - edge]
    y = F.conv2d(y, k.reshape(1, 1, 1, -1), stride=(1, 2))
    y = F.conv2d(y, k.reshape(1, 1, -1, 1), stride=(2, 1))
    return y.reshape(n, c, y.shape[2], y.shape[3])


# ---------------------------------------------------------------------------------------------------
# Random draws and batched matrices. Every matrix builder takes per-image parameters of shape [N]
# and returns [N, k, k].


def _from_entries(entries: Sequence[Sequence[Any]], ref: torch.Tensor) -> torch.Tensor:
    """Assemble [N, rows, cols] from a nested list of numbers and [N] tensors shaped like `ref`."""
    flat = [e if isinstance(e, torch.Tensor) else torch.full_like(ref, float(e)) for row in entries for e in row]
    return torch.stack(flat, dim=-1).reshape(ref.shape[0], len(entries), len(entries[0]))


def _shift2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _from_entries([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _stretch2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _from_entries([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _turn2d(theta: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(theta), torch.sin(theta)
    return _from_entries([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], theta)


def _const3(a: float, b: float, c: float, d: float, e: float, f: float, device: torch.device) -> torch.Tensor:
    return torch.tensor([[a, b, c], [d, e, f], [0, 0, 1]], dtype=torch.float32, device=device)


def _luma_axis(device: torch.device) -> torch.Tensor:
    """Unit vector along grey (R = G = B) in homogeneous RGB coordinates [4]."""
    return torch.tensor(np.array([1, 1, 1, 0]) / np.sqrt(3), dtype=torch.float32, device=device)


def _colour_offset(b: torch.Tensor) -> torch.Tensor:
    return _from_entries([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b)


def _colour_gain(c: torch.Tensor) -> torch.Tensor:
    return _from_entries([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], c)


def _luma_reflection(flip: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """Householder reflection through the plane orthogonal to `axis` where flip == 1, else identity."""
    eye = torch.eye(4, device=axis.device)
    return eye - 2 * torch.outer(axis, axis) * flip.reshape(-1, 1, 1)


def _luma_rotation(theta: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """Rotation by `theta` about `axis` (Rodrigues), acting on the RGB part only."""
    ax, ay, az = axis[0], axis[1], axis[2]
    s, c = torch.sin(theta), torch.cos(theta)
    u = 1 - c
    return _from_entries([
        [ax * ax * u + c, ax * ay * u - az * s, ax * az * u + ay * s, 0],
        [ay * ax * u + az * s, ay * ay * u + c, ay * az * u - ax * s, 0],
        [az * ax * u - ay * s, az * ay * u + ax * s, az * az * u + c, 0],
        [0, 0, 0, 1],
    ], theta)


def _luma_saturation(s: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """Keep the component along `axis`, scale the orthogonal (chroma) part by s."""
    along = torch.outer(axis, axis)
    return along + (torch.eye(4, device=axis.device) - along) * s.reshape(-1, 1, 1)


# ---------------------------------------------------------------------------------------------------

class AugmentPipe(torch.nn.Module):
    """Random differentiable augmentation of [N, C, H, W] image batches (see the module docstring).

    Every `<name>` argument is a probability multiplier (0 disables the transform; the effective
    probability is `p * multiplier`); the `*_std`, `*_max`, `*_size` arguments set magnitudes:
    translations relative to the image size, scales as log2 standard deviations, angles as fractions
    of a half turn either way (1 = any angle).
    """

    def __init__(self,
                 xflip: float = 0, rotate90: float = 0, xint: float = 0, xint_max: float = 0.125,
                 scale: float = 0, rotate: float = 0, aniso: float = 0, xfrac: float = 0,
                 scale_std: float = 0.2, rotate_max: float = 1, aniso_std: float = 0.2, xfrac_std: float = 0.125,
                 brightness: float = 0, contrast: float = 0, lumaflip: float = 0, hue: float = 0,
                 saturation: float = 0, brightness_std: float = 0.2, contrast_std: float = 0.5,
                 hue_max: float = 1, saturation_std: float = 1,
                 imgfilter: float = 0, imgfilter_bands: Sequence[float] = (1, 1, 1, 1), imgfilter_std: float = 1,
                 noise: float = 0, cutout: float = 0, noise_std: float = 0.1, cutout_size: float = 0.5):
        super().__init__()
        # Kept verbatim for snapshot writers (NVIDIA pickles record the same dict).
        self.init_kwargs = dict(
            xflip=xflip, rotate90=rotate90, xint=xint, xint_max=xint_max, scale=scale, rotate=rotate,
            aniso=aniso, xfrac=xfrac, scale_std=scale_std, rotate_max=rotate_max, aniso_std=aniso_std,
            xfrac_std=xfrac_std, brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue,
            saturation=saturation, brightness_std=brightness_std, contrast_std=contrast_std, hue_max=hue_max,
            saturation_std=saturation_std, imgfilter=imgfilter, imgfilter_bands=list(imgfilter_bands),
            imgfilter_std=imgfilter_std, noise=noise, cutout=cutout, noise_std=noise_std, cutout_size=cutout_size)
        for name, value in self.init_kwargs.items():
            if name != 'imgfilter_bands':
                setattr(self, name, float(value))
        self.imgfilter_bands = [float(b) for b in imgfilter_bands]

        self.register_buffer('p', torch.ones([]))
        self.register_buffer('Hz_geom', geometric_filter())
        self.register_buffer('Hz_fbank', subband_filter_bank())
        if len(self.imgfilter_bands) != self.Hz_fbank.shape[0]:
            raise ValueError(f'imgfilter_bands needs {self.Hz_fbank.shape[0]} entries, got {len(self.imgfilter_bands)}')
        self.draw_from()

    # -- random parameters ------------------------------------------------------------------------

    def draw_from(self, generator: Optional[torch.Generator] = None, share: tuple[int, int] = (0, 1)) -> None:
        """Where per-image random numbers come from: `generator` (None: torch's global one), and which
        part of a larger batch the images are: with `share=(i, k)` every draw is made for k times as
        many images and the images take rows i, i+k, ... of it. Training processes that hold the
        interleaved slices of one global batch, and share one generator state, so augment each image
        exactly as a single process would."""
        self._generator, self._share = generator, share

    def _draw(self, sample, device: torch.device, n: int, *rest: int) -> torch.Tensor:
        generator, (index, count) = self._generator, self._share
        values = sample([n * count, *rest], device=device, generator=generator)
        return values[index::count] if count > 1 else values

    def _uniform(self, device: torch.device, n: int, *rest: int) -> torch.Tensor:
        return self._draw(torch.rand, device, n, *rest)

    def _normal(self, device: torch.device, n: int, *rest: int) -> torch.Tensor:
        return self._draw(torch.randn, device, n, *rest)

    def _chance(self, multiplier: float, n: int, device: torch.device) -> torch.Tensor:
        """Per-image booleans [n]: True with probability p * multiplier."""
        return self._uniform(device, n) < multiplier * self.p

    def _gated(self, value: torch.Tensor, multiplier: float, neutral: float) -> torch.Tensor:
        """`value` ([N] or [N, k]) where the transform fires, `neutral` elsewhere.

        The value is drawn before the coin toss; keeping that order keeps our random stream aligned
        with NVIDIA's, so a shared seed gives shared augmentations.
        """
        fire = self._chance(multiplier, value.shape[0], value.device)
        return torch.where(fire.reshape([-1] + [1] * (value.ndim - 1)), value, torch.full_like(value, neutral))

    def _random_angle(self, n: int, probability: torch.Tensor, device: torch.device) -> torch.Tensor:
        theta = (self._uniform(device, n) * 2 - 1) * math.pi * self.rotate_max
        return torch.where(self._uniform(device, n) < probability, theta, torch.zeros_like(theta))

    def _geometry(self, n: int, width: int, height: int, device: torch.device) -> Optional[torch.Tensor]:
        """Inverse homographies [n, 3, 3] mapping output pixel positions to input ones.

        Coordinates are in pixels relative to the image centre. Transforms listed later act on the
        output side (right-multiplied). None when no geometric transform is enabled.
        """
        if not any([self.xflip, self.rotate90, self.xint, self.scale, self.rotate, self.aniso, self.xfrac]):
            return None
        g = torch.eye(3, device=device).expand(n, 3, 3)

        if self.xflip > 0:
            mirror = self._gated(torch.floor(self._uniform(device, n) * 2), self.xflip, 0)
            g = g @ _stretch2d(1 / (1 - 2 * mirror), torch.ones_like(mirror))
        if self.rotate90 > 0:
            quarter = self._gated(torch.floor(self._uniform(device, n) * 4), self.rotate90, 0)
            g = g @ _turn2d(math.pi / 2 * quarter)
        if self.xint > 0:
            # Rounded to whole pixels, so that this stage only moves pixels around.
            shift = self._gated((self._uniform(device, n, 2) * 2 - 1) * self.xint_max, self.xint, 0)
            g = g @ _shift2d(-torch.round(shift[:, 0] * width), -torch.round(shift[:, 1] * height))

        if self.scale > 0:
            s = self._gated(torch.exp2(self._normal(device, n) * self.scale_std), self.scale, 1)
            g = g @ _stretch2d(1 / s, 1 / s)
        # Rotation is tried both before and after the anisotropic stretch (so shears occur too), each
        # time with the probability that makes "at least one of the two" equal to p * rotate.
        p_each = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            g = g @ _turn2d(self._random_angle(n, p_each, device))
        if self.aniso > 0:
            s = self._gated(torch.exp2(self._normal(device, n) * self.aniso_std), self.aniso, 1)
            g = g @ _stretch2d(1 / s, s)
        if self.rotate > 0:
            g = g @ _turn2d(self._random_angle(n, p_each, device))
        if self.xfrac > 0:
            shift = self._gated(self._normal(device, n, 2) * self.xfrac_std, self.xfrac, 0)
            g = g @ _shift2d(-shift[:, 0] * width, -shift[:, 1] * height)
        return g

    def _colour(self, n: int, num_channels: int, device: torch.device) -> Optional[torch.Tensor]:
        """Affine colour maps [n, 4, 4] acting on homogeneous RGB; None when none is enabled."""
        chroma = num_channels > 1   # hue and saturation mean nothing for greyscale
        if not any([self.brightness, self.contrast, self.lumaflip, chroma and self.hue, chroma and self.saturation]):
            return None
        axis = _luma_axis(device)
        m = torch.eye(4, device=device).expand(n, 4, 4)

        if self.brightness > 0:
            m = _colour_offset(self._gated(self._normal(device, n) * self.brightness_std, self.brightness, 0)) @ m
        if self.contrast > 0:
            m = _colour_gain(self._gated(torch.exp2(self._normal(device, n) * self.contrast_std), self.contrast, 1)) @ m
        if self.lumaflip > 0:
            m = _luma_reflection(self._gated(torch.floor(self._uniform(device, n) * 2), self.lumaflip, 0), axis) @ m
        if chroma and self.hue > 0:
            theta = self._gated((self._uniform(device, n) * 2 - 1) * math.pi * self.hue_max, self.hue, 0)
            m = _luma_rotation(theta, axis) @ m
        if chroma and self.saturation > 0:
            s = self._gated(torch.exp2(self._normal(device, n) * self.saturation_std), self.saturation, 1)
            m = _luma_saturation(s, axis) @ m
        return m

    # -- execution --------------------------------------------------------------------------------

    def _warp(self, images: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Resample every image through its inverse homography at 2x resolution.

        Reflection padding supplies content for pixels mapped from outside the frame; working on a
        2x wavelet-upsampled copy keeps bilinear sampling from aliasing.
        """
        n, c, h, w = images.shape
        device = images.device
        halo = self.Hz_geom.numel() // 4   # input pixels the down-filter reaches beyond the frame
        cx, cy = (w - 1) / 2, (h - 1) / 2

        # How far the frame (plus filter halo) reaches outside the input, over the whole batch.
        corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], dtype=torch.float32,
                               device=device)
        reach = (g[:, :2, :] @ corners).transpose(0, 1).reshape(2, -1)
        need = torch.cat([-reach, reach]).amax(dim=1)
        need = need + torch.tensor([2 * halo - cx, 2 * halo - cy] * 2, device=device)
        limit = torch.tensor([w - 1, h - 1] * 2, dtype=torch.float32, device=device)
        need = torch.minimum(need.clamp(min=0), limit)
        left, top, right, bottom = need.ceil().to(torch.int32).tolist()
        images = F.pad(images, [left, right, top, bottom], mode='reflect')

        # Compose: normalised output grid -> output px at 2x -> output px -> input px -> padded input
        # px -> padded input px at 2x -> normalised input grid. At 2x, pixel centres sit at 2x - 0.5
        # in a frame centred like the 1x one.
        out_w, out_h = (w + 2 * halo) * 2, (h + 2 * halo) * 2
        in_w, in_h = images.shape[3] * 2, images.shape[2] * 2
        grid_from_out = _const3(out_w / 2, 0, 0, 0, out_h / 2, 0, device)
        half_from_double = _const3(0.5, 0, 0.25, 0, 0.5, 0.25, device)
        recentre = _const3(1, 0, (left - right) / 2, 0, 1, (top - bottom) / 2, device)
        double_from_half = _const3(2, 0, -0.5, 0, 2, -0.5, device)
        norm_from_in = _const3(2 / in_w, 0, 0, 0, 2 / in_h, 0, device)
        theta = norm_from_in @ double_from_half @ recentre @ g @ half_from_double @ grid_from_out

        images = _upsample2x(images, self.Hz_geom)
        grid = F.affine_grid(theta[:, :2, :].to(images.dtype), [n, c, out_h, out_w], align_corners=False)
        images = grid_sample_bilinear(images, grid)
        return _downsample2x(images, self.Hz_geom, crop=2 * halo)

    def _recolour(self, images: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        n, c, h, w = images.shape
        m = m.to(images.dtype)
        flat = images.reshape(n, c, h * w)
        if c == 3:
            flat = m[:, :3, :3] @ flat + m[:, :3, 3:]
        elif c == 1:
            # Greyscale as R = G = B: the output is the mean of the three resulting channels.
            mean_row = m[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * mean_row[:, :, :3].sum(dim=2, keepdim=True) + mean_row[:, :, 3:]
        else:
            raise ValueError(f'colour augmentation needs 1 or 3 channels, got {c}')
        return flat.reshape(n, c, h, w)

    def _band_filter(self, images: torch.Tensor) -> torch.Tensor:
        """Amplify or attenuate each frequency band at random, keeping the expected image power."""
        n, c, h, w = images.shape
        device = images.device
        num_bands, taps = self.Hz_fbank.shape
        if min(h, w) <= taps // 2:
            raise ValueError(f'imgfilter needs images larger than {taps // 2} px, got {h}x{w}')
        # Natural images put most power in the coarsest band (about a 1/f spectrum).
        band_power = torch.tensor(np.array([10, 1, 1, 1]) / 13, dtype=torch.float32, device=device)
        gains = torch.ones([n, num_bands], device=device)
        for band, band_mult in enumerate(self.imgfilter_bands):
            amp = torch.exp2(self._normal(device, n) * self.imgfilter_std)
            amp = self._gated(amp, self.imgfilter * band_mult, 1)
            step = torch.ones([n, num_bands], device=device)
            step[:, band] = amp
            step = step / (band_power * step.square()).sum(dim=1, keepdim=True).sqrt()
            gains = gains * step
        kernel = (gains @ self.Hz_fbank).to(images.dtype).repeat_interleave(c, dim=0)   # [n * c, taps]
        r = taps // 2
        x = F.pad(images.reshape(1, n * c, h, w), [r, r, r, r], mode='reflect')
        x = F.conv2d(x, kernel.reshape(n * c, 1, 1, taps), groups=n * c)
        x = F.conv2d(x, kernel.reshape(n * c, 1, taps, 1), groups=n * c)
        return x.reshape(n, c, h, w)

    def _add_noise(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        sigma = self._normal(images.device, n).abs() * self.noise_std
        sigma = self._gated(sigma, self.noise, 0).to(images.dtype)
        return images + self._normal(images.device, *images.shape).to(images.dtype) * sigma.reshape(n, 1, 1, 1)

    def _cut_out(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        device = images.device
        fire = self._chance(self.cutout, n, device)
        size = torch.where(fire, self.cutout_size, 0.0).reshape(n, 1, 1)
        centre = self._uniform(device, n, 2)
        xs = (torch.arange(w, device=device) + 0.5) / w
        ys = (torch.arange(h, device=device) + 0.5) / h
        outside_x = (xs.reshape(1, 1, w) - centre[:, 0].reshape(n, 1, 1)).abs() >= size / 2
        outside_y = (ys.reshape(1, h, 1) - centre[:, 1].reshape(n, 1, 1)).abs() >= size / 2
        keep = (outside_x | outside_y).to(images.dtype)
        return images * keep.unsqueeze(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError('AugmentPipe expects a [N, C, H, W] tensor')
        n, c, h, w = images.shape
        device = images.device
        g = self._geometry(n, w, h, device)
        if g is not None:
            images = self._warp(images, g)
        m = self._colour(n, c, device)
        if m is not None:
            images = self._recolour(images, m)
        if self.imgfilter > 0:
            images = self._band_filter(images)
        if self.noise > 0:
            images = self._add_noise(images)
        if self.cutout > 0:
            images = self._cut_out(images)
        return images

    def extra_repr(self) -> str:
        on = [k for k in ('xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac', 'brightness', 'contrast',
                          'lumaflip', 'hue', 'saturation', 'imgfilter', 'noise', 'cutout') if getattr(self, k) > 0]
        return f'enabled=[{", ".join(on)}]'


# ---------------------------------------------------------------------------------------------------

class AdaptiveP:
    """ADA controller: nudges the pipeline's `p` so that E[sign(D(real))] stays near `target`.

    Call `observe(real_logits)` whenever D scores real images and `step()` once per training batch.
    Every `interval` batches the mean sign since the last adjustment ("r_t") is compared with the
    target and `p` moves by batch_size * interval / (speed_kimg * 1000) towards fewer (r_t < target)
    or more (r_t > target, D overfits) augmentations, never below 0. The statistics stay on the
    device, so no step forces a GPU sync.
    """

    def __init__(self, pipe: AugmentPipe, batch_size: int, target: float = 0.6, interval: int = 4,
                 speed_kimg: float = 500):
        if interval < 1 or speed_kimg <= 0 or batch_size < 1:
            raise ValueError('AdaptiveP needs interval >= 1, speed_kimg > 0 and batch_size >= 1')
        self.pipe = pipe
        self.batch_size = int(batch_size)
        self.target = float(target)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)
        device = pipe.p.device
        self._sign_sum = torch.zeros([], dtype=torch.float64, device=device)
        self._count = torch.zeros([], dtype=torch.float64, device=device)
        self._batches = 0
        self.last_rt = torch.full([], float('nan'), dtype=torch.float64, device=device)

    @property
    def step_size(self) -> float:
        return self.batch_size * self.interval / (self.speed_kimg * 1000)

    def observe(self, real_logits: torch.Tensor) -> None:
        logits = real_logits.detach()
        self._sign_sum += logits.sign().sum().to(self._sign_sum)
        self._count += logits.numel()

    def step(self, reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> bool:
        """Count one training batch; adjust p if this completes an interval. True when it did.

        `reduce` sums the statistics over processes in multi-GPU training, so every rank moves p alike.
        """
        self._batches += 1
        if self._batches % self.interval != 0:
            return False
        if reduce is not None:
            totals = reduce(torch.stack([self._sign_sum, self._count]))
            self._sign_sum.copy_(totals[0])
            self._count.copy_(totals[1])
        rt = self._sign_sum / self._count.clamp(min=1)
        direction = torch.where(self._count > 0, torch.sign(rt - self.target), torch.zeros_like(rt))
        p = self.pipe.p
        p.copy_((p + direction.to(p) * self.step_size).clamp(min=0))
        self.last_rt = torch.where(self._count > 0, rt, torch.full_like(rt, float('nan')))
        self._sign_sum.zero_()
        self._count.zero_()
        return True

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume mid-interval (p itself lives in the pipeline's state dict)."""
        return dict(batches=self._batches, sign_sum=float(self._sign_sum), count=float(self._count),
                    last_rt=float(self.last_rt), target=self.target, interval=self.interval,
                    speed_kimg=self.speed_kimg, batch_size=self.batch_size)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._batches = int(state['batches'])
        self._sign_sum.fill_(float(state['sign_sum']))
        self._count.fill_(float(state['count']))
        self.last_rt.fill_(float(state['last_rt']))


# Snapshots (networks/, which never imports training/) rebuild augment pipes through this registration.
register_family('AugmentPipe', AugmentPipe)
