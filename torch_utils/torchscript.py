"""Loading TorchScript files, which are programs: only known files, or files the user names deliberately.

A TorchScript archive holds code that `torch.jit.load` compiles and `forward` runs in torch's interpreter, and
that code reaches far beyond a network's arithmetic: `torch.from_file(path, shared=True)` maps any file of the
machine into a tensor that the script then writes. So a TorchScript file is executable code, like a pickle,
and no allow-list can make reading one safe. The toolkit loads TorchScript in two places, NVIDIA's metric
detectors (`inception-2015-12-05.pt`, `vgg16.pt`, as their metrics download them from nvlabs-fi-cdn.nvidia.com)
and the inversion's perceptual loss (NVIDIA's `vgg16.pt`), and runs a file only when

* its SHA-256 is one of KNOWN_FILES, NVIDIA's files as published, accepted without a question; or
* the user names it in $SG3C_TRUST_TORCHSCRIPT (paths separated by os.pathsep, as in PATH), which says "I know
  this file is code and I want it run".

Any other file is refused with one line saying so, before torch reads a byte of it.

KNOWN_FILES holds what could be verified without downloading the files here: the SHA-256 of NVIDIA's
`inception-2015-12-05.pt` that other projects pin (k-diffusion's `k_diffusion/evaluation.py` checks downloads
against it, and several evaluation pipelines record the same digest for the same 95,607,719-byte file). No
published digest of NVIDIA's `vgg16.pt` was found, so that file is not on the list: name it in
$SG3C_TRUST_TORCHSCRIPT once you have it from nvlabs-fi-cdn.nvidia.com (and its digest can be added here when
one is published).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from typing import Union

import torch

from torch_utils.cli import UserError

TRUST_ENV = 'SG3C_TRUST_TORCHSCRIPT'
KNOWN_FILES: dict[str, str] = {
    'f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4':
        "NVIDIA's Inception-v3 (inception-2015-12-05.pt, metrics)",
}
_digests: dict[tuple, str] = {}   # (path, size, mtime) -> SHA-256


class UntrustedCode(UserError):
    """A TorchScript file that is neither a known file nor named in $SG3C_TRUST_TORCHSCRIPT."""


def file_sha256(path: Union[str, os.PathLike]) -> str:
    """The SHA-256 of a file, memoised by path, size and modification time."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 22), b''):
                digest.update(chunk)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def trusted_paths() -> set[str]:
    """The real paths of the files named in $SG3C_TRUST_TORCHSCRIPT."""
    return {os.path.realpath(p) for p in os.environ.get(TRUST_ENV, '').split(os.pathsep) if p.strip()}


def check_trusted(path: Union[str, os.PathLike]) -> str:
    """The file's SHA-256 when it may run (see the module doc); UntrustedCode otherwise."""
    digest = file_sha256(path)
    if digest in KNOWN_FILES or os.path.realpath(path) in trusted_paths():
        return digest
    raise UntrustedCode(f'{path}: a TorchScript file is executable code, and this one is not a known file '
                        f'(sha256 {digest[:16]}...); to run it anyway, name it in ${TRUST_ENV} '
                        f'(e.g. {TRUST_ENV}={os.path.abspath(path)})')


def load(path: Union[str, os.PathLike], device=None):
    """torch.jit.load of a file that check_trusted accepts."""
    check_trusted(path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)   # TorchScript is deprecated, the files are not
        return torch.jit.load(str(path), map_location=device)
