"""Metric names -> computations, with NVIDIA's names and meanings and any sample count.

A count is written `<N>k` (thousands) or a plain number of images where the family allows it, so
`fid50k_full`, `fid2k_full` and `fid500_full` are all valid:

  fid<N>_full / fid<N>      FID; `_full` against every real image, otherwise against N reals (xflips allowed)
  fid_garments<N>[_full]    the same Fréchet distance on the garment classifier's features
                            (metrics/garment_classifier.py), not on Inception's: comparable only with itself
  kid<N>_full / kid<N>      KID (100 subsets of up to 1000); `_full` against up to 1M reals
  pr<N>k<K>_full / pr<N>k<K> precision and recall with K nearest neighbours (`_full`: up to 200k reals)
  ppl2_<z|w><full|end>      PPL without crop (NVIDIA's recommended `ppl2_wend`), 50k samples;
  ppl_<z|w><full|end>       the legacy PPL with the face crop; either with `_<N>` for another count
  eqt<N>_int, eqt<N>_frac   EQ-T, EQ-T_frac (StyleGAN3 generators)
  eqr<N>                    EQ-R (StyleGAN3 generators)
  is<N>                     Inception score (10 splits)
  ls, ls<N>                 linear separability (default 200k samples, as the paper; needs labels)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from .equivariance import run_equivariance
from .frechet import run_fid
from .inception_score import run_is
from .kernel import run_kid
from .options import MetricContext
from .ppl import run_ppl
from .precision_recall import run_pr
from .separability import run_ls

_COUNT = r'(\d+)(k?)'


@dataclass(frozen=True)
class Metric:
    name: str
    family: str                                   # fid kid pr ppl eq is ls
    compute: Callable[[MetricContext], dict]
    detectors: tuple[str, ...]                    # which detector files it needs

    def __call__(self, opts: MetricContext) -> dict:
        return self.compute(opts)


def _count(digits: str, k: str) -> int:
    return int(digits) * (1000 if k else 1)


def _fid(name: str, m: re.Match, detector: str = 'inception') -> Metric:
    n, full = _count(m[1], m[2]), bool(m[3])

    def run(opts):
        opts = opts.with_dataset(max_size=None, **({'xflip': False} if full else {}))
        return {name: run_fid(opts, max_real=None if full else n, num_gen=n, detector=detector)}
    return Metric(name, 'fid', run, (detector,))


def _fid_garments(name: str, m: re.Match) -> Metric:
    return _fid(name, m, detector='garments')


def _kid(name: str, m: re.Match) -> Metric:
    n, full = _count(m[1], m[2]), bool(m[3])

    def run(opts):
        opts = opts.with_dataset(max_size=None, **({'xflip': False} if full else {}))
        return {name: run_kid(opts, max_real=1000000 if full else n, num_gen=n, num_subsets=100,
                                  max_subset_size=1000)}
    return Metric(name, 'kid', run, ('inception',))


def _pr(name: str, m: re.Match) -> Metric:
    n, k, full = int(m[1]) * 1000, int(m[2]), bool(m[3])

    def run(opts):
        opts = opts.with_dataset(max_size=None, **({'xflip': False} if full else {}))
        precision, recall = run_pr(opts, max_real=200000 if full else n, num_gen=n, nhood_size=k)
        return {f'{name}_precision': precision, f'{name}_recall': recall}
    return Metric(name, 'pr', run, ('vgg16',))


def _ppl(name: str, m: re.Match) -> Metric:
    crop = m[1] != '2'
    n = _count(m[4], m[5]) if m[4] else 50000

    def run(opts):
        return {name: run_ppl(opts, num_samples=n, epsilon=1e-4, space=m[2], sampling=m[3], crop=crop, batch_size=2)}
    return Metric(name, 'ppl', run, ('vgg16',))


def _eqt(name: str, m: re.Match) -> Metric:
    n, kind = _count(m[1], m[2]), m[3]

    def run(opts):
        return {name: run_equivariance(opts, num_samples=n, batch_size=4, kinds=(kind,))[kind]}
    return Metric(name, 'eq', run, ())


def _eqr(name: str, m: re.Match) -> Metric:
    n = _count(m[1], m[2])

    def run(opts):
        return {name: run_equivariance(opts, num_samples=n, batch_size=4, kinds=('rot',))['rot']}
    return Metric(name, 'eq', run, ())


def _is(name: str, m: re.Match) -> Metric:
    n = _count(m[1], m[2])

    def run(opts):
        mean, std = run_is(opts.with_dataset(max_size=None, xflip=False), num_gen=n, num_splits=10)
        return {f'{name}_mean': mean, f'{name}_std': std}
    return Metric(name, 'is', run, ('inception',))


def _ls(name: str, m: re.Match) -> Metric:
    n = _count(m[1], m[2]) if m[1] else 200000

    def run(opts):
        out = run_ls(opts.with_dataset(max_size=None, xflip=False), num_samples=n)
        return {f'{name}_{key}': value for key, value in out.items()}
    return Metric(name, 'ls', run, ('inception',))


_PATTERNS: list[tuple[re.Pattern, Callable[[str, re.Match], Metric]]] = [
    (re.compile(rf'^fid{_COUNT}(_full)?$'), _fid),
    (re.compile(rf'^fid_garments{_COUNT}(_full)?$'), _fid_garments),
    (re.compile(rf'^kid{_COUNT}(_full)?$'), _kid),
    (re.compile(r'^pr(\d+)k(\d+)(_full)?$'), _pr),
    (re.compile(rf'^ppl(2?)_([zw])(full|end)(?:_{_COUNT})?$'), _ppl),
    (re.compile(rf'^eqt{_COUNT}_(int|frac)$'), _eqt),
    (re.compile(rf'^eqr{_COUNT}$'), _eqr),
    (re.compile(rf'^is{_COUNT}$'), _is),
    (re.compile(rf'^ls(?:{_COUNT})?$'), _ls),
]


def offline_hint() -> str:
    """What a user without internet can measure instead of the metrics whose detectors are downloaded."""
    return ('without internet, fid_garments<N>_full works (e.g. --metrics=fid_garments10k_full): its detector, '
            'the garment classifier, ships in pretrained/')


def get_metric(name: str) -> Optional[Metric]:
    for pattern, build in _PATTERNS:
        m = pattern.match(name)
        if m:
            counts = [g for g in m.groups() if g and g.isdigit()]
            if any(int(c) == 0 for c in counts):
                return None
            return build(name, m)
    return None


def is_valid_metric(name: str) -> bool:
    return get_metric(name) is not None


def better(result_key: str) -> Optional[str]:
    """'min' or 'max' for a result key (e.g. 'fid50k_full', 'pr50k3_full_recall'); None if neither is better."""
    if result_key.endswith(('_std', '_classifier_acc')):
        return None
    if re.match(r'^(fid|kid|ppl|ls)', result_key):
        return 'min'
    if re.match(r'^(pr|is|eqt|eqr)', result_key):
        return 'max'
    return None
