"""Perceptual path length against closed forms, with a linear generator and an identity 'LPIPS'."""
import numpy as np
import pytest
import torch

from metrics.api import calc_metric
from metrics.ppl import slerp, trimmed_mean
from metrics.standin import save_standin_detectors
from helpers.metrics_toys import LinearGenerator


@pytest.fixture(scope='module')
def detector_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('detectors'))
    save_standin_detectors(path)
    return path


def ppl(metric, G, detector_dir):
    return calc_metric(metric, G, detector_dir=detector_dir, progress=False)['results'][metric]


def trimmed_reference(samples):
    lo, hi = np.percentile(samples, 1, method='lower'), np.percentile(samples, 99, method='higher')
    return samples[(samples >= lo) & (samples <= hi)].mean()


def test_w_space_ppl_of_a_linear_generator(detector_dir):
    # image = A w with orthonormal A; the stand-in LPIPS embedding is (image + 1) * 127.5 / 255, so each
    # sample is |A (w1 - w0)|^2 / 4 = |z1 - z0|^2 / 4: a scaled chi-square with 64 degrees of freedom.
    G = LinearGenerator(z_dim=64, res=16)
    value = ppl('ppl2_wend_400', G, detector_dir)
    rng = np.random.default_rng(0)
    reference = trimmed_reference(np.square(rng.standard_normal((200000, 64)) * np.sqrt(2)).sum(1) / 4)
    assert value == pytest.approx(reference, rel=0.04)    # 400 samples: about 0.9% standard error


def test_z_space_ppl_follows_the_angle_between_latents(detector_dir):
    # slerp moves along the unit sphere: each sample is angle(z0, z1)^2 / 4.
    G = LinearGenerator(z_dim=64, res=16)
    value = ppl('ppl2_zend_400', G, detector_dir)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 100000, 64))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert value == pytest.approx(trimmed_reference(np.arccos(cos) ** 2 / 4), rel=0.04)


def test_legacy_crop_uses_the_centre_of_the_image(detector_dir):
    G = LinearGenerator(z_dim=32, res=16)
    # Rows 6..13 and columns 4..11 of each channel: E |A_crop (z1 - z0)|^2 / 4 = 2 |A_crop|_F^2 / 4.
    basis = G.synthesis.basis.T.reshape(3, 16, 16, 32)[:, 6:14, 4:12].reshape(-1, 32)
    expected = 2 * basis.square().sum().item() / 4
    assert ppl('ppl_wend_400', G, detector_dir) == pytest.approx(expected, rel=0.05)


def test_slerp_and_trimmed_mean():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    mid = slerp(a, b, torch.tensor([[0.5]]))
    assert torch.allclose(mid, torch.tensor([[2 ** -0.5, 2 ** -0.5]]))
    samples = np.concatenate([np.full(990, 1.0), np.full(5, -1000.0), np.full(5, 1000.0)])
    assert trimmed_mean(samples) == pytest.approx(1.0)
