"""StyleGAN3's filters, designed in NumPy, against scipy (the library NVIDIA's configs design them with)."""
import numpy as np
import pytest
import scipy.signal
import scipy.special
import torch

from networks.filter_design import bessel_j1, kaiser_beta, lowpass_taps, radial_lowpass_taps
from networks.stylegan3 import design_lowpass_filter, synthesis_geometry


@pytest.mark.parametrize('numtaps,width', [(2, 0.1), (6, 0.3), (12, 0.05), (24, 0.5), (48, 0.01), (100, 0.4)])
def test_kaiser_beta_matches_scipy(numtaps, width):
    assert kaiser_beta(numtaps, width) == pytest.approx(
        scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width)), rel=1e-14, abs=0)


def test_bessel_j1_matches_scipy_on_both_sides_of_the_switch_to_the_expansion():
    x = np.concatenate([np.linspace(0, 40, 40001), np.linspace(40, 5000, 5001), -np.linspace(0, 30, 301)])
    assert np.abs(bessel_j1(x) - scipy.special.j1(x)).max() < 1e-14


@pytest.mark.parametrize('numtaps,cutoff,width,fs', [(6, 2, 1.3, 16), (12, 10.1, 6.2, 64), (24, 64, 16, 256),
                                                      (7, 3, 2, 20), (48, 100, 3, 256)])
def test_lowpass_taps_match_scipy_firwin(numtaps, cutoff, width, fs):
    ours = lowpass_taps(numtaps, cutoff=cutoff, width=width, fs=fs)
    assert np.abs(ours - scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)).max() < 1e-15


def scipy_radial(numtaps, cutoff, width, fs):
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(t, t))
    f = scipy.special.j1(2 * cutoff * np.pi * r) / (np.pi * r)
    w = scipy.signal.get_window(('kaiser', scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))),
                                numtaps, fftbins=False)
    f = f * np.outer(w, w)
    return f / f.sum()


@pytest.mark.parametrize('numtaps,cutoff,width,fs', [(12, 10.1, 6.2, 64), (24, 64, 16, 256), (48, 100, 3, 256)])
def test_radial_taps_match_scipy(numtaps, cutoff, width, fs):
    assert np.abs(radial_lowpass_taps(numtaps, cutoff, width, fs) - scipy_radial(numtaps, cutoff, width, fs)).max() < 1e-14


@pytest.mark.parametrize('resolution', [64, 256, 1024])
@pytest.mark.parametrize('radial', [False, True])
def test_every_filter_of_the_networks_is_scipys_to_the_last_float32_bit(resolution, radial):
    """The float32 buffers a generator registers: identical to the ones scipy's filters would give."""
    compared = 0
    for g in synthesis_geometry(resolution, 3, use_radial_filters=radial, filter_size=6, lrelu_upsampling=2):
        for numtaps, band, is_radial in ((g.up_taps, g.src, False), (g.down_taps, g.dst, g.radial)):
            ours = design_lowpass_filter(numtaps, cutoff=band.cutoff, width=band.half_width * 2, fs=g.inner_rate,
                                         radial=is_radial)
            if ours is None:
                continue
            args = (numtaps, band.cutoff, band.half_width * 2, g.inner_rate)
            theirs = scipy_radial(*args) if is_radial else \
                scipy.signal.firwin(numtaps=numtaps, cutoff=args[1], width=args[2], fs=args[3])
            assert torch.equal(ours, torch.as_tensor(theirs, dtype=torch.float32)), (g, numtaps, is_radial)
            compared += 1
    assert compared >= 20


def test_filter_design_does_not_import_scipy():
    import subprocess
    import sys
    code = 'import sys, networks.stylegan3; print([m for m in sys.modules if m.startswith("scipy")])'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'
