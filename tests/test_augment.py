"""Tests for the ADA augmentation pipeline and its adaptive-p controller (training/augment.py)."""
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from training.augment import AdaptiveP, AugmentPipe, AUGMENT_PRESETS, augment_kwargs_for, subband_filter_bank

# A checkout of NVlabs/stylegan3 to compare with; none by default (skip reasons name the variable, no path).
NVIDIA_REPO = pathlib.Path(os.environ['SG3C_NVIDIA_REPO']) if os.environ.get('SG3C_NVIDIA_REPO') else None
ATOL = 2e-5


def make_pipe(p: float = 1.0, **kwargs) -> AugmentPipe:
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    return pipe


def random_images(n: int, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand([n, c, h, w], generator=g) * 2 - 1


def run(pipe: AugmentPipe, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return pipe(x)


def blob(n: int, size: int = 32, sigma: float = 4.0) -> torch.Tensor:
    """Centred isotropic Gaussian, identical in every image and channel."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    img = torch.exp(-(r[None, :] ** 2 + r[:, None] ** 2) / (2 * sigma ** 2))
    return img.expand(n, 3, size, size).clone()


def centroid_and_spread(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image intensity centroid (x, y) relative to the centre and second moments (xx, yy)."""
    n, _, h, w = img.shape
    m = img[:, 0]
    ys = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    mass = m.sum(dim=(1, 2))
    cx = (m * xs[None, None, :]).sum(dim=(1, 2)) / mass
    cy = (m * ys[None, :, None]).sum(dim=(1, 2)) / mass
    sxx = (m * xs[None, None, :] ** 2).sum(dim=(1, 2)) / mass
    syy = (m * ys[None, :, None] ** 2).sum(dim=(1, 2)) / mass
    return torch.stack([cx, cy], 1), torch.stack([sxx, syy], 1)


# -- presets and construction ----------------------------------------------------------------------

def test_presets_match_nvidia_vocabulary():
    assert set(AUGMENT_PRESETS) == {'blit', 'geom', 'color', 'filter', 'noise', 'cutout',
                                    'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc'}
    assert augment_kwargs_for('bgc') == {k: 1.0 for k in ['xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso',
                                                           'xfrac', 'brightness', 'contrast', 'lumaflip', 'hue',
                                                           'saturation']}
    assert augment_kwargs_for('bgcfnc') == {**augment_kwargs_for('bgc'), 'imgfilter': 1.0, 'noise': 1.0, 'cutout': 1.0}
    assert augment_kwargs_for('filter') == {'imgfilter': 1.0}
    for name in AUGMENT_PRESETS:
        AugmentPipe(**augment_kwargs_for(name))
    with pytest.raises(ValueError, match='bgx'):
        augment_kwargs_for('bgx')


def test_snapshot_layout_round_trip():
    # An official snapshot records every constructor argument; rebuilding from them and loading the
    # buffers must work strictly.
    official_kwargs = dict(xflip=1, rotate90=1, xint=1, xint_max=0.125, scale=1, rotate=1, aniso=1, xfrac=1,
                           scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125, brightness=1, contrast=1,
                           lumaflip=1, hue=1, saturation=1, brightness_std=0.2, contrast_std=0.5, hue_max=1,
                           saturation_std=1, imgfilter=0, imgfilter_bands=[1, 1, 1, 1], imgfilter_std=1, noise=0,
                           cutout=0, noise_std=0.1, cutout_size=0.5)
    src = make_pipe(0.375, **official_kwargs)
    state = src.state_dict()
    assert set(state) == {'p', 'Hz_geom', 'Hz_fbank'}
    assert state['p'].shape == () and state['Hz_geom'].shape == (12,) and state['Hz_fbank'].shape == (4, 43)
    assert src.init_kwargs == official_kwargs
    dst = AugmentPipe(**src.init_kwargs)
    dst.load_state_dict(state, strict=True)
    assert float(dst.p) == 0.375
    x = random_images(3)
    assert torch.equal(run(src, x, 5), run(dst, x, 5))


def test_filters_are_perfect_reconstruction():
    bank = subband_filter_bank().double()
    taps = bank.shape[1]
    impulse = torch.zeros(taps, dtype=torch.float64)
    impulse[taps // 2] = 1
    torch.testing.assert_close(bank.sum(0), impulse, atol=1e-6, rtol=0)
    assert abs(bank[0].sum().item() - 1) < 1e-6 and bank[1:].sum(1).abs().max() < 1e-6
    torch.testing.assert_close(bank, bank.flip(1))     # zero phase
    geom = AugmentPipe().Hz_geom.double() * math.sqrt(2)
    # Orthogonal wavelet: unit energy, orthogonal to its even shifts.
    for shift in range(0, 12, 2):
        dot = (geom[shift:] * geom[:12 - shift]).sum().item()
        assert abs(dot - (1.0 if shift == 0 else 0.0)) < 1e-6


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match='imgfilter_bands'):
        AugmentPipe(imgfilter=1, imgfilter_bands=[1, 1])
    with pytest.raises(ValueError, match='1 or 3 channels'):
        make_pipe(brightness=1)(torch.zeros(2, 2, 16, 16))
    with pytest.raises(ValueError, match='imgfilter needs'):
        make_pipe(imgfilter=1)(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r'\[N, C, H, W\]'):
        make_pipe(xflip=1)(torch.zeros(3, 16, 16))


# -- behaviour of individual transforms ------------------------------------------------------------

@pytest.mark.parametrize('preset', ['bgc', 'bgcfnc'])
def test_p_zero_is_identity(preset):
    x = random_images(4, h=32, w=24)
    y = run(make_pipe(0.0, **augment_kwargs_for(preset)), x)
    torch.testing.assert_close(y, x, atol=ATOL, rtol=0)


def test_deterministic_given_seed():
    pipe = make_pipe(0.7, **augment_kwargs_for('bgcfnc'))
    x = random_images(4, h=32, w=32)
    assert torch.equal(run(pipe, x, 11), run(pipe, x, 11))
    assert not torch.allclose(run(pipe, x, 11), run(pipe, x, 12))


def smooth_images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Band-limited random images (bicubic blow-ups of 4x4 noise)."""
    coarse = random_images(n, h=4, w=4, seed=seed)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode='bicubic', align_corners=False)


# Blits run through the same wavelet resampler as the other geometric transforms (as in NVIDIA's
# pipeline). The Symlet-6 filter is not quite symmetric, so a mirror or quarter turn comes out
# displaced by about 0.1 px: exact up to that on smooth images, only roughly so on pixel noise.
BLIT_TOL = 0.1


def test_xflip_flips():
    x = smooth_images(16)
    y = run(make_pipe(1.0, xflip=1), x)
    err_flip = (y - x.flip(-1)).flatten(1).abs().amax(1)
    err_same = (y - x).flatten(1).abs().amax(1)
    flipped, same = err_flip < BLIT_TOL, err_same < ATOL
    assert bool((flipped ^ same).all()) and flipped.any() and same.any()
    assert err_same[flipped].min() > 5 * BLIT_TOL


def test_rotate90_rotates():
    x = smooth_images(24)
    y = run(make_pipe(1.0, rotate90=1), x)
    seen = set()
    for i in range(len(x)):
        errs = torch.stack([(y[i] - torch.rot90(x[i], k, dims=(1, 2))).abs().max() for k in range(4)])
        k = int(errs.argmin())
        assert errs[k] < (ATOL if k == 0 else BLIT_TOL), f'image {i} is not a quarter-turn of its input: {errs}'
        assert errs.sort().values[1] > 5 * BLIT_TOL
        seen.add(k)
    assert seen == {0, 1, 2, 3}
    # Counter-clockwise on screen for k = 1 in torch.rot90 terms; a blob off-centre tracks the turn.
    x = torch.zeros(32, 1, 16, 16)
    x[:, :, 3:6, 10:13] = 1
    x = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, [1, 1, 1, 1], mode='replicate'), 3, 1)
    y = run(make_pipe(1.0, rotate90=1), x)
    for i in range(len(x)):
        ks = [k for k in range(4) if (y[i] - torch.rot90(x[i], k, dims=(1, 2))).abs().max() < BLIT_TOL]
        assert len(ks) == 1


def test_integer_translation_moves_whole_pixels():
    x = random_images(12, h=16, w=20)
    y = run(make_pipe(1.0, xint=1, xint_max=0.125), x)
    m = 3   # beyond the largest shift (round(0.125 * 20) = 2 px); the border is reflection-filled
    shifts = set()
    for i in range(len(x)):
        found = [(dx, dy) for dx in range(-m, m + 1) for dy in range(-m, m + 1)
                 if (y[i, :, m:-m, m:-m] - x[i, :, m + dy:16 - m + dy, m + dx:20 - m + dx]).abs().max() < ATOL]
        assert len(found) == 1 and max(map(abs, found[0])) <= 2, f'image {i}: {found}'
        shifts.add(found[0])
    assert len(shifts) > 3


def test_geometry_keeps_constant_images_constant():
    x = torch.full([6, 3, 16, 16], 0.3)
    y = run(make_pipe(1.0, **augment_kwargs_for('bg')), x)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_rotation_is_about_the_centre():
    x = blob(8)
    y = run(make_pipe(1.0, rotate=1), x)
    # A centred round blob looks the same after any rotation about the centre.
    assert (y - x).abs().max() < 0.1
    assert centroid_and_spread(y)[0].abs().max() < 2 * BLIT_TOL


def test_isotropic_scaling_keeps_centre_and_shape():
    x = blob(16)
    y = run(make_pipe(1.0, scale=1, scale_std=0.3), x)
    centre, spread = centroid_and_spread(y)
    assert centre.abs().max() < 0.05
    torch.testing.assert_close(spread[:, 0], spread[:, 1], rtol=1e-3, atol=0)
    ratio = (spread[:, 0] / centroid_and_spread(x)[1][:, 0]).sqrt()   # the zoom factor
    assert ratio.std() > 0.05 and ratio.min() > 0.3 and ratio.max() < 3


def test_anisotropic_scaling_preserves_area():
    x = blob(16, size=48, sigma=3.5)     # room for a 1.7x stretch, enough pixels for a 1.7x squeeze
    y = run(make_pipe(1.0, aniso=1), x)
    centre, spread = centroid_and_spread(y)
    base = centroid_and_spread(x)[1]
    assert centre.abs().max() < 0.05
    # x is stretched by s and y by 1/s: the product of the spreads stays put, their ratio moves.
    torch.testing.assert_close(spread.prod(1), base.prod(1), rtol=2e-2, atol=0)
    assert (spread[:, 0] / spread[:, 1]).log().abs().max() > 0.1


def test_fractional_translation_moves_without_reshaping():
    x = blob(16, sigma=3.0)
    y = run(make_pipe(1.0, xfrac=1, xfrac_std=0.05), x)
    centre, spread = centroid_and_spread(y)
    moved = centre.norm(dim=1) > 0.05
    assert moved.sum() >= 12
    var = spread - centre.square()     # central moments
    torch.testing.assert_close(var, centroid_and_spread(x)[1], rtol=2e-2, atol=0)
    # Fractional: not all shifts are whole pixels.
    assert ((centre - centre.round()).abs() > 0.05).any()


def test_probability_follows_p():
    x = torch.zeros(2000, 1, 8, 8)
    x[:, :, :, :4] = 1      # left half bright: a flip is obvious
    y = run(make_pipe(0.5, xflip=1), x)
    flipped = (y[:, 0, :, 4:].mean(dim=(1, 2)) > 0.5).float().mean().item()
    # x-flip picks "mirror" half of the time when it fires, and fires with probability p.
    assert abs(flipped - 0.25) < 0.04


def luma(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=1, keepdim=True)


def test_brightness_adds_one_offset_per_image():
    x = random_images(8)
    d = run(make_pipe(1.0, brightness=1), x) - x
    torch.testing.assert_close(d, d[:, :1, :1, :1].expand_as(d), atol=ATOL, rtol=0)
    assert d[:, 0, 0, 0].abs().min() > 0 and d[:, 0, 0, 0].std() > 0.05


def test_contrast_scales_about_zero():
    x = random_images(8)
    y = run(make_pipe(1.0, contrast=1), x)
    c = (y * x).sum(dim=(1, 2, 3)) / x.square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(y, x * c.reshape(-1, 1, 1, 1), atol=ATOL, rtol=0)
    assert c.min() > 0 and c.log2().std() > 0.1


def test_lumaflip_negates_luma_and_keeps_chroma():
    x = random_images(16)
    y = run(make_pipe(1.0, lumaflip=1), x)
    torch.testing.assert_close(y - luma(y), x - luma(x), atol=ATOL, rtol=0)
    kept = (luma(y) - luma(x)).flatten(1).abs().amax(1) < ATOL
    negated = (luma(y) + luma(x)).flatten(1).abs().amax(1) < ATOL
    assert bool((kept | negated).all()) and kept.any() and negated.any()


def test_hue_rotation_keeps_luma_and_chroma_length():
    x = random_images(8)
    y = run(make_pipe(1.0, hue=1), x)
    torch.testing.assert_close(luma(y), luma(x), atol=ATOL, rtol=0)
    torch.testing.assert_close((y - luma(y)).norm(dim=1), (x - luma(x)).norm(dim=1), atol=ATOL, rtol=0)
    assert (y - x).abs().max() > 0.1


def test_saturation_scales_chroma_only():
    x = random_images(8)
    y = run(make_pipe(1.0, saturation=1), x)
    torch.testing.assert_close(luma(y), luma(x), atol=ATOL, rtol=0)
    cx, cy = x - luma(x), y - luma(y)
    s = (cy * cx).sum(dim=(1, 2, 3)) / cx.square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(cy, cx * s.reshape(-1, 1, 1, 1), atol=ATOL, rtol=0)
    assert s.min() > 0 and s.log2().std() > 0.3


def test_greyscale_colour_transforms():
    x = random_images(16, c=1)
    y = run(make_pipe(1.0, lumaflip=1), x)
    same = (y - x).flatten(1).abs().amax(1) < ATOL
    negated = (y + x).flatten(1).abs().amax(1) < ATOL
    assert bool((same | negated).all()) and same.any() and negated.any()
    y = run(make_pipe(1.0, **augment_kwargs_for('color')), x)     # hue/saturation are skipped
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_imgfilter_with_unit_gains_is_identity():
    x = random_images(3, h=24, w=32)
    y = run(make_pipe(1.0, imgfilter=1, imgfilter_std=0), x)
    torch.testing.assert_close(y, x, atol=ATOL, rtol=0)
    y = run(make_pipe(1.0, imgfilter=1), x)
    assert (y - x).abs().max() > 0.1


def test_imgfilter_band_gain_and_power_normalisation():
    # With only band 0 (the coarsest octave) enabled, a flat image is scaled by t/N per axis and a
    # checkerboard (all in the finest band) by 1/N, where N renormalises the expected power:
    # (10/13) (t/N)^2 + (3/13) (1/N)^2 = 1. The filter runs along x and then y, so 2-D gains square.
    flat = torch.ones(6, 1, 24, 24)
    checker = ((torch.arange(24)[:, None] + torch.arange(24)[None, :]) % 2 * 2 - 1).float().expand(6, 1, 24, 24)
    pipe = make_pipe(1.0, imgfilter=1, imgfilter_bands=[1, 0, 0, 0])
    y_flat, y_checker = run(pipe, flat, 3), run(pipe, checker, 3)
    torch.testing.assert_close(y_flat, y_flat[:, :, :1, :1].expand_as(y_flat), atol=1e-5, rtol=0)
    gain_checker = (y_checker * checker)[:, 0, 0, 0]
    torch.testing.assert_close(y_checker, checker * gain_checker.reshape(-1, 1, 1, 1), atol=1e-5, rtol=0)
    axis_flat = y_flat[:, 0, 0, 0].sqrt()
    axis_checker = gain_checker.sqrt()
    torch.testing.assert_close(10 / 13 * axis_flat ** 2 + 3 / 13 * axis_checker ** 2, torch.ones(6), atol=1e-4, rtol=0)
    assert (axis_flat / axis_checker).log2().abs().max() > 0.1


def test_noise_and_cutout():
    x = random_images(8)
    y = run(make_pipe(1.0, noise=1, noise_std=0.1), x)
    sd = (y - x).flatten(1).std(1)
    assert sd.max() > 0.01 and sd.max() < 0.6
    y = run(make_pipe(1.0, cutout=1, cutout_size=0.5), x)
    for i in range(len(x)):
        cut = (y[i] != x[i]).any(0)
        assert torch.equal(y[i][:, cut], torch.zeros_like(y[i][:, cut]))
        rows, cols = cut.any(1).nonzero(), cut.any(0).nonzero()
        # One axis-aligned rectangle of at most half the side, clipped by the border.
        assert int(cut.sum()) == len(rows) * len(cols) and 0 < len(rows) <= 8 and 0 < len(cols) <= 8


# -- gradients -------------------------------------------------------------------------------------

def test_gradients_reach_the_input_with_double_backward():
    # The R1 penalty differentiates D(augment(reals)) w.r.t. reals and then back-propagates that.
    pipe = make_pipe(1.0, **augment_kwargs_for('bgcfnc'))
    conv = torch.nn.Conv2d(3, 4, 3)
    x = random_images(2, h=24, w=24).requires_grad_(True)
    torch.manual_seed(0)
    score = conv(pipe(x)).square().sum()
    (grad,) = torch.autograd.grad(score, x, create_graph=True)
    assert grad.abs().sum() > 0
    grad.square().sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0

    x64 = random_images(1, h=24, w=24).double().requires_grad_(True)
    fn = lambda t: run(pipe, t, 1)  # noqa: E731  (fixed seed: the same augmentation on every call)
    assert torch.autograd.gradcheck(fn, (x64,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x64,), fast_mode=True)


# -- adaptive controller ---------------------------------------------------------------------------

def test_adaptive_p_rises_when_d_overfits_and_falls_otherwise():
    pipe = make_pipe(0.0)
    ada = AdaptiveP(pipe, batch_size=8, target=0.6, interval=4, speed_kimg=0.1)
    assert ada.step_size == pytest.approx(8 * 4 / 100)
    confident = torch.ones(8, 1)
    for batch in range(1, 9):
        ada.observe(confident)          # rt = 1 > 0.6
        assert ada.step() == (batch % 4 == 0)
    assert float(pipe.p) == pytest.approx(0.64)
    assert float(ada.last_rt) == 1.0
    mixed = torch.tensor([1.0] * 5 + [-1.0] * 3)  # rt = 0.25 < 0.6
    for _ in range(4):
        ada.observe(mixed)
        ada.step()
    assert float(pipe.p) == pytest.approx(0.32)
    for _ in range(12):
        ada.observe(-confident)
        ada.step()
    assert float(pipe.p) == 0.0          # clamped at zero


def test_adaptive_p_without_observations_leaves_p():
    pipe = make_pipe(0.5)
    ada = AdaptiveP(pipe, batch_size=4, interval=2)
    ada.step(), ada.step()
    assert float(pipe.p) == 0.5 and math.isnan(float(ada.last_rt))


def test_adaptive_p_resumes_exactly():
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(8, generator=g) + 0.4 for _ in range(14)]
    pipe_a = make_pipe(0.2)
    ada_a = AdaptiveP(pipe_a, batch_size=8, interval=4, speed_kimg=0.5)
    pipe_b = make_pipe(0.0)
    ada_b = AdaptiveP(pipe_b, batch_size=8, interval=4, speed_kimg=0.5)
    for i, lg in enumerate(logits):
        if i == 6:      # mid-interval: the partial statistics must carry over
            ada_b.load_state_dict(json.loads(json.dumps(ada_a.state_dict())))
            pipe_b.load_state_dict(pipe_a.state_dict())
        ada_a.observe(lg)
        ada_a.step()
        if i >= 6:
            ada_b.observe(lg)
            ada_b.step()
            assert float(pipe_b.p) == float(pipe_a.p)
    assert float(pipe_a.p) != 0.2


# -- parity with NVIDIA's implementation (only where their code is checked out) -----------------------

_NVIDIA_RUNNER = r'''
import json, pickle, re, sys, types
repo, out_dir, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, repo)
try:
    import pkg_resources  # noqa: F401  (their gradfix modules import it; recent setuptools dropped it)
except ImportError:
    shim = types.ModuleType('pkg_resources')
    shim.parse_version = lambda v: tuple(int(d) for d in re.findall(r'\d+', v)[:3])
    sys.modules['pkg_resources'] = shim
import torch
from training.augment import AugmentPipe
results = {}
for name, (kwargs, p, shape, seed) in cases.items():
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    torch.manual_seed(seed)
    results[name] = (x, pipe(x))
    if name == 'snapshot':    # as their training loop pickles it
        with open(out_dir + '/snapshot.pkl', 'wb') as f:
            pickle.dump(dict(G=None, D=None, G_ema=None, augment_pipe=pipe.train().requires_grad_(False),
                             training_set_kwargs=None), f)
results['buffers'] = dict(AugmentPipe().state_dict())
torch.save(results, out_dir + '/results.pt')
'''

NVIDIA_CASES = {f'{name}-alone': ({name: 1}, 1.0, [3, 3, 24, 24], i) for i, name in enumerate(
    ['xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac', 'brightness', 'contrast', 'lumaflip',
     'hue', 'saturation', 'imgfilter', 'noise', 'cutout'])}
NVIDIA_CASES.update({
    'bgc-p0.4': (augment_kwargs_for('bgc'), 0.4, [8, 3, 16, 16], 20),
    'bgcfnc-p0.8-nonsquare': (augment_kwargs_for('bgcfnc'), 0.8, [4, 3, 24, 32], 21),
    'bgc-grey': (augment_kwargs_for('bgc'), 0.9, [4, 1, 16, 16], 22),
    'snapshot': (dict(augment_kwargs_for('bgcf'), xint_max=0.2, hue_max=0.5, imgfilter_bands=[1, 0, 1, 0.5]),
                 0.45, [4, 3, 24, 24], 23),
})


@pytest.fixture(scope='module')
def nvidia_reference(tmp_path_factory) -> pathlib.Path:
    """Outputs of NVIDIA's AugmentPipe on NVIDIA_CASES (and one pickled pipe), from their checkout."""
    if NVIDIA_REPO is None:
        pytest.skip('set SG3C_NVIDIA_REPO to a checkout of NVlabs/stylegan3 to compare with its AugmentPipe')
    if not (NVIDIA_REPO / 'training' / 'augment.py').is_file():
        pytest.skip('$SG3C_NVIDIA_REPO holds no training/augment.py: point it at a checkout of NVlabs/stylegan3')
    out = tmp_path_factory.mktemp('nvidia_augment')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}   # their `training` package, not ours
    proc = subprocess.run([sys.executable, '-c', _NVIDIA_RUNNER, str(NVIDIA_REPO), str(out), json.dumps(NVIDIA_CASES)],
                          cwd=out, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ['no message'])[-1].replace(str(NVIDIA_REPO), '$SG3C_NVIDIA_REPO')
        pytest.skip(f'NVIDIA\'s code in $SG3C_NVIDIA_REPO did not run here ({last})')
    return out


def test_matches_nvidia_given_the_same_seed(nvidia_reference):
    theirs = torch.load(nvidia_reference / 'results.pt')
    for name, (kwargs, p, _, seed) in NVIDIA_CASES.items():
        x, expected = theirs[name]
        got = run(make_pipe(p, **kwargs), x, seed)
        scale = max(1.0, expected.abs().max().item())
        torch.testing.assert_close(got, expected, atol=1e-5 * scale, rtol=0, msg=lambda m: f'{name}: {m}')
    for key, value in theirs['buffers'].items():
        torch.testing.assert_close(AugmentPipe().state_dict()[key], value, atol=1e-7, rtol=0)


def test_official_pickled_pipe_loads_as_ours(nvidia_reference):
    snapshot = pytest.importorskip('networks.snapshot')
    pipe = snapshot.load_snapshot(str(nvidia_reference / 'snapshot.pkl'))['augment_pipe']
    assert isinstance(pipe, AugmentPipe)
    kwargs, p, _, seed = NVIDIA_CASES['snapshot']
    assert float(pipe.p) == pytest.approx(p) and pipe.xint_max == 0.2 and pipe.imgfilter_bands == [1, 0, 1, 0.5]
    x, expected = torch.load(nvidia_reference / 'results.pt')['snapshot']
    torch.testing.assert_close(run(pipe, x, seed), expected, atol=1e-5 * max(1.0, expected.abs().max().item()), rtol=0)


@pytest.mark.gpu
def test_runs_on_cuda():
    x = random_images(4, h=32, w=32).cuda()
    pipe = make_pipe(0.0, **augment_kwargs_for('bgcfnc')).cuda()
    torch.testing.assert_close(pipe(x), x, atol=ATOL, rtol=0)
    pipe.p.fill_(0.8)
    y = pipe(x)
    assert y.device == x.device and y.shape == x.shape and torch.isfinite(y).all()
    ada = AdaptiveP(pipe, batch_size=4, interval=1)
    ada.observe(torch.ones(4, 1, device='cuda'))
    assert ada.step() and float(pipe.p) > 0.8
