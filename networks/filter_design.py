"""Kaiser-windowed low-pass filters for StyleGAN3's layers, in NumPy.

The formulas are the textbook ones that NVIDIA's configs reach through scipy.signal (Kaiser's
attenuation and beta formulas, the windowed sinc normalised to unit DC gain) and scipy.special (the
Bessel function J1 of the radial jinc); tests/test_filter_design.py holds them to scipy within float64
rounding. They are written here because importing scipy.signal takes about a second, nearly as long
as importing torch, and every script that loads a generator would pay it. scipy.special alone (for J1)
still costs 0.21 s on an idle 2-core machine (-X importtime, after numpy and torch, whose import takes
0.72 s; 0.32 of 1.4 s under load), and importing it only where StyleGAN3-R designs its radial filters
would make loading such a snapshot import a module, which the snapshot fuzz test's canary rightly
refuses (no load imports anything): so J1 is evaluated here too.
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


_ASYMPTOTIC_FROM = 20.0   # |x| from which Hankel's expansion is as exact as float64 (10 terms each)


def _j1_integral(x: np.ndarray) -> np.ndarray:
    """Bessel's integral (1/pi) * integral over [0, pi] of cos(t - x sin t) dt, for |x| < 20: its smooth
    periodic integrand the midpoint rule integrates geometrically fast once it has more nodes than |x|."""
    nodes = int(_ASYMPTOTIC_FROM) + 32
    total = np.zeros_like(x)
    for t in (np.arange(nodes) + 0.5) * (np.pi / nodes):
        total += np.cos(t - x * np.sin(t))
    return total / nodes


def _j1_hankel(x: np.ndarray) -> np.ndarray:
    """Hankel's expansion sqrt(2 / (pi x)) * (P cos(x - 3 pi / 4) - Q sin(x - 3 pi / 4)), for x >= 20."""
    p, q, coef = np.zeros_like(x), np.zeros_like(x), 1.0
    for k in range(20):   # coef = a_k(1) = prod_{j<=k} (4 - (2j - 1)^2) / (k! 8^k)
        term = (-1) ** (k // 2) * coef / x ** k
        if k % 2:
            q += term
        else:
            p += term
        coef *= (4 - (2 * k + 1) ** 2) / (8 * (k + 1))
    phase = x - 0.75 * np.pi
    return np.sqrt(2 / (np.pi * x)) * (p * np.cos(phase) - q * np.sin(phase))


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """J1(x) to float64 accuracy (about 1e-16 against scipy's): Bessel's integral below |x| = 20,
    Hankel's asymptotic expansion from there; J1 is odd."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    near = ax < _ASYMPTOTIC_FROM
    out = np.empty_like(ax)
    out[near] = _j1_integral(ax[near])
    out[~near] = _j1_hankel(ax[~near])
    return np.sign(x) * out


def radial_lowpass_taps(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """2-D low-pass with a disc passband: the jinc J1(2 pi fc r) / (pi r) times a separable Kaiser window."""
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(t, t))
    taps = bessel_j1(2 * np.pi * cutoff * r) / (np.pi * r)
    window = np.kaiser(numtaps, kaiser_beta(numtaps, width / (fs / 2)))
    taps = taps * np.outer(window, window)
    return taps / taps.sum()
