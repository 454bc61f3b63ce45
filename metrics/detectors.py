"""The feature networks behind the metrics: NVIDIA's TorchScript Inception-v3 and VGG16.

They are the very files NVIDIA's metrics use, so that our FID/KID/IS/PR/PPL numbers are comparable with
published ones:

- `inception-2015-12-05.pt`: the TensorFlow Inception graph of 2015 translated to TorchScript. Called as
  `net(img_uint8, return_features=True)` it gives the 2048 pool features (FID, KID, LS); with
  `no_output_bias=True` the 1008 softmax probabilities of the original IS code.
- `vgg16.pt`: VGG16 with LPIPS calibration. `return_features=True` gives the fc features (PR);
  `resize_images=False, return_lpips=True` on float images in [0, 255] gives the LPIPS embedding (PPL).

Where a detector is looked for, in order: `--detector-dir` (or `detector_dir=`), `$SG3C_DETECTOR_DIR`,
then the cache `$SG3C_CACHE/detectors` (default `~/.cache/stylegan3-clothing/detectors`), which a
download from NVIDIA's server fills. An explicitly named directory is authoritative: if the file is not
there, we say so rather than silently using another copy.

Only the TorchScript `.pt` files are loaded. NVIDIA's newer `.pkl` copies of the same networks are Python
pickles, and unpickling them would run code stored in the file; we refuse them and name the `.pt` to use.
TorchScript is code too (it can read and write files through torch's own operators), so a detector file runs
only when it is one of NVIDIA's published files, by SHA-256, or named in $SG3C_TRUST_TORCHSCRIPT (see
torch_utils.torchscript).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from torch_utils import torchscript
from torch_utils.distributed import barrier
from torch_utils.download import DownloadError, cache_root, download_cached

from . import DetectorError
from .garment_classifier import load_garment_classifier

ENV_DIR = 'SG3C_DETECTOR_DIR'


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    filename: str
    url: str             # TorchScript file on NVIDIA's CDN (stylegan2-ada-pytorch)
    pickle_url: str      # the same network as NVIDIA's StyleGAN3 pickle, which we do not load
    # Networks of our own, shipped in the tree (path relative to the repo root) instead of downloaded, and
    # read by their own weights-only loader instead of as TorchScript.
    bundled: Optional[str] = None
    loader: Optional[Callable[[str, torch.device], torch.nn.Module]] = None


_NGC = 'https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics'
_CDN = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics'
DETECTORS: dict[str, DetectorSpec] = {
    'inception': DetectorSpec('inception', 'inception-2015-12-05.pt', f'{_CDN}/inception-2015-12-05.pt',
                              f'{_NGC}/inception-2015-12-05.pkl'),
    'vgg16': DetectorSpec('vgg16', 'vgg16.pt', f'{_CDN}/vgg16.pt', f'{_NGC}/vgg16.pkl'),
    'garments': DetectorSpec('garments', 'garment-classifier-64x64.pt', '', '',
                             bundled=os.path.join('pretrained', 'garment-classifier-64x64.pt'),
                             loader=load_garment_classifier),
}
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_detector_dir() -> str:
    return os.path.join(cache_root(), 'detectors')


def _spec(name: str) -> DetectorSpec:
    if name not in DETECTORS:
        raise DetectorError(f'unknown detector {name!r} (known: {", ".join(DETECTORS)})')
    return DETECTORS[name]


def _missing(spec: DetectorSpec, directory: str, why: str) -> DetectorError:
    pickle_path = os.path.join(directory, os.path.splitext(spec.filename)[0] + '.pkl')
    if os.path.isfile(pickle_path):
        why = (f'{pickle_path} is NVIDIA\'s pickle of this network, which we do not load because unpickling '
               f'runs code stored in the file')
    return DetectorError(f'{why}; download the TorchScript file {spec.url} and put it at '
                         f'{os.path.join(directory, spec.filename)}')


def locate_detector(name: str, detector_dir: Optional[str] = None, download: bool = True,
                    progress: bool = True, option: Optional[str] = '--detector-dir') -> str:
    """Path of the detector's `.pt` file (see the module doc for the search order). `option` is the
    caller's command-line option for `detector_dir`, named in the error when the file cannot be had."""
    spec = _spec(name)
    if spec.bundled:   # a copy in the named folder wins; otherwise the tree's own file
        for directory in (detector_dir, os.environ.get(ENV_DIR)):
            if directory and os.path.isfile(os.path.join(directory, spec.filename)):
                return os.path.join(directory, spec.filename)
        path = os.path.join(_REPO, spec.bundled)
        if not os.path.isfile(path):
            raise DetectorError(f'{path} not found (python pretrained/train_classifier.py --out={spec.bundled} makes it)')
        return path
    for directory, origin in ((detector_dir, option or 'detector_dir'), (os.environ.get(ENV_DIR), f'${ENV_DIR}')):
        if directory:
            path = os.path.join(directory, spec.filename)
            if os.path.isfile(path):
                return path
            raise _missing(spec, directory, f'{path} not found ({origin} is {directory})')
    directory = default_detector_dir()
    path = os.path.join(directory, spec.filename)
    if os.path.isfile(path):
        return path
    if not download:
        raise _missing(spec, directory, f'{path} not found')
    try:
        return download_cached(spec.url, cache_dir=directory, filename=spec.filename, progress=progress)
    except DownloadError as e:
        where = f'pass {option}=DIR / set ${ENV_DIR}' if option else f'set ${ENV_DIR}'
        raise DetectorError(f'{e} (or {where} to a folder holding {spec.filename})') from None


_loaded: dict[tuple[str, str], torch.nn.Module] = {}


def load_detector_file(path: str, device: torch.device,
                       loader: Optional[Callable[[str, torch.device], torch.nn.Module]] = None) -> torch.nn.Module:
    """Load a TorchScript detector file (or one read by `loader`) onto `device` (memoised per path and device)."""
    key = (os.path.abspath(path), str(device))
    if key not in _loaded and loader is not None:
        try:
            _loaded[key] = loader(path, device)
        except ValueError as e:
            raise DetectorError(str(e)) from None
    if key not in _loaded:
        if path.endswith('.pkl'):
            raise DetectorError(f'{path}: NVIDIA\'s .pkl detectors are pickles that run code when loaded; use the '
                                f'TorchScript .pt file instead')
        try:
            module = torchscript.load(path, device)
        except torchscript.UntrustedCode as e:
            raise DetectorError(str(e)) from None
        except (RuntimeError, ValueError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DetectorError(f'{path}: not a readable TorchScript detector ({first})') from None
        _loaded[key] = module.eval()
    return _loaded[key]


def load_detector(name: str, device: torch.device, detector_dir: Optional[str] = None, rank: int = 0,
                  num_gpus: int = 1, progress: bool = True) -> tuple[torch.nn.Module, str]:
    """(module, path) of a detector; rank 0 downloads it first while the others wait."""
    if rank == 0:
        path = locate_detector(name, detector_dir, download=True, progress=progress)
    if num_gpus > 1:
        barrier()
    if rank != 0:
        path = locate_detector(name, detector_dir, download=False)
    return load_detector_file(path, device, _spec(name).loader), path


def detector_fingerprint(path: str) -> str:
    """Content hash of a detector file (part of the feature-cache key), memoised by size and mtime."""
    return torchscript.file_sha256(path)
