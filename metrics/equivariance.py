"""Equivariance metrics EQ-T, EQ-T_frac and EQ-R ("Alias-Free GANs", Karras et al. 2021, appendix E).

For each batch of latents, the generator draws a reference image with the identity input transform,
then again with its input translated (or rotated) through `G.synthesis.input.transform`. The reference
is moved by the same amount in pixel space, and the two are compared by PSNR over the pixels that both
define (peak-to-peak 2, images in [-1, 1]):

- EQ-T (`eqt*_int`): translation by a whole number of pixels, up to 1/8 of the image each way;
  the pixel-space shift is exact.
- EQ-T_frac (`eqt*_frac`): any translation in the same range; the shift is a separable Lanczos-windowed
  sinc interpolation (a = 3).
- EQ-R (`eqr*`): rotation by up to 180 degrees each way; the reference is resampled through a 4x
  upsampling with an oriented band-limiting filter, while the generated image gets the same band limit
  without the rotation ("pseudo-rotation"), so that only the aliasing differs.

One translation/angle is drawn per batch, as in NVIDIA's code; the generator runs in float32 with
constant noise (noise buffers re-drawn per batch). PSNR = 20 log10(2) - 10 log10(MSE), the MSE summed
over all batches (and processes) before the log.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils.distributed import sum_over_ranks
from torch_utils.ops import upfirdn2d

from . import MetricError
from .options import MetricContext
from .sampling import LatentSource, rounds, synthesis_kwargs


def sinc(x: torch.Tensor) -> torch.Tensor:
    """Normalised sinc, sin(pi x) / (pi x), with sinc(0) = 1."""
    px = (x * np.pi).abs()
    return torch.where(px < 1e-30, torch.ones_like(x), torch.sin(px) / px.clamp(min=1e-30))


def lanczos_window(x: torch.Tensor, a: float) -> torch.Tensor:
    u = x.abs() / a
    return torch.where(u < 1, sinc(u), torch.zeros_like(u))


def rotation_matrix(angle) -> torch.Tensor:
    """3x3 homogeneous rotation by `angle` radians (the convention of StyleGAN3's input transform)."""
    angle = torch.as_tensor(angle, dtype=torch.float32)
    m = torch.eye(3, device=angle.device)
    m[0, 0], m[0, 1] = angle.cos(), angle.sin()
    m[1, 0], m[1, 1] = -angle.sin(), angle.cos()
    return m


# ---------------------------------------------------------------------------------------------
# Pixel-space transforms; each returns (image, mask of the pixels it defines).

def _span(shift: int, size: int) -> tuple[slice, slice]:
    """(destination, source) slices of a zero-filled shift by `shift` pixels along an axis of `size`."""
    return slice(max(shift, 0), size + min(shift, 0)), slice(max(-shift, 0), size + min(-shift, 0))


def translate_integer(x: torch.Tensor, tx, ty) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift by (tx, ty) image widths/heights, rounded to whole pixels."""
    _, _, h, w = x.shape
    dx = int(torch.as_tensor(tx * w, dtype=torch.float32).round())
    dy = int(torch.as_tensor(ty * h, dtype=torch.float32).round())
    out, mask = torch.zeros_like(x), torch.zeros_like(x)
    if abs(dx) < w and abs(dy) < h:
        (dst_y, src_y), (dst_x, src_x) = _span(dy, h), _span(dx, w)
        out[:, :, dst_y, dst_x] = x[:, :, src_y, src_x]
        mask[:, :, dst_y, dst_x] = 1
    return out, mask


def _shift_axis(x: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    size = x.shape[dim]
    out = torch.zeros_like(x)
    if abs(shift) < size:
        dst, src = _span(shift, size)
        index_dst = [slice(None)] * x.ndim
        index_src = [slice(None)] * x.ndim
        index_dst[dim], index_src[dim] = dst, src
        out[tuple(index_dst)] = x[tuple(index_src)]
    return out


def translate_fractional(x: torch.Tensor, tx, ty, a: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift by (tx, ty) image widths/heights with Lanczos-windowed sinc interpolation.

    out[j] = sum_m k(m - f) x[j - i - m] along each axis, where i + f is the shift in pixels
    (i integer, 0 <= f < 1), m runs over the 2a taps -(a-1)..a and k is the normalised kernel. The
    mask keeps the pixels whose taps all fall inside the image."""
    _, _, h, w = x.shape
    out, mask = x, torch.zeros_like(x)
    bounds = []
    for shift, size, dim in ((tx, w, 3), (ty, h, 2)):
        pixels = torch.as_tensor(shift * size, dtype=torch.float32)
        whole = int(pixels.floor())
        frac = (pixels - whole).to(x.device)
        taps = torch.arange(2 * a, device=x.device) - (a - 1)
        kernel = sinc(taps - frac) * sinc((taps - frac) / a)
        kernel = kernel / kernel.sum()
        out = sum(kernel[k] * _shift_axis(out, whole + int(taps[k]), dim) for k in range(2 * a))
        bounds.append((max(whole + a, 0), min(whole - (a - 1), 0) + size))
    (x0, x1), (y0, y1) = bounds
    if x0 < x1 and y0 < y1:
        mask[:, :, y0:y1, x0:x1] = 1
    return out, mask


def bandlimit_filter(mat: torch.Tensor, a: int = 3, amax: int = 16, aflt: int = 64, up: int = 4,
                     cutoff_in: float = 1, cutoff_out: float = 1) -> torch.Tensor:
    """2-D FIR filter (odd size 2*amax*up - 1, sampled at 1/up pixel) that band-limits an image both in
    its own frame and in the frame mapped by the 2x2 part of `mat`.

    Built on a periodic grid of 2*aflt*up - 1 taps per axis: the ideal filter is the convolution of the
    two oriented sinc low-passes, the window the convolution of the two oriented Lanczos windows
    (both convolutions by FFT); their product is cut to amax pixels each way and each of the up x up
    polyphase components is normalised to unit DC gain."""
    if not a <= amax < aflt:
        raise ValueError('need a <= amax < aflt')
    mat = torch.as_tensor(mat, dtype=torch.float32)
    n = aflt * up * 2 - 1
    centre = aflt * up - 1
    coords = (torch.arange(n, device=mat.device) - centre) / up     # -aflt+1/up .. aflt-1/up
    coords = coords.roll(-centre)                                   # zero first: FFT order
    yi, xi = torch.meshgrid(coords, coords, indexing='ij')
    xo = xi * mat[0, 0] + yi * mat[0, 1]
    yo = xi * mat[1, 0] + yi * mat[1, 1]

    def circular_conv(p, q):
        return torch.fft.ifftn(torch.fft.fftn(p) * torch.fft.fftn(q)).real

    ideal = circular_conv(sinc(xi * cutoff_in) * sinc(yi * cutoff_in), sinc(xo * cutoff_out) * sinc(yo * cutoff_out))
    window = circular_conv(lanczos_window(xi, a) * lanczos_window(yi, a), lanczos_window(xo, a) * lanczos_window(yo, a))
    f = (ideal * window).roll([centre, centre], dims=[0, 1])        # zero back in the middle
    cut = (aflt - amax) * up
    f = f[cut:-cut, cut:-cut]
    f = F.pad(f, [0, 1, 0, 1]).reshape(amax * 2, up, amax * 2, up)
    f = f / f.sum(dim=[0, 2], keepdim=True) / up ** 2
    return f.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1]


