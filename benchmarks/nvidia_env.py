#!/usr/bin/env python3
"""The environment NVIDIA's code runs in, beside ours (benchmarks that compare with NVlabs/stylegan3).

Their package names clash with ours (torch_utils), so their code runs in its own process with our
PYTHONPATH removed. NVIDIA's code imports `pkg_resources` (setuptools < 81) and `distutils`, which a newer
Python or setuptools lacks: $SG3C_NVIDIA_PYTHONPATH may name folders that supply them (docs/cuda_ops.md
says how to carry an unpacked setuptools wheel), and `compat_path` writes minimal stand-ins where even
that is missing.

  python benchmarks/nvidia_env.py [--python=PYTHON]   # what that interpreter lacks of NVIDIA's imports
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Optional

ENV_VAR = 'SG3C_NVIDIA_PYTHONPATH'

# The two names NVIDIA's stylegan3 needs from them (conv2d_gradfix/grid_sample_gradfix; dnnlib/util.py).
_STAND_INS = {
    'pkg_resources/__init__.py': 'from packaging.version import Version as parse_version  # noqa: F401\n',
    'distutils/__init__.py': '',
    'distutils/util.py': ('def strtobool(value):\n'
                          '    value = value.lower()\n'
                          "    if value in ('y', 'yes', 't', 'true', 'on', '1'):\n"
                          '        return 1\n'
                          "    if value in ('n', 'no', 'f', 'false', 'off', '0'):\n"
                          '        return 0\n'
                          "    raise ValueError(f'invalid truth value {value!r}')\n"),
}


def nvidia_env(extra: Optional[str] = None) -> dict:
    """os.environ without our PYTHONPATH, with $SG3C_NVIDIA_PYTHONPATH (and `extra`) in its place."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    paths = [p for p in (os.environ.get(ENV_VAR), extra) if p]
    if paths:
        env['PYTHONPATH'] = os.pathsep.join(paths)
    return env


def missing_modules(python: str, env: dict) -> list[str]:
    """Which of pkg_resources and distutils.util `python` cannot import in `env`."""
    missing = []
    for module in ('pkg_resources', 'distutils.util'):
        proc = subprocess.run([python, '-c', f'import {module}'], env=env, capture_output=True, timeout=120)
        if proc.returncode != 0:
            missing.append(module)
    return missing


def compat_path(python: str, folder: str) -> Optional[str]:
    """A folder with stand-ins for what `python` lacks of NVIDIA's imports (None if it lacks nothing);
    set it as $SG3C_NVIDIA_PYTHONPATH's complement with nvidia_env(extra=...)."""
    missing = missing_modules(python, nvidia_env())
    if not missing:
        return None
    for name, text in _STAND_INS.items():
        if name.split('/')[0] in [m.split('.')[0] for m in missing]:
            path = os.path.join(folder, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write(text)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--python', default=sys.executable, help="interpreter for NVIDIA's code (default: this one)")
    args = parser.parse_args()
    missing = missing_modules(args.python, nvidia_env())
    where = f' with ${ENV_VAR}={os.environ[ENV_VAR]}' if os.environ.get(ENV_VAR) else ''
    print(f'{args.python}{where}: ' + (f'lacks {", ".join(missing)} (gpu_check writes stand-ins)' if missing
                                       else "imports pkg_resources and distutils.util"))
    return 0


if __name__ == '__main__':
    sys.exit(main())
