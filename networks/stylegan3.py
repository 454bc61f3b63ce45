"""StyleGAN3 (alias-free) generator, configs T (3x3 convs) and R (1x1 convs, radial filters).

    z, c --MappingNetwork--> ws [N, num_ws, w_dim]
    input:  Fourier features on a grid slightly larger than the image, rotated/translated by w
    L0..L{num_layers-1}: modulated conv -> filtered leaky ReLU (up x2, lrelu, low-pass, down)
    L{num_layers}: ToRGB (modulated 1x1, no demodulation), then `output_scale`

Each layer's cutoff, stopband, sampling rate and size follow a geometric schedule from the first
layer (cutoff 2) to the last (Nyquist of the output), the last `num_critical` layers critically sampled:
`synthesis_geometry` computes it once, as one frozen `LayerGeometry` per layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torch_utils import distributed
from torch_utils.ops.dispatch import fp16_enabled
from torch_utils.ops.filtered_lrelu import filtered_lrelu

from .filter_design import lowpass_taps, radial_lowpass_taps
from .persistence import records_init_kwargs
from .layers import FullyConnectedLayer, MappedGenerator, StyleLayer, kernel_energy, scale_kernels


def modulated_conv2d(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, demodulate: bool = True, padding: int = 0,
                     input_gain: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-sample modulated convolution as one grouped conv; weights and styles are pre-normalised
    to unit RMS so that float16 activations stay in range.

    Every factor (the weights' per-output RMS, the styles, demodulation, `input_gain`) scales a whole
    [kh, kw] kernel w[o, i], so they are gathered into one [N, O, I] matrix first: the weights are read
    twice (their per-kernel sums of squares, the final product) instead of once or twice per factor. The
    reductions run in float64, so that they round less than the reference's; the factors are then applied to
    the [N, O] and [N, I] sides, and only their outer product, in w's dtype, is [N, O, I] (a float64 [N, O, I]
    matrix and a second pass for `input_gain` cost StyleGAN3-R's 1024x1024 layers more than the product)."""
    n = x.shape[0]
    out_ch, in_ch, kh, kw = w.shape
    rows = None
    if demodulate:
        sq = kernel_energy(w)                                           # [O, I]
        w_norm = (sq.sum(dim=1) / (in_ch * kh * kw)).rsqrt()            # [O]: 1 / RMS of each output's weights
        s = s.double()
        s = s * s.square().mean().rsqrt()
        # sum_{i,k} (w_oik * w_norm_o * s_i)^2 = w_norm_o^2 * sum_i s_i^2 * sq_oi
        dcoefs = ((s.square() @ sq.t()) * w_norm.square() + 1e-8).rsqrt()   # [N, O]
        rows = (w_norm * dcoefs).to(w.dtype)                                 # [N, O]
    cols = s.to(w.dtype)                                                     # [N, I]
    if input_gain is not None:
        cols = cols * input_gain.expand(n, in_ch)
    scale = cols.unsqueeze(1) if rows is None else rows.unsqueeze(2) * cols.unsqueeze(1)   # [N, O or 1, I]
    if n == 1:   # a plain conv; reshaping would restride a channels-last x and cost oneDNN a layout copy
        return F.conv2d(x, scale_kernels(w, scale[0].expand(out_ch, in_ch), x), padding=padding)
    w = w.unsqueeze(0) * scale.unsqueeze(3).unsqueeze(4)                    # [N, O, I, kh, kw]
    x = x.reshape(1, -1, *x.shape[2:])
    x = F.conv2d(x, w.reshape(-1, in_ch, kh, kw).to(x.dtype), padding=padding, groups=n)
    return x.reshape(n, -1, *x.shape[2:])


