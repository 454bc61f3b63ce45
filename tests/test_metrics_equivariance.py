"""EQ-T / EQ-T_frac / EQ-R: the pixel-space transforms, and PSNRs of toy networks with known equivariance."""
import math

import pytest
import torch

from metrics.api import calc_metric
from metrics.equivariance import (bandlimit_filter, pseudo_rotate, rotate_fractional, rotation_matrix,
                                  translate_fractional, translate_integer)
from metrics import MetricError
from helpers.metrics_toys import FourierGenerator


def sinusoid(res, fx, fy, phase=0.3, shift=(0.0, 0.0)):
    """cos(2 pi (f . (p - shift) + phase)) at pixel centres p, in image-width units."""
    c = (torch.arange(res, dtype=torch.float64) + 0.5) / res - 0.5
    y, x = torch.meshgrid(c, c, indexing='ij')
    return torch.cos(2 * math.pi * (fx * (x - shift[0]) + fy * (y - shift[1]) + phase))[None, None].float()


def test_integer_translation_moves_content_and_masks_the_uncovered_border():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out, mask = translate_integer(x, torch.tensor(2 / 8), torch.tensor(-1 / 8))
    assert torch.equal(out[:, :, 0:7, 2:], x[:, :, 1:8, 0:6])
    assert mask[0, 0].sum() == 7 * 6 and mask[0, 0, 7].sum() == 0 and mask[0, 0, :, :2].sum() == 0


def test_fractional_translation_of_a_bandlimited_signal_is_the_shifted_signal():
    img = sinusoid(32, fx=3, fy=-2)
    out, mask = translate_fractional(img, torch.tensor(0.037), torch.tensor(-0.061))
    expected = sinusoid(32, fx=3, fy=-2, shift=(0.037, -0.061))
    assert mask.sum() > 0.5 * mask.numel()
    assert ((out - expected) * mask).abs().max() < 2e-2
    # A whole-pixel shift takes the integer path's values exactly (the kernel becomes a unit impulse).
    whole, whole_mask = translate_integer(img, torch.tensor(3 / 32), torch.tensor(-2 / 32))
    frac, frac_mask = translate_fractional(img, torch.tensor(3 / 32), torch.tensor(-2 / 32))
    assert torch.allclose(frac * frac_mask, whole * frac_mask, atol=1e-6) and (frac_mask <= whole_mask).all()


def test_bandlimit_filter_polyphase_components_have_unit_gain():
    f = bandlimit_filter(rotation_matrix(0.4), a=3, amax=6, up=4)
    assert f.shape == (47, 47)
    padded = torch.nn.functional.pad(f, [0, 1, 0, 1]).reshape(12, 4, 12, 4)
    assert torch.allclose(padded.sum(dim=[0, 2]), torch.full([4, 4], 1 / 16), atol=1e-6)
    assert torch.allclose(f, f.flip([0, 1]), atol=1e-6)   # zero phase


def test_rotation_of_a_bandlimited_signal_is_the_rotated_signal():
    angle = 0.5
    img = sinusoid(48, fx=2, fy=1)
    out, mask = rotate_fractional(img, torch.tensor(angle))
    # The output at p samples the input at T p, T = [[cos, -sin], [sin, cos]]: frequency f becomes T^t f.
    fx, fy = 2 * math.cos(angle) + 1 * math.sin(angle), -2 * math.sin(angle) + 1 * math.cos(angle)
    expected = sinusoid(48, fx, fy)
    pseudo, pseudo_mask = pseudo_rotate(expected, torch.tensor(angle))
    m = mask * pseudo_mask
    assert m.sum() > 0.2 * m.numel()
    assert ((out - expected) * m).abs().max() < 5e-2 and ((pseudo - expected) * m).abs().max() < 5e-2


def eq(metric, G, **kw):
    return calc_metric(metric, G, progress=False, **kw)['results'][metric]


def test_exactly_equivariant_toy_network_has_near_infinite_eqt_psnr():
    G = FourierGenerator(res=32, max_freq=4)
    state = G.synthesis.input.transform.clone()
    assert eq('eqt8_int', G) > 100            # float32 round-off at most (typically exactly inf)
    assert eq('eqt8_frac', G) > 45            # interpolation of a band-limited image: good, not exact
    assert eq('eqr8', G) > 45
    assert torch.equal(G.synthesis.input.transform, state)   # the caller's generator is not touched


def test_a_fixed_pixel_pattern_breaks_equivariance():
    broken = FourierGenerator(res=32, max_freq=4, pixel_pattern=0.5)
    assert eq('eqt8_int', broken) < 25 and eq('eqr8', broken) < 25


def test_equivariance_needs_a_stylegan3_generator():
    from networks import stylegan2
    G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                            mapping_kwargs=dict(num_layers=1), channel_base=32, channel_max=8)
    with pytest.raises(MetricError, match='StyleGAN3'):
        eq('eqt4_int', G)


def test_real_stylegan3_generator_gives_finite_deterministic_psnr():
    from networks import stylegan3
    torch.manual_seed(0)
    G = stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128,
                            channel_max=16, num_layers=4, num_critical=1, margin_size=2)
    a = eq('eqt4_int', G)
    assert 5 < a < 100 and eq('eqt4_int', G) == a
