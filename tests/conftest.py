"""Shared test options: slow and GPU tests are skipped unless asked for or possible."""
import os
import pathlib

import numpy as np
import PIL.Image
import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
# Inversion tests use an untrained perceptual backbone (--perceptual=random), which users cannot ask for.
os.environ.setdefault('SG3C_TEST_PERCEPTUAL', '1')
FIXTURES = pathlib.Path(os.environ.get('SG3C_FIXTURES', REPO.parent / 'shared' / 'fixtures' / 'official'))


def _trusting(save):
    """The metric tests' stand-in detectors are TorchScript the tests write themselves: each one written is named
    in $SG3C_TRUST_TORCHSCRIPT for the rest of the session, as a user names a file they mean to run (subprocesses
    inherit it). Wrapped here, before any test module imports the function."""
    def save_and_trust(*args, **kwargs):
        from torch_utils.torchscript import TRUST_ENV
        paths = save(*args, **kwargs)
        named = [p for p in os.environ.get(TRUST_ENV, '').split(os.pathsep) if p]
        os.environ[TRUST_ENV] = os.pathsep.join(named + sorted(paths.values()))
        return paths
    return save_and_trust


try:
    import metrics.standin
except ImportError:   # a checkout without the package (tests/test_conftest.py runs this file on its own)
    pass
else:
    metrics.standin.save_standin_detectors = _trusting(metrics.standin.save_standin_detectors)


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


def fixtures_missing_reason() -> str:
    """Why fixture tests skip, in words that hold on any machine (no absolute path of this one)."""
    if 'SG3C_FIXTURES' in os.environ:
        return 'official fixtures not found in $SG3C_FIXTURES'
    return (f'official fixtures not found in {os.path.relpath(FIXTURES, REPO)} (relative to the checkout; '
            f'or set SG3C_FIXTURES)')


@pytest.fixture(scope='session')
def fixtures_dir() -> pathlib.Path:
    if not FIXTURES.is_dir():
        pytest.skip(fixtures_missing_reason())
    return FIXTURES


@pytest.fixture(scope='session')
def rectangles(tmp_path_factory):
    """rectangles(count, size): a folder of `count` PNGs, size x size, each a coloured square (about
    half the side) at a seeded place on white; the tiny training sets of the train.py tests."""
    made = {}

    def make(count: int, size: int) -> pathlib.Path:
        if (count, size) not in made:
            root = tmp_path_factory.mktemp(f'rectangles{count}x{size}')
            rng = np.random.RandomState(0)
            side = size * 9 // 16
            for i in range(count):
                img = np.full([size, size, 3], 255, np.uint8)
                x0, y0 = rng.randint(1, size - side - 1, size=2)
                img[y0:y0 + side, x0:x0 + side] = rng.randint(0, 200, size=3)
                PIL.Image.fromarray(img).save(root / f'{i:03d}.png')
            made[count, size] = root
        return made[count, size]
    return make