MAX_FILTER_TAPS = 1024   # NVIDIA's configs use at most a few dozen


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Optional[torch.Tensor]:
    """Kaiser-windowed low-pass filter: separable 1-D taps, or a 2-D jinc for radially symmetric filtering."""
    if numtaps == 1:
        return None
    if not 1 <= numtaps <= MAX_FILTER_TAPS:
        # Filters are designed in NumPy, outside the meta device that guards snapshot loading: a file's
        # sampling rates must not be able to ask for a (numtaps x numtaps) array of any size.
        raise ValueError(f'a low-pass filter of {numtaps} taps was asked for (at most {MAX_FILTER_TAPS}): '
                         'the sampling rates or filter sizes are out of range')
    design = radial_lowpass_taps if radial else lowpass_taps
    return torch.as_tensor(design(numtaps, cutoff=cutoff, width=width, fs=fs), dtype=torch.float32)


@dataclass(frozen=True)
class Band:
    """One point of the synthesis schedule: a feature map's grid and the frequencies it may carry."""
    channels: int
    size: int            # pixels per side, margins included
    rate: int            # sampling rate s: samples per unit length of the image
    cutoff: float        # f_c: frequencies below it pass
    stopband: float      # f_t: frequencies above it are stopped
    half_width: float    # f_h: half the transition band, max(f_t, s/2) - f_c


@dataclass(frozen=True)
class LayerGeometry:
    """How one layer resamples: from the band `src` of its input, through the rate `inner_rate` where the
    nonlinearity runs, to the band `dst` of its output. Filters of 1 tap are no filters."""
    src: Band
    dst: Band
    kernel: int                            # conv kernel size (1 for ToRGB)
    inner_rate: int
    up: int                                # inner_rate / src.rate
    down: int                              # inner_rate / dst.rate
    up_taps: int
    down_taps: int
    radial: bool                           # jinc instead of separable taps for the down filter
    padding: tuple[int, int, int, int]     # x0, x1, y0, y1 of the upsampled conv output
    torgb: bool
    critical: bool                         # dst.rate is twice dst.cutoff: no room above the band


def _resampling(src: Band, dst: Band, *, torgb: bool, critical: bool, conv_kernel: int, filter_size: int,
                lrelu_upsampling: int, use_radial_filters: bool) -> LayerGeometry:
    """The layer between two neighbouring bands of the schedule."""
    kernel = 1 if torgb else conv_kernel
    inner_rate = max(src.rate, dst.rate) * (1 if torgb else lrelu_upsampling)
    up, down = inner_rate // src.rate, inner_rate // dst.rate
    up_taps = filter_size * up if up > 1 and not torgb else 1
    down_taps = filter_size * down if down > 1 and not torgb else 1
    # Pad the upsampled conv output so that both filters leave exactly dst's grid; the `+ up` moves the
    # low side by half an input pixel, so that pixel centres, not corners, line up across the grids.
    conv_size = (src.size + kernel - 1) * up               # the conv output, upsampled
    needed = (dst.size - 1) * down + 1 + up_taps + down_taps - 2
    low = (needed - conv_size + up) // 2
    high = needed - conv_size - low
    return LayerGeometry(src=src, dst=dst, kernel=kernel, inner_rate=inner_rate, up=up, down=down,
                         up_taps=up_taps, down_taps=down_taps, radial=use_radial_filters and not critical,
                         padding=(low, high, low, high), torgb=torgb, critical=critical)


