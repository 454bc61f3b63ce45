"""The numerical cores of the metrics against direct numpy/scipy computations on known features."""
import numpy as np
import pytest
import scipy.linalg
import torch

from metrics.frechet import frechet_distance, trace_sqrt_product
from metrics.inception_score import inception_score
from metrics.kernel import kernel_distance
from metrics.precision_recall import knn_radii, precision_recall
from metrics.registry import better, get_metric, is_valid_metric
from metrics.separability import conditional_entropy_bits, linear_svm_predict, separability_scores
from metrics.stats import FeatureAccumulator


def scipy_fid(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False, bias=True), np.cov(b, rowvar=False, bias=True)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(np.real(np.square(mu_a - mu_b).sum() + np.trace(s_a + s_b - 2 * root)))


@pytest.mark.parametrize('n, d', [(400, 16), (30, 48)])   # the second has singular covariances
def test_fid_matches_scipy_sqrtm(n, d):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    b = rng.standard_normal((n, d)) * 1.5 + 0.3
    stats = []
    for x in (a, b):
        s = FeatureAccumulator(capture_mean_cov=True)
        for chunk in np.array_split(x, 3):
            s.append(chunk)
        stats.append(s.mean_cov())
    ours = frechet_distance(*stats[0], *stats[1])
    assert ours == pytest.approx(scipy_fid(a, b), rel=1e-5, abs=1e-6)


def test_fid_of_identical_statistics_is_zero_and_trace_sqrt_of_commuting_matrices():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 8))
    s = np.cov(x, rowvar=False, bias=True)
    assert abs(frechet_distance(x.mean(0), s, x.mean(0), s)) < 1e-9
    d1, d2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 0.0])
    assert trace_sqrt_product(d1, d2) == pytest.approx(2 + 2 + 0)


def direct_kid(real, gen):
    """Unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3, all samples at once."""
    d, m = real.shape[1], real.shape[0]
    k = lambda p, q: (p @ q.T / d + 1) ** 3
    kxx, kyy, kxy = k(gen, gen), k(real, real), k(gen, real)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_kid_matches_direct_unbiased_mmd():
    rng = np.random.default_rng(3)
    real = rng.standard_normal((50, 12))
    gen = rng.standard_normal((50, 12)) + 0.4
    # With subsets as large as the sets, every subset is a permutation of the whole: no sampling noise.
    assert kernel_distance(real, gen, num_subsets=5, max_subset_size=1000) == pytest.approx(direct_kid(real, gen), rel=1e-10)
    same = kernel_distance(real, rng.standard_normal((50, 12)), num_subsets=3)
    assert abs(same) < 0.25 * kernel_distance(real, gen, num_subsets=3)


def brute_force_pr(real, gen, k):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=2)
        return np.sort(d, axis=1)[:, k]

    def inside(manifold, probes):
        r = radii(manifold)
        d = np.linalg.norm(probes[:, None] - manifold[None], axis=2)
        return (d <= r[None]).any(axis=1).mean()
    return inside(real, gen), inside(gen, real)


def test_precision_recall_on_constructed_clusters():
    rng = np.random.default_rng(4)
    cluster_a = rng.standard_normal((60, 5)) * 0.1
    cluster_b = rng.standard_normal((60, 5)) * 0.1 + 10
    real = torch.from_numpy(np.concatenate([cluster_a, cluster_b])).float()
    only_a = torch.from_numpy(rng.standard_normal((60, 5)) * 0.1).float()
    far = torch.from_numpy(rng.standard_normal((60, 5)) * 0.1 - 10).float()
    # Generated = real cluster A exactly: everything generated is real, half the reals are covered.
    p, r = precision_recall(real, real[:60].clone(), k=3, row_batch=17, col_batch=23)   # odd blocks: merging
    assert (p, r) == (1.0, 0.5)
    p, r = precision_recall(real, far, k=3)
    assert (p, r) == (0.0, 0.0)
    # New samples of cluster A: compare with a brute-force computation on the same float16-rounded features.
    p, r = precision_recall(real, only_a, k=3, row_batch=17, col_batch=23)
    assert 0.5 < p <= 1 and 0.25 < r <= 0.5
    assert (p, r) == pytest.approx(brute_force_pr(real.half().double().numpy(), only_a.half().double().numpy(), 3), abs=1e-6)


def test_knn_radii_exclude_the_point_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, 2, row_batch=1, col_batch=3).tolist() == [3.0, 2.0, 3.0, 6.0]


def test_inception_score_matches_definition():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((100, 7)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for part in np.split(probs, 10):
        py = part.mean(0)
        scores.append(np.exp(np.mean([np.sum(p * np.log(p / py)) for p in part])))
    mean, std = inception_score(probs, 10)
    assert mean == pytest.approx(np.mean(scores)) and std == pytest.approx(np.std(scores))
    uniform = np.full((20, 7), 1 / 7)
    assert inception_score(uniform, 2)[0] == pytest.approx(1.0)
    assert inception_score(np.eye(7)[np.arange(70) % 7] * (1 - 1e-6) + 1e-6 / 7, 1)[0] == pytest.approx(7, rel=1e-3)


def test_conditional_entropy_and_linear_svm():
    x = np.array([0, 0, 1, 1] * 25, bool)
    assert conditional_entropy_bits(x, x) == 0
    assert conditional_entropy_bits(x, np.array([0, 1] * 50, bool)) == pytest.approx(1.0)
    rng = np.random.default_rng(6)
    pts = rng.standard_normal((300, 4))
    y = pts @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 > 0
    assert (linear_svm_predict(pts, y) == y).mean() > 0.97
    assert linear_svm_predict(pts, np.ones(300, bool)).all()


def test_separability_scores_linear_vs_nonlinear_classes():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((2000, 3))
    linear = 1 / (1 + np.exp(-20 * w[:, 0]))                        # class = sign of one coordinate
    radial = 1 / (1 + np.exp(-20 * (np.abs(w[:, 0]) - 0.7)))         # class = |w0| large: no hyperplane
    score_linear = separability_scores(np.stack([1 - linear, linear], 1), dict(w=w))['w']
    score_radial = separability_scores(np.stack([1 - radial, radial], 1), dict(w=w))['w']
    assert score_linear < 1.1 and score_radial > 1.5


def test_registry_names_and_counts():
    for name in ['fid50k_full', 'kid50k_full', 'pr50k3_full', 'ppl2_wend', 'eqt50k_int', 'eqt50k_frac', 'eqr50k',
                 'fid50k', 'kid50k', 'pr50k3', 'is50k', 'fid10k_full', 'fid2k_full', 'fid500_full', 'kid10k_full',
                 'pr10k5', 'ppl_zfull', 'ppl2_wend_2k', 'ls', 'ls10k', 'eqt5k_int']:
        assert is_valid_metric(name), name
    for name in ['fid', 'fid0k_full', 'fidk_full', 'pr50k', 'pr50k0_full', 'ppl3_wend', 'eqt50k', 'foo', 'ls_full']:
        assert not is_valid_metric(name), name
    assert get_metric('fid2k_full').family == 'fid' and get_metric('pr50k3').detectors == ('vgg16',)
    assert better('fid50k_full') == 'min' and better('kid2k_full') == 'min' and better('ppl2_wend') == 'min'
    assert better('pr50k3_full_recall') == 'max' and better('eqt50k_int') == 'max' and better('is50k_mean') == 'max'
    assert better('is50k_std') is None and better('ls_classifier_acc') is None and better('ls_w') == 'min'
