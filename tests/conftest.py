"""Shared test options: slow and GPU tests are skipped unless asked for or possible."""
import os
import pathlib

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = pathlib.Path(os.environ.get('SG3C_FIXTURES', REPO.parent / 'shared' / 'fixtures' / 'official'))


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False, help='also run tests marked slow')


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason='slow: pass --runslow to run')
    skip_gpu = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'slow' in item.keywords and not config.getoption('--runslow'):
            item.add_marker(skip_slow)
        if 'gpu' in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope='session')
def fixtures_dir() -> pathlib.Path:
    if not FIXTURES.is_dir():
        pytest.skip(f'official fixtures not found at {FIXTURES} (they live in ../shared beside the checkout)')
    return FIXTURES


@pytest.fixture
def run_script(monkeypatch, capsys):
    """Run a script's click command in-process as `python script.py ARGS` runs it (through torch_utils.cli.run):
    returns (exit code, stdout, stderr)."""
    import sys

    from torch_utils.cli import run

    def call(command, *args):
        monkeypatch.setattr(sys, 'argv', ['script', *map(str, args)])
        try:
            run(command)
            code = 0
        except SystemExit as e:
            code = e.code or 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return call
