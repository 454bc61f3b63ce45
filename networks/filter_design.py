"""Kaiser-windowed low-pass filters for StyleGAN3's layers, in NumPy.

The formulas are the textbook ones that NVIDIA's configs reach through scipy.signal (Kaiser's
attenuation and beta formulas, the windowed sinc normalised to unit DC gain); tests/test_filter_design.py
holds them to scipy within float64 rounding. They are written here because importing scipy.signal takes
about a second, nearly as long as importing torch, and every script that loads a generator would pay it.
The radial jinc takes scipy's own Bessel function J1.
"""
from __future__ import annotations

import numpy as np


def kaiser_beta(numtaps: int, width: float) -> float:
    """The Kaiser window's beta for `numtaps` taps and a transition `width` as a fraction of Nyquist."""
    atten = 2.285 * (numtaps - 1) * np.pi * width + 7.95   # the stopband attenuation reached, in dB
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def lowpass_taps(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """1-D low-pass: a sinc at `cutoff` (Hz at sampling rate `fs`) times a Kaiser window, summing to 1."""
    nyquist = fs / 2
    t = np.arange(numtaps) - (numtaps - 1) / 2
    taps = cutoff / nyquist * np.sinc(cutoff / nyquist * t)
    taps = taps * np.kaiser(numtaps, kaiser_beta(numtaps, width / nyquist))
    return taps / taps.sum()


def radial_lowpass_taps(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """2-D low-pass with a disc passband: the jinc J1(2 pi fc r) / (pi r) times a separable Kaiser window."""
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(t, t))
    # Imported here, not at the top: scipy.special costs 0.21 s (-X importtime, after numpy and torch, whose
    # import takes 0.72 s), which only StyleGAN3-R, the one config with radial filters, needs to pay.
    import scipy.special
    taps = scipy.special.j1(2 * np.pi * cutoff * r) / (np.pi * r)
    window = np.kaiser(numtaps, kaiser_beta(numtaps, width / (fs / 2)))
    taps = taps * np.outer(window, window)
    return taps / taps.sum()
