"""Running a script's click command in-process, as `python script.py ARGS` runs it (through torch_utils.cli.run)."""
import contextlib
import io
import sys
from unittest import mock

from torch_utils.cli import run


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