def resample_affine(x: torch.Tensor, mat: torch.Tensor, up: int = 4, **filter_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the affine map `mat` (3x3, in image-size units) to images, band-limited by `bandlimit_filter`:
    upsample `up` times through the filter, then sample bilinearly on the mapped grid."""
    n, _, h, w = x.shape
    mat = torch.as_tensor(mat, dtype=torch.float32, device=x.device)
    f = bandlimit_filter(mat, up=up, **filter_kwargs)
    pad = f.shape[0] // 2

    theta = mat.inverse()
    theta[:2, 2] *= 2                                   # image units -> [-1, 1] grid units
    theta[0, 2] += 1 / up / w                           # half a fine pixel: centre of the upsampled grid
    theta[1, 2] += 1 / up / h
    theta[0, :] *= w / (w + pad / up * 2)               # the upsampled image carries `pad` extra samples a side
    theta[1, :] *= h / (h + pad / up * 2)
    grid = F.affine_grid(theta[:2, :3].unsqueeze(0).repeat([n, 1, 1]), list(x.shape), align_corners=False)

    fine = upfirdn2d.upsample2d(x, f, up=up, padding=pad)
    out = F.grid_sample(fine, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    valid = torch.zeros_like(fine)
    edge = pad * 2 + 1
    valid[:, :, edge:-edge, edge:-edge] = 1
    mask = F.grid_sample(valid, grid, mode='nearest', padding_mode='zeros', align_corners=False)
    return out, mask


def rotate_fractional(x: torch.Tensor, angle, a: int = 3, **filter_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    mat = rotation_matrix(torch.as_tensor(angle, dtype=torch.float32)).to(x.device)
    return resample_affine(x, mat, a=a, amax=a * 2, **filter_kwargs)


def pseudo_rotate(x: torch.Tensor, angle, a: int = 3, **filter_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The band limit a rotation by `angle` would impose, without rotating."""
    mat = rotation_matrix(-torch.as_tensor(angle, dtype=torch.float32)).to(x.device)
    f = bandlimit_filter(mat, a=a, amax=a * 2, up=1, **filter_kwargs)
    out = upfirdn2d.filter2d(x, f)
    mask = torch.zeros_like(out)
    edge = f.shape[0] // 2
    mask[:, :, edge:-edge, edge:-edge] = 1
    return out, mask


# ---------------------------------------------------------------------------------------------

def psnr_from_sums(sq_err: torch.Tensor, count: torch.Tensor) -> float:
    mse = float(sq_err) / float(count)
    return 20 * math.log10(2) - 10 * math.log10(mse) if mse > 0 else float('inf')


def run_equivariance(opts: MetricContext, num_samples: int, batch_size: int, kinds: tuple[str, ...],
                         translate_max: float = 0.125, rotate_max: float = 1) -> dict[str, float]:
    """PSNR per kind ('int', 'frac', 'rot')."""
    G = opts.generator_copy()
    transform = getattr(getattr(G.synthesis, 'input', None), 'transform', None)
    if transform is None:
        raise MetricError('equivariance metrics need a StyleGAN3 generator (G.synthesis.input.transform); '
                          f'this is a {type(G).__module__}.{type(G).__name__}')
    eye = torch.eye(3, device=opts.device)
    source = LatentSource(opts, G, 'equivariance')
    synth = {**synthesis_kwargs(opts.G_kwargs), 'noise_mode': 'const', 'force_fp32': True}
    sums = torch.zeros([len(kinds), 2], dtype=torch.float64, device=opts.device)
    num_batches = (num_samples - 1) // batch_size + 1
    with opts.bar(num_batches * batch_size, 'equivariance') as bar, torch.no_grad():
        for index, real in rounds(num_batches, opts.num_gpus, opts.rank):
            z, c, gen = source.draw(index, batch_size)
            for name, buf in G.named_buffers():
                if name.endswith('.noise_const'):
                    buf.copy_(torch.randn(buf.shape, generator=gen).to(buf.device))
            ws = G.mapping(z, c)
            transform.copy_(eye)
            orig = G.synthesis(ws, **synth)
            batch_sums = []
            for kind in kinds:
                if kind in ('int', 'frac'):
                    t = (torch.rand([2], generator=gen) * 2 - 1) * translate_max
                    if kind == 'int':
                        t = (t * G.img_resolution).round() / G.img_resolution
                    transform.copy_(eye)
                    transform[:2, 2] = -t.to(opts.device)
                    img = G.synthesis(ws, **synth)
                    shift = translate_integer if kind == 'int' else translate_fractional
                    ref, mask = shift(orig, t[0], t[1])
                elif kind == 'rot':
                    angle = (torch.rand([], generator=gen) * 2 - 1) * (rotate_max * np.pi)
                    transform.copy_(rotation_matrix(-angle).to(opts.device))
                    img = G.synthesis(ws, **synth)
                    ref, ref_mask = rotate_fractional(orig, angle)
                    img, img_mask = pseudo_rotate(img, angle)
                    mask = ref_mask * img_mask
                else:
                    raise ValueError(f'unknown equivariance kind {kind!r}')
                batch_sums.append(torch.stack([((ref - img).square() * mask).to(torch.float64).sum(),
                                               mask.to(torch.float64).sum()]))
            if real:
                sums += torch.stack(batch_sums)
            bar.update(min(batch_size * opts.num_gpus, bar.total - bar.n))
    sums = sum_over_ranks(sums).cpu()
    return {kind: psnr_from_sums(sums[i, 0], sums[i, 1]) for i, kind in enumerate(kinds)}
