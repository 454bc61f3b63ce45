"""Linear separability (StyleGAN paper, Karras et al. 2019, section 4.2) for datasets with class labels.

What is computed, exactly:

1. A classifier for the dataset's classes: multinomial logistic regression (L2 weight `l2`, fitted to
   convergence with L-BFGS) on standardised Inception pool features of the labelled real images. 80% of
   the images (a fixed random split) train it; its accuracy on the other 20% is reported as
   `<metric>_classifier_acc`, since the score means little if the classifier is poor.
2. `num_samples` generated images (z ~ N(0, I), labels of random training images for a conditional G);
   for each we keep z, w (the last row of G.mapping's output, as in NVIDIA's TensorFlow code) and the
   classifier's class probabilities p.
3. One binary attribute per class k ("is class k", one-vs-rest; a single attribute for two classes).
   For each attribute, the half of the samples on which the classifier is most confident
   (max(p_k, 1 - p_k)) is kept; the targets are Y = [p_k > 1/2].
4. A linear SVM is fitted to Y from the latent (z or w) on those samples: squared hinge loss with
   penalty C = 1 on the summed losses and 1/2 |weights|^2 (intercept included), liblinear's
   LinearSVC defaults, solved here by L-BFGS. X = the side of its hyperplane for each sample.
5. H(Y | X) in bits from the 2x2 joint frequencies of (X, Y) on the same samples. If all targets agree,
   H = 0.
6. The score is 2 ** (sum of H over attributes), for z and for w: `<metric>_z` and `<metric>_w`.
   Lower is more separable; 1 means every class boundary is a hyperplane in that space.

The paper used 200k samples, 100k kept, 40 CelebA attribute classifiers trained separately; here the
attributes are the dataset's own classes and the classifier is trained by the metric itself.
"""
from __future__ import annotations

import numpy as np
import torch

from . import MetricError
from .options import MetricContext
from .stats import dataset_features, generator_features

FEATURES = dict(return_features=True)


def _lbfgs(params: list[torch.Tensor], loss_fn, max_iter: int) -> None:
    opt = torch.optim.LBFGS(params, lr=1, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    opt.step(closure)


class SoftmaxClassifier:
    """Multinomial logistic regression on standardised features."""

    def __init__(self, num_classes: int, l2: float = 1e-3, max_iter: int = 500):
        self.num_classes, self.l2, self.max_iter = num_classes, l2, max_iter

    def fit(self, x: np.ndarray, y: np.ndarray) -> 'SoftmaxClassifier':
        x = torch.from_numpy(np.asarray(x, dtype=np.float64))
        y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self.mean, self.std = x.mean(0), x.std(0).clamp(min=1e-8)
        xs = (x - self.mean) / self.std
        weight = torch.zeros([x.shape[1], self.num_classes], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros([self.num_classes], dtype=torch.float64, requires_grad=True)
        _lbfgs([weight, bias], lambda: torch.nn.functional.cross_entropy(xs @ weight + bias, y)
               + self.l2 * weight.square().sum(), self.max_iter)
        self.weight, self.bias = weight.detach(), bias.detach()
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        xs = (torch.from_numpy(np.asarray(x, dtype=np.float64)) - self.mean) / self.std
        return torch.softmax(xs @ self.weight + self.bias, dim=1).numpy()


def linear_svm_predict(x: np.ndarray, y: np.ndarray, C: float = 1.0, max_iter: int = 1000) -> np.ndarray:
    """Fit an L2-regularised squared-hinge linear SVM to binary y (0/1) and return its predictions on x."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return y.copy()
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    xt = torch.cat([xt, torch.ones([xt.shape[0], 1], dtype=torch.float64)], dim=1)   # liblinear's bias feature
    sign = torch.from_numpy(np.where(y, 1.0, -1.0))
    theta = torch.zeros([xt.shape[1]], dtype=torch.float64, requires_grad=True)
    n = xt.shape[0]
    # The objective divided by n (same minimiser), so that L-BFGS tolerances do not depend on n.
    _lbfgs([theta], lambda: (0.5 * theta.square().sum() + C * (1 - sign * (xt @ theta)).clamp(min=0).square().sum()) / n,
           max_iter)
    return (xt @ theta.detach()).numpy() > 0


def conditional_entropy_bits(x: np.ndarray, y: np.ndarray) -> float:
    """H(Y | X) in bits for two binary arrays."""
    x, y = np.asarray(x).astype(bool), np.asarray(y).astype(bool)
    joint = np.array([[np.mean(~x & ~y), np.mean(~x & y)], [np.mean(x & ~y), np.mean(x & y)]])
    px = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide='ignore', invalid='ignore'):
        terms = np.where(joint > 0, joint * np.log2(px / joint), 0.0)
    return float(max(terms.sum(), 0.0))


def separability_scores(probs: np.ndarray, latents: dict[str, np.ndarray], keep_fraction: float = 0.5) -> dict[str, float]:
    """Steps 3-6 of the module doc: {space: 2 ** sum of H(Y|X)} from class probabilities and latents."""
    num_classes = probs.shape[1]
    attributes = [1] if num_classes == 2 else list(range(num_classes))
    keep = max(2, int(round(probs.shape[0] * keep_fraction)))
    entropies = {space: [] for space in latents}
    for k in attributes:
        p = probs[:, k]
        confident = np.argsort(-np.maximum(p, 1 - p), kind='stable')[:keep]
        target = p[confident] > 0.5
        for space, value in latents.items():
            side = linear_svm_predict(value[confident], target)
            entropies[space].append(conditional_entropy_bits(side, target))
    return {space: float(2 ** np.sum(h)) for space, h in entropies.items()}


def run_ls(opts: MetricContext, num_samples: int, max_real: int = None, l2: float = 1e-3) -> dict[str, float]:
    labelled = opts.with_dataset(use_labels=True)
    dataset = labelled.open_dataset()
    if not dataset.has_labels:
        raise MetricError(f'{dataset.path}: linear separability needs class labels (dataset.json "labels")')
    if not dataset.has_onehot_labels:
        raise MetricError(f'{dataset.path}: linear separability needs class-index labels, not label vectors')
    if dataset.label_dim < 2:
        raise MetricError(f'{dataset.path}: linear separability needs at least two classes')
    real = dataset_features(labelled, 'inception', FEATURES, max_items=max_real, capture_all=True,
                            capture_labels=True, desc='real features (labelled)')
    gen = generator_features(opts, 'inception', FEATURES, num_items=num_samples, capture_all=True,
                             capture_latents=True)
    if opts.rank != 0:
        return dict(z=float('nan'), w=float('nan'), classifier_acc=float('nan'))

    features, classes = real.features(), real.extra('labels').argmax(axis=1)
    order = np.random.RandomState(opts.seed).permutation(len(classes))
    split = max(1, int(len(order) * 0.8))
    train, held_out = order[:split], order[split:]
    classifier = SoftmaxClassifier(dataset.label_dim, l2=l2).fit(features[train], classes[train])
    accuracy = float('nan')
    if len(held_out):
        accuracy = float((classifier.predict_proba(features[held_out]).argmax(1) == classes[held_out]).mean())

    probs = classifier.predict_proba(gen.features())
    scores = separability_scores(probs, dict(z=gen.extra('z'), w=gen.extra('w')))
    return dict(**scores, classifier_acc=accuracy)
