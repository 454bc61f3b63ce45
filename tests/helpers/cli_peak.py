"""Running a script as `python SCRIPT ARGS` does, and measuring what it took: exit status, output and the peak
resident memory of that process alone (VmHWM, written at exit), under an address-space limit so that a memory
bomb fails instead of taking the machine.

    python tests/helpers/cli_peak.py PEAK_FILE MEMORY_LIMIT SCRIPT [ARGS...]     (the subprocess side)
"""
from __future__ import annotations

import atexit
import os
import resource
import runpy
import subprocess
import sys
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_peak(path: str) -> None:
    with open('/proc/self/status') as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:')) / 1024
    with open(path, 'w') as f:
        f.write(f'{peak:.1f}\n')


def run_cli(script: str, *args, env: Optional[dict] = None, memory_limit: int = 4 << 30, timeout: float = 300,
            tmp_path=None) -> dict:
    """{'rc', 'stdout', 'stderr', 'errors' (stderr lines starting with 'error:'), 'peak_mb'} of one run."""
    peak_file = os.path.join(str(tmp_path or '/tmp'), f'.peak-{os.getpid()}-{os.urandom(4).hex()}')
    command = [sys.executable, os.path.abspath(__file__), peak_file, str(memory_limit), os.path.join(REPO, script),
               *map(str, args)]
    full_env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1', **(env or {}))
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=full_env, timeout=timeout)
    peak = float(open(peak_file).read()) if os.path.exists(peak_file) else None
    if os.path.exists(peak_file):
        os.remove(peak_file)
    return dict(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr, peak_mb=peak,
                errors=[line for line in proc.stderr.splitlines() if line.startswith('error:')])


def assert_one_error_line(result: dict, *fragments: str, max_mb: float = 1024) -> str:
    """The run ended with exit status 1 (no signal, no traceback), one `error:` line holding `fragments`, and
    a peak resident memory under `max_mb`; returns that line."""
    assert result['rc'] == 1, (result['rc'], result['stderr'][-2000:])
    assert 'Traceback' not in result['stderr'], result['stderr'][-2000:]
    assert len(result['errors']) == 1, result['stderr'][-2000:]
    line = result['errors'][0]
    for fragment in fragments:
        assert fragment in line, line
    assert result['peak_mb'] is not None and result['peak_mb'] < max_mb, result['peak_mb']
    print(f'\n{line[:100]} (exit 1, peak {result["peak_mb"]:.0f} MB)')
    return line


if __name__ == '__main__':
    peak_path, limit, script, *script_args = sys.argv[1:]
    resource.setrlimit(resource.RLIMIT_AS, (int(limit), resource.getrlimit(resource.RLIMIT_AS)[1]))
    atexit.register(_write_peak, peak_path)
    sys.argv = [script, *script_args]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name='__main__')