def synthesis_geometry(img_resolution: int, img_channels: int, *, channel_base: int = 32768,
                       channel_max: int = 512, num_layers: int = 14, num_critical: int = 2,
                       first_cutoff: float = 2, first_stopband: float = 2 ** 2.1,
                       last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10, conv_kernel: int = 3,
                       filter_size: int = 6, lrelu_upsampling: int = 2,
                       use_radial_filters: bool = False) -> list[LayerGeometry]:
    """The geometry of layers L0..L{num_layers} (the last is ToRGB); L0's `src` is the Fourier input's band.

    Cutoff and stopband grow geometrically from the first layer's to the output's Nyquist frequency, which
    they reach `num_critical` layers before the end; from there on the layers are critically sampled. Each
    rate is the power of two that holds the stopband, at most the output resolution; channels fall as the
    cutoff rises. The last two bands are the output image itself, without margins."""
    nyquist = img_resolution / 2
    progress = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoff = first_cutoff * (nyquist / first_cutoff) ** progress
    stopband = first_stopband * (nyquist * last_stopband_rel / first_stopband) ** progress
    rate = np.exp2(np.ceil(np.log2(np.minimum(stopband * 2, img_resolution))))
    channels = np.rint(np.minimum((channel_base / 2) / cutoff, channel_max))
    bands = []
    for k in range(num_layers + 1):
        bands.append(Band(channels=img_channels if k == num_layers else int(channels[k]),
                          size=img_resolution if k >= num_layers - 1 else int(rate[k]) + 2 * margin_size,
                          rate=int(rate[k]), cutoff=float(cutoff[k]), stopband=float(stopband[k]),
                          half_width=float(max(stopband[k], rate[k] / 2) - cutoff[k])))
    return [_resampling(bands[max(k - 1, 0)], bands[k], torgb=k == num_layers,
                        critical=k >= num_layers - num_critical, conv_kernel=conv_kernel, filter_size=filter_size,
                        lrelu_upsampling=lrelu_upsampling, use_radial_filters=use_radial_filters)
            for k in range(num_layers + 1)]


