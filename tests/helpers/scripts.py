"""Running a script: its click command in-process, as `python script.py ARGS` runs it (through
torch_utils.cli.run), or the script itself in a new interpreter, as a user runs it from the shell."""
import contextlib
import io
import os
import subprocess
import sys
from unittest import mock

from torch_utils.cli import run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(command, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the script's command on `args`."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, 'argv', ['script', *map(str, args)]), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(command)
            code = 0
        except SystemExit as e:
            code = e.code or 0
    return code, out.getvalue(), err.getvalue()


def gen(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(REPO, 'gen_images.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)
