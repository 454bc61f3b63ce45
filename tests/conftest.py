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