class SynthesisInput(nn.Module):
    """Fourier features with random frequencies in a disc of radius `band.cutoff`, transformed by w."""

    def __init__(self, w_dim: int, band: Band):
        super().__init__()
        self.band = band
        freqs = torch.randn([band.channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * band.cutoff
        phases = torch.rand([band.channels]) - 0.5

        self.weight = nn.Parameter(torch.randn([band.channels, band.channels]))
        # Starts as the identity rotation (1, 0) and zero translation.
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer('transform', torch.eye(3, 3))   # user-set inverse transform of the output image
        self.register_buffer('freqs', freqs)
        self.register_buffer('phases', phases)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        t = self.affine(w)                                   # (cos, sin, tx, ty), rotation normalised below
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rot = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])
        rot[:, 0, 0] = t[:, 0]
        rot[:, 0, 1] = -t[:, 1]
        rot[:, 1, 0] = t[:, 1]
        rot[:, 1, 1] = t[:, 0]
        shift = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])
        shift[:, 0, 2] = -t[:, 2]
        shift[:, 1, 2] = -t[:, 3]
        transforms = rot @ shift @ self.transform.unsqueeze(0)

        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # Fade out frequencies that a user transform pushed beyond the band the layer can represent.
        band = self.band
        amplitudes = (1 - (freqs.norm(dim=2) - band.cutoff) / (band.rate / 2 - band.cutoff)).clamp(0, 1)

        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = theta[1, 1] = 0.5 * band.size / band.rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, band.size, band.size], align_corners=False)

        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)   # [N, H, W, C]
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (2 * np.pi))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(band.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv, then bias + leaky ReLU at a raised sampling rate between two low-pass filters."""

    def __init__(self, w_dim: int, geometry: LayerGeometry, use_fp16: bool = False,
                 conv_clamp: Optional[float] = 256, magnitude_ema_beta: float = 0.999):
        super().__init__()
        g = self.geometry = geometry
        self.use_fp16 = use_fp16
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, g.src.channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([g.dst.channels, g.src.channels, g.kernel, g.kernel]))
        self.bias = nn.Parameter(torch.zeros([g.dst.channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))
        # Both filters run at the inner rate: the first keeps the input's band after upsampling,
        # the second cuts the nonlinearity's harmonics down to the output's band before downsampling.
        self.register_buffer('up_filter', design_lowpass_filter(
            g.up_taps, cutoff=g.src.cutoff, width=g.src.half_width * 2, fs=g.inner_rate))
        self.register_buffer('down_filter', design_lowpass_filter(
            g.down_taps, cutoff=g.dst.cutoff, width=g.dst.half_width * 2, fs=g.inner_rate, radial=g.radial))

    @property
    def is_torgb(self) -> bool:
        """Whether this is the last layer; style editing leaves ToRGB's styles alone by default."""
        return self.geometry.torgb

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = 'random', force_fp32: bool = False,
                update_emas: bool = False) -> torch.Tensor:
        g = self.geometry
        if update_emas:
            magnitude = distributed.mean_over_ranks(x.detach().to(torch.float32).square().mean())
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        styles = self.affine(w)
        if g.torgb:
            styles = styles * (1 / np.sqrt(g.src.channels * g.kernel ** 2))

        fp16 = self.use_fp16 and not force_fp32 and fp16_enabled(x.device)
        x = modulated_conv2d(x.to(torch.float16 if fp16 else torch.float32), self.weight, styles,
                             padding=g.kernel - 1, demodulate=not g.torgb,
                             input_gain=self.magnitude_ema.rsqrt())
        return filtered_lrelu(x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
                              up=g.up, down=g.down, padding=g.padding,
                              gain=1 if g.torgb else np.sqrt(2), slope=1 if g.torgb else 0.2,
                              clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        g = self.geometry
        return (f'in={g.src.channels}x{g.src.size}@{g.src.rate}, out={g.dst.channels}x{g.dst.size}@{g.dst.rate}, '
                f'cutoff={g.src.cutoff:g}->{g.dst.cutoff:g}, torgb={g.torgb}')


class SynthesisNetwork(nn.Module):
    """ws -> image: Fourier input, the filtered layers of `synthesis_geometry`, ToRGB (the last of them).

    `geometry_kwargs` go to `synthesis_geometry`; the highest `num_fp16_res` sampling rates run in float16."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, num_fp16_res: int = 4,
                 output_scale: float = 0.25, conv_clamp: Optional[float] = 256, magnitude_ema_beta: float = 0.999,
                 **geometry_kwargs):
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.output_scale = output_scale
        layers = synthesis_geometry(img_resolution, img_channels, **geometry_kwargs)
        self.num_ws = len(layers) + 1   # one w for the input, one per layer

        self.input = SynthesisInput(w_dim, layers[0].src)
        self.layer_names = []
        for k, geometry in enumerate(layers):
            name = f'L{k}_{geometry.dst.size}_{geometry.dst.channels}'
            self.add_module(name, SynthesisLayer(
                w_dim, geometry, use_fp16=geometry.dst.rate * 2 ** num_fp16_res > img_resolution,
                conv_clamp=conv_clamp, magnitude_ema_beta=magnitude_ema_beta))
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, **layer_kwargs) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f'expected ws of shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}')
        w_input, *w_layers = ws.to(torch.float32).unbind(dim=1)
        x = self.input(w_input)
        for name, w in zip(self.layer_names, w_layers):
            x = getattr(self, name)(x, w, **layer_kwargs)
        return (x * self.output_scale if self.output_scale != 1 else x).to(torch.float32)

    def style_layers(self) -> list[StyleLayer]:
        """Every layer with the ws row it reads (row 0 drives the Fourier input, whose affine outputs a rotation
        and translation rather than channel styles, so it is not listed). No layer is tied to a resolution:
        each works in the final image's frame, so each is given the image resolution."""
        return [StyleLayer(k + 1, name, getattr(self, name), int(self.img_resolution), bool(getattr(self, name).is_torgb))
                for k, name in enumerate(self.layer_names)]


@records_init_kwargs
class Generator(MappedGenerator):
    """StyleGAN3 generator: G(z, c) = synthesis(mapping(z, c))."""

    family = 'stylegan3'

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, **synthesis_kwargs):
        synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                     **synthesis_kwargs)
        super().__init__(synthesis, z_dim=z_dim, c_dim=c_dim, mapping_kwargs={'num_layers': 2, **(mapping_kwargs or {})})
