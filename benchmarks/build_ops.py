#!/usr/bin/env python3
"""Compile and import the CUDA ops against a CUDA build of torch, on any machine (no GPU needed).

Builds torch_utils/ops/cuda/ from scratch in a temporary folder for the given architectures, imports
the module, checks that it exposes every op, and counts compiler warnings (the build must have none).
Exit status 0 only when it built, loaded and printed no warning.

  python benchmarks/build_ops.py                   # sm_90 (H100/H200)
  python benchmarks/build_ops.py --arch="8.0;9.0"  # also A100
  SG3C_CUDA_PYTHON=/path/to/venv/bin/python; $SG3C_CUDA_PYTHON benchmarks/build_ops.py

Where torch is the CPU build, make a side environment outside the checkout with the CUDA build:
  python -m venv ENV && ENV/bin/pip install --isolated torch ninja numpy
(--isolated: ignore a pip configuration that prefers +cpu wheels). nvcc of the same CUDA major version
as torch.version.cuda must be on PATH (or CUDA_HOME set).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_FLAG = '--in-child'
EXPECTED = ('resample', 'describe', 'upfirdn2d_direct', 'bias_act', 'bias_act_grad')
# nvcc ("warning #177-D"), gcc ("warning: ..."), ptxas and cpp_extension's own UserWarnings.
WARNING = re.compile(r'\bwarning\b', re.IGNORECASE)


def build_here(archs: str, directory: str) -> None:
    """The build itself; runs in a child process so that the compilers' output (written by ninja straight
    to file descriptor 1) can be captured and checked."""
    sys.path.insert(0, REPO)
    import torch
    if torch.version.cuda is None:
        sys.exit(f'build_ops: {sys.executable} has torch {torch.__version__} without CUDA; '
                 'run it with a CUDA build of torch (see this script\'s doc)')
    from torch_utils.ops import cuda_build
    module = cuda_build.build(archs=archs, verbose=True, directory=directory)
    missing = [name for name in EXPECTED if not hasattr(module, name)]
    if missing:
        sys.exit(f'build_ops: the module lacks {missing}')
    print(f'loaded {module.__name__} from {module.__file__} (torch {torch.__version__}, CUDA {torch.version.cuda}, '
          f'archs {archs}): {", ".join(EXPECTED)}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='9.0', help='TORCH_CUDA_ARCH_LIST value, e.g. "8.0;9.0" (default: 9.0)')
    parser.add_argument('--keep', default=None, help='build in this folder (kept) instead of a temporary one')
    parser.add_argument(CHILD_FLAG, dest='child_dir', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_dir is not None:
        build_here(args.arch, args.child_dir)
        return 0

    with tempfile.TemporaryDirectory(prefix='sg3c-build-ops-') as tmp:
        directory = args.keep or tmp
        os.makedirs(directory, exist_ok=True)
        cmd = [sys.executable, os.path.abspath(__file__), '--arch', args.arch, CHILD_FLAG, directory]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout
    print(output, end='' if output.endswith('\n') else '\n')
    warnings = [line for line in output.splitlines() if WARNING.search(line)]
    ok = proc.returncode == 0
    print(f'build_ops: {"built and loaded" if ok else "FAILED"} for archs {args.arch}, '
          f'{len(warnings)} warning line(s)')
    return 0 if ok and not warnings else 1


if __name__ == '__main__':
    sys.exit(main())
