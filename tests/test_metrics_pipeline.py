"""calc_metric end to end with stand-in TorchScript detectors: real/generated features, caching, records."""
import json
import os

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch

from metrics.api import calc_metric, report_metric
from metrics import MetricError
from metrics.standin import save_standin_detectors
from helpers.metrics_toys import LinearGenerator, ReplayGenerator, block_features, random_images, write_image_folder


@pytest.fixture(scope='module')
def detector_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('detectors'))
    save_standin_detectors(path)
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('SG3C_DETECTOR_DIR', raising=False)


def scipy_fid(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False, bias=True), np.cov(b, rowvar=False, bias=True)
    return float(np.real(np.square(mu_a - mu_b).sum() + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b))))


def direct_kid(real, gen):
    d, m = real.shape[1], real.shape[0]
    k = lambda p, q: (p @ q.T / d + 1) ** 3
    kxx, kyy, kxy = k(gen, gen), k(real, real), k(gen, real)
    return (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def run(metric, G, data, detector_dir, **kw):
    return calc_metric(metric, G, data=data, detector_dir=detector_dir, progress=False, **kw)


def test_fid_is_zero_for_identical_sets(tmp_path, detector_dir):
    images = random_images(40, seed=1)
    data = write_image_folder(str(tmp_path / 'a'), images)
    fid = run('fid40_full', ReplayGenerator(images[::-1].copy()), data, detector_dir)['results']['fid40_full']
    assert abs(fid) < 1e-3      # the features' covariance trace is about 1.6e4: this is float round-off
    # ... while swapping a single image for a copy of another already shows.
    one_off = run('fid40_full', ReplayGenerator(images[:39].copy()), data, detector_dir)['results']['fid40_full']
    assert one_off > 10


def test_fid_and_kid_match_scipy_on_the_detector_features(tmp_path, detector_dir):
    reals = random_images(40, seed=1)
    fakes = random_images(70, seed=2, low=30, high=200)
    data = write_image_folder(str(tmp_path / 'a'), reals)
    f_real, f_fake = block_features(reals), block_features(fakes)
    fid = run('fid70_full', ReplayGenerator(fakes), data, detector_dir)['results']['fid70_full']
    assert fid == pytest.approx(scipy_fid(f_real, f_fake), rel=1e-5)
    kid = run('kid40_full', ReplayGenerator(fakes[:40]), data, detector_dir)['results']['kid40_full']
    assert kid == pytest.approx(direct_kid(f_real, f_fake[:40]), rel=1e-5)


def test_fid_n_uses_mirrored_reals_and_full_ignores_mirror(tmp_path, detector_dir):
    reals = random_images(20, seed=3)
    fakes = random_images(40, seed=4)
    data = write_image_folder(str(tmp_path / 'a'), reals)
    both = np.concatenate([reals, reals[:, :, ::-1]])
    legacy = run('fid40', ReplayGenerator(fakes), data, detector_dir, mirror=True)['results']['fid40']
    assert legacy == pytest.approx(scipy_fid(block_features(both), block_features(fakes)), rel=1e-5)
    full = run('fid40_full', ReplayGenerator(fakes), data, detector_dir, mirror=True)['results']['fid40_full']
    assert full == pytest.approx(scipy_fid(block_features(reals), block_features(fakes)), rel=1e-5)


def test_grayscale_images_are_expanded_to_three_channels(tmp_path, detector_dir):
    reals = random_images(24, channels=1, seed=5)
    fakes = random_images(30, channels=1, seed=6)
    data = write_image_folder(str(tmp_path / 'g'), reals)
    fid = run('fid30_full', ReplayGenerator(fakes), data, detector_dir)['results']['fid30_full']
    assert fid == pytest.approx(scipy_fid(block_features(reals), block_features(fakes)), rel=1e-5)


def test_real_statistics_cache_is_used_and_invalidated_when_the_dataset_changes(tmp_path, detector_dir, monkeypatch):
    from metrics import stats as stats_module
    reals = random_images(30, seed=7)
    fakes = random_images(40, seed=8)
    data = write_image_folder(str(tmp_path / 'a'), reals)
    cache = tmp_path / 'cache' / 'gan-metrics'
    loads = []
    original = stats_module.FeatureAccumulator.load
    monkeypatch.setattr(stats_module.FeatureAccumulator, 'load', classmethod(lambda cls, p: loads.append(p) or original(p)))

    first = run('fid40_full', ReplayGenerator(fakes), data, detector_dir)['results']['fid40_full']
    assert len(os.listdir(cache)) == 1 and loads == []
    again = run('fid40_full', ReplayGenerator(fakes), data, detector_dir)['results']['fid40_full']
    assert again == first and len(loads) == 1

    # Rewrite one image: a new cache entry, and the value of the new data.
    edited = reals.copy()
    edited[3] = 255 - edited[3]
    PIL.Image.fromarray(edited[3]).save(os.path.join(data, 'img0003.png'))
    changed = run('fid40_full', ReplayGenerator(fakes), data, detector_dir)['results']['fid40_full']
    assert len(os.listdir(cache)) == 2 and len(loads) == 1
    assert changed == pytest.approx(scipy_fid(block_features(edited), block_features(fakes)), rel=1e-5)
    assert changed != pytest.approx(first)

    # Add an image: another entry. Turning the cache off neither reads nor writes it.
    PIL.Image.fromarray(reals[0]).save(os.path.join(data, 'extra.png'))
    run('fid40_full', ReplayGenerator(fakes), data, detector_dir)
    assert len(os.listdir(cache)) == 3
    run('fid40_full', ReplayGenerator(fakes), data, detector_dir, cache=False)
    assert len(os.listdir(cache)) == 3 and len(loads) == 1


def test_cache_is_keyed_by_detector_content(tmp_path, detector_dir):
    reals = random_images(20, seed=9)
    data = write_image_folder(str(tmp_path / 'a'), reals)
    other = str(tmp_path / 'other-detectors')
    save_standin_detectors(other, grid=2)     # same file names, different network
    fakes = random_images(20, seed=10)
    a = run('fid20_full', ReplayGenerator(fakes), data, detector_dir)['results']['fid20_full']
    b = run('fid20_full', ReplayGenerator(fakes), data, other)['results']['fid20_full']
    assert len(os.listdir(tmp_path / 'cache' / 'gan-metrics')) == 2 and a != pytest.approx(b)


def test_results_are_deterministic_and_leave_the_global_rng_alone(tmp_path, detector_dir):
    data = write_image_folder(str(tmp_path / 'a'), random_images(20, seed=11))
    G = LinearGenerator(z_dim=16)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = run('fid30_full', G, data, detector_dir)
    assert torch.equal(torch.get_rng_state(), state)
    second = run('fid30_full', G, data, detector_dir)
    other_seed = run('fid30_full', G, data, detector_dir, seed=1)
    assert first['results'] == second['results'] != other_seed['results']


def test_result_record_has_nvidia_layout_and_appends_to_jsonl(tmp_path, detector_dir):
    data = write_image_folder(str(tmp_path / 'a'), random_images(20, seed=12))
    result = run('is30', LinearGenerator(z_dim=16), data, detector_dir)
    assert set(result) == {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus'}
    assert set(result['results']) == {'is30_mean', 'is30_std'} and result['results']['is30_mean'] >= 1
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    for _ in range(2):
        report_metric(result, run_dir=str(run_dir), snapshot_pkl='network-snapshot-000012.pkl')
    lines = (run_dir / 'metric-is30.jsonl').read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[1])
    assert record['snapshot_pkl'] == 'network-snapshot-000012.pkl' and record['metric'] == 'is30'
    assert record['results'] == result['results'] and record['num_gpus'] == 1 and 'timestamp' in record


class _RecordingConditional(LinearGenerator):
    def __init__(self):
        super().__init__(z_dim=8)
        self.c_dim = 3
        self.seen = []

    def forward(self, z, c, **kw):
        self.seen.append(c.clone())
        return super().forward(z, c, **kw)


def test_conditional_generators_get_labels_of_the_dataset(tmp_path, detector_dir, monkeypatch):
    data = write_image_folder(str(tmp_path / 'a'), random_images(12, seed=13), labels=[2] * 6 + [0] * 6)
    G = _RecordingConditional()
    monkeypatch.setattr('metrics.options.MetricContext.generator_copy', lambda self: self.G)
    run('fid64_full', G, data, detector_dir)
    c = torch.cat(G.seen)
    assert c.shape == (64, 3) and torch.all(c.sum(1) == 1) and c[:, 1].sum() == 0
    assert 10 < c[:, 2].sum() < 54        # drawn at random from both classes
    unlabelled = write_image_folder(str(tmp_path / 'b'), random_images(12, seed=13))
    with pytest.raises(MetricError, match='conditional'):
        run('fid64_full', _RecordingConditional(), unlabelled, detector_dir)


def test_synthetic_dataset_spec_is_built_once_at_the_generator_resolution(detector_dir, tmp_path):
    result = run('fid32_full', LinearGenerator(z_dim=8, res=16), 'synthetic:garments?n=24', detector_dir)
    assert np.isfinite(result['results']['fid32_full'])
    built = os.listdir(tmp_path / 'cache' / 'datasets')
    assert len(built) == 1 and '16px' in built[0]


def test_unknown_metric_and_missing_dataset_are_one_line_errors(tmp_path, detector_dir):
    with pytest.raises(MetricError, match='unknown metric'):
        run('fid', LinearGenerator(), None, detector_dir)
    with pytest.raises(MetricError, match='needs a dataset'):
        run('fid10_full', LinearGenerator(), None, detector_dir)
    from data import DatasetError
    with pytest.raises(DatasetError, match='no such'):
        run('fid10_full', LinearGenerator(), str(tmp_path / 'missing'), detector_dir)
