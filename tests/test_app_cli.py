"""app.py's command line: a model that is not there is one line on stderr and exit code 1, before any server starts."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_model_is_one_line():
    pytest.importorskip('gradio')
    r = subprocess.run([sys.executable, os.path.join(REPO, 'app.py'), '--network=no-such-model', '--port=1'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith('error: no-such-model: no such file, and not the name of a model in pretrained') \
        and '--network=PATH' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
