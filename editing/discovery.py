"""Finding directions in W: GANSpace (PCA of sampled w), SeFa (eigenvectors of the style affines),
supervised (a linear model in W fitted to labels of generated images, labels.py) and class-mean directions
of a conditional generator; `discover` is directions.py --discover.

Every method is deterministic given its seed: latents come from `np.random.RandomState(seed)`, the
linear algebra runs in float64, and eigen/singular vectors get a fixed sign (`orthonormal_sign`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from torch_utils.media import to_uint8

from . import EditingError, check, labels as labelling
from .directions import CHECKS, Directions, merge_directions, orthonormal_sign, save_directions
from .edits import parse_layer_range
from .latents import resolve_sources

Labeller = Callable[[np.ndarray], dict]   # [N, H, W, C] uint8 images -> {name: [N] labels}
METHODS = ('ganspace', 'sefa', 'supervised')


def discover(G: torch.nn.Module, method: str, out_path: str, samples: Optional[int] = None, components: int = 32,
             layers: Optional[str] = None, labels_from: Optional[str] = None, seed: int = 0,
             class_idx: Optional[int] = None, truncation_psi: float = 1, include_torgb: bool = False,
             source: str = '') -> Directions:
    """Find directions with `method` (directions.py --discover and its options) and save them to `out_path`."""
    layer_range = parse_layer_range(G, layers) if layers else None
    if method == 'ganspace':
        d = ganspace(G, num_samples=samples or 10000, num_components=components, seed=seed,
                     layers=layer_range, class_idx=class_idx, source=source)
    elif method == 'sefa':
        d = sefa(G, num_components=components, layers=layer_range, include_torgb=include_torgb,
                 num_samples=samples or 2000, seed=seed, class_idx=class_idx, source=source)
    elif method == 'supervised':
        d = _supervised(G, labels_from, samples or 2000, seed, layer_range, class_idx, truncation_psi, source)
    else:
        raise EditingError(f'unknown discovery method {method!r} (choose from {", ".join(METHODS)})')
    save_directions(out_path, d)
    return d


def _supervised(G, labels_from, samples, seed, layer_range, class_idx, truncation_psi, source) -> Directions:
    if not labels_from:
        raise EditingError('--discover=supervised needs --labels-from (garments[:NAMES], module:function, FILE.json or classes)')
    if labels_from == 'classes':
        return class_directions(G, num_samples=samples, seed=seed, layers=layer_range, source=source)
    names = labelling.garment_names(labels_from)
    if names is not None:
        return garment_directions(G, names, num_samples=samples, seed=seed, layers=layer_range, class_idx=class_idx,
                                  truncation_psi=truncation_psi, source=source)
    if labelling.is_label_file(labels_from):
        seeds, labels = labelling.load_seed_labels(labels_from)
        ws = resolve_sources(G, seeds, truncation_psi, class_idx).ws
        return directions_from_labels(G, ws[:, 0].double().numpy(), labels, seed=seed, layers=layer_range,
                                      meta=dict(source=source, labels=labels_from, seeds=len(seeds)))
    labeller, name = labelling.resolve_labeller(labels_from)
    return supervised(G, labeller, num_samples=samples, seed=seed, layers=layer_range, class_idx=class_idx,
                      truncation_psi=truncation_psi, source=source, labeller_name=name)


# ---------------------------------------------------------------------------------------------
# Sampling.

def sample_latents(G: torch.nn.Module, num: int, seed: int = 0, class_idx: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """(z [N, z_dim], c [N, c_dim]) drawn from one RandomState; a conditional G without `class_idx` gets
    uniformly random classes."""
    rng = np.random.RandomState(seed)
    z = rng.randn(num, G.z_dim)
    c = np.zeros([num, G.c_dim], dtype=np.float32)
    if G.c_dim:
        if class_idx is not None and not 0 <= class_idx < G.c_dim:
            raise EditingError(f'class {class_idx} is out of range: the network has {G.c_dim} classes')
        classes = np.full(num, class_idx) if class_idx is not None else rng.randint(G.c_dim, size=num)
        c[np.arange(num), classes] = 1
    return z, c


@torch.no_grad()
def map_latents(G: torch.nn.Module, z: np.ndarray, c: np.ndarray, batch_size: int = 512,
                progress: Optional[str] = None) -> np.ndarray:
    """w [N, w_dim] (float64) = mapping(z, c), without truncation."""
    device = next(G.parameters()).device
    out = []
    starts = range(0, len(z), batch_size)
    for s in tqdm(starts, desc=progress, unit='batch', disable=progress is None, leave=False):
        ws = G.mapping(torch.from_numpy(z[s:s + batch_size]).to(device), torch.from_numpy(c[s:s + batch_size]).to(device))
        out.append(ws[:, 0].double().cpu().numpy())
    return np.concatenate(out)


def sample_w(G: torch.nn.Module, num: int, seed: int = 0, class_idx: Optional[int] = None,
             progress: Optional[str] = None) -> np.ndarray:
    z, c = sample_latents(G, num, seed, class_idx)
    return map_latents(G, z, c, progress=progress)


def std_along(w: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """[K] standard deviation of the samples' projections on each (unit) direction."""
    return ((w - w.mean(0)) @ vectors.T.astype(np.float64)).std(axis=0, ddof=1)


def _meta(G, **kwargs) -> dict:
    return dict(kwargs, family=G.family, img_resolution=int(G.img_resolution))


# ---------------------------------------------------------------------------------------------
# Unsupervised.

def ganspace(G: torch.nn.Module, num_samples: int = 10000, num_components: int = 32, seed: int = 0,
             layers: Optional[tuple[int, int]] = None, class_idx: Optional[int] = None, source: str = '') -> Directions:
    """Principal components of w = mapping(z) over `num_samples` latents, by decreasing variance (GANSpace,
    Haerkoenen et al. 2020). `scale` is each component's standard deviation."""
    if num_samples < 2:
        raise EditingError('GANSpace needs at least 2 samples')
    w = sample_w(G, num_samples, seed, class_idx, progress='sampling W')
    centred = w - w.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(num_components, vt.shape[0])
    vectors = orthonormal_sign(vt[:k])
    std = sv[:k] / np.sqrt(num_samples - 1)
    total = (sv ** 2).sum()
    start, stop = layers or (0, G.num_ws)
    return Directions(vectors=vectors, names=[f'pc{i}' for i in range(k)], layer_start=start, layer_stop=stop,
                      scale=np.maximum(std, 1e-12), method='ganspace', num_ws=G.num_ws,
                      meta=_meta(G, source=source, seed=seed, samples=num_samples, class_idx=class_idx),
                      stats=dict(explained_variance=(sv[:k] ** 2 / total)))


def sefa(G: torch.nn.Module, num_components: int = 32, layers: Optional[tuple[int, int]] = None,
         include_torgb: bool = False, num_samples: int = 2000, seed: int = 0, class_idx: Optional[int] = None,
         source: str = '') -> Directions:
    """Closed-form factorisation (SeFa, Shen & Zhou 2021): the top eigenvectors of A^T A, where A stacks the
    style affine weights [channels, w_dim] of the layers reading ws rows [start, stop), each row (one style
    channel) scaled to unit length. ToRGB layers are left out unless `include_torgb`, as in the paper.
    `num_samples` latents only measure each direction's std in W (the strength unit)."""
    start, stop = layers or (0, G.num_ws)
    chosen = [layer for layer in G.synthesis.style_layers()
              if start <= layer.w_index < stop and (include_torgb or not layer.is_torgb)]
    if not chosen:
        raise EditingError(f'ws rows {start}-{stop - 1} feed no modulated conv layers'
                         + ('' if include_torgb else ' (ToRGB layers are excluded)'))
    a = torch.cat([layer.module.affine.weight.detach().double().cpu() for layer in chosen]).numpy()
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    a = a[norms[:, 0] > 0] / norms[norms[:, 0] > 0]
    eigvals, eigvecs = np.linalg.eigh(a.T @ a)
    order = np.argsort(eigvals)[::-1]
    k = min(num_components, len(order))
    vectors = orthonormal_sign(eigvecs[:, order[:k]].T)
    w = sample_w(G, num_samples, seed, class_idx, progress='sampling W')
    return Directions(vectors=vectors, names=[f'sefa{i}' for i in range(k)], layer_start=start, layer_stop=stop,
                      scale=np.maximum(std_along(w, vectors), 1e-12), method='sefa', num_ws=G.num_ws,
                      meta=_meta(G, source=source, seed=seed, samples=num_samples, class_idx=class_idx,
                                 layers=[layer.name for layer in chosen]),
                      stats=dict(eigenvalue=eigvals[order[:k]]))


# ---------------------------------------------------------------------------------------------
# Supervised.

def _split(n: int, seed: int, held_out: float) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.RandomState(seed + 1).permutation(n)
    k = int(round(n * held_out))
    return perm[k:], perm[:k]


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1e-2) -> tuple[np.ndarray, float]:
    """(weights, intercept) minimising |y - xb - b0|^2 + alpha * tr(X^T X)/d * |b|^2 (centred x)."""
    mean_x, mean_y = x.mean(0), y.mean()
    xc = x - mean_x
    gram = xc.T @ xc
    lam = alpha * np.trace(gram) / gram.shape[0]
    beta = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ (y - mean_y))
    return beta, float(mean_y - mean_x @ beta)


def fit_logistic(x: np.ndarray, y: np.ndarray, alpha: float = 1e-2) -> tuple[np.ndarray, float]:
    """(weights, intercept) of L2-regularised logistic regression for 0/1 labels (L-BFGS on the mean log loss)."""
    mean_x = x.mean(0)
    unit = (x - mean_x).std() or 1.0            # one scalar: keeps the problem well scaled, directions unchanged
    xs = (x - mean_x) / unit
    y = y.astype(np.float64)

    def loss(params):
        b, b0 = params[:-1], params[-1]
        logits = xs @ b + b0
        value = np.mean(np.logaddexp(0, logits) - y * logits) + 0.5 * alpha * b @ b
        p = 1 / (1 + np.exp(-logits))
        grad_b = xs.T @ (p - y) / len(y) + alpha * b
        return value, np.concatenate([grad_b, [np.mean(p - y)]])

    import scipy.optimize   # here, not on top: 0.34 s of import (torch's: 0.75 s) that only fitting pays
    res = scipy.optimize.minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method='L-BFGS-B',
                                  options=dict(maxiter=500))
    b = res.x[:-1] / unit
    return b, float(res.x[-1] - mean_x @ b)


def is_binary(y: np.ndarray) -> bool:
    values = set(np.unique(y).tolist())
    return values <= {0, 1} and len(values) == 2


ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _held_out_score(fit, w, y, train, test, alpha, binary) -> float:
    b, b0 = fit(w[train], y[train], alpha)
    pred = w[test] @ b + b0
    if binary:
        return float(((pred > 0) == (y[test] > 0.5)).mean())
    return float(1 - ((y[test] - pred) ** 2).sum() / max(((y[test] - y[test].mean()) ** 2).sum(), 1e-12))


def fit_direction(w: np.ndarray, y: np.ndarray, seed: int = 0, held_out: float = 0.2,
                  alpha: Optional[float] = None) -> tuple[np.ndarray, dict]:
    """Unit direction in W along which `y` grows, and its held-out fit (accuracy for 0/1 labels, R^2 else).

    The regularisation strength is `alpha`, or (None) the best of ALPHAS on a held-out split; the reported
    score comes from a model fitted without the held-out samples (slightly optimistic when alpha was chosen
    on them), the direction from all of them."""
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y)
    w, y = w[keep], y[keep]
    if len(y) < 10 or np.ptp(y) == 0:
        raise EditingError(f'need at least 10 labelled samples with more than one distinct value (got {len(y)})')
    binary = is_binary(y)
    fit = fit_logistic if binary else fit_ridge
    train, test = _split(len(y), seed, held_out)
    scores = {a: _held_out_score(fit, w, y, train, test, a, binary) for a in ([alpha] if alpha is not None else ALPHAS)}
    best = max(scores, key=scores.get)
    b, _ = fit(w, y, best)
    norm = np.linalg.norm(b)
    if norm == 0:
        raise EditingError('the fitted direction is zero (labels do not depend on w)')
    return b / norm, dict(score=scores[best], alpha=best, kind='logistic' if binary else 'ridge', samples=int(len(y)))


@torch.no_grad()
def generate_for_labels(G: torch.nn.Module, num: int, seed: int = 0, class_idx: Optional[int] = None,
                        truncation_psi: float = 1, batch_size: int = 64, noise_mode: str = 'const') -> tuple[np.ndarray, np.ndarray]:
    """(w [N, w_dim] float64, images [N, H, W, C] uint8) for `num` random latents."""
    z, c = sample_latents(G, num, seed, class_idx)
    device = next(G.parameters()).device
    ws_all, imgs = [], []
    for s in tqdm(range(0, num, batch_size), desc='generating for labels', unit='batch', leave=False):
        ws = G.mapping(torch.from_numpy(z[s:s + batch_size]).to(device), torch.from_numpy(c[s:s + batch_size]).to(device),
                       truncation_psi=truncation_psi)
        imgs.append(to_uint8(G.synthesis(ws, noise_mode=noise_mode)))
        ws_all.append(ws[:, 0].double().cpu().numpy())
    return np.concatenate(ws_all), np.concatenate(imgs)


def supervised(G: torch.nn.Module, labeller: Labeller, num_samples: int = 2000, seed: int = 0,
               layers: Optional[tuple[int, int]] = None, class_idx: Optional[int] = None, truncation_psi: float = 1,
               alpha: Optional[float] = None, source: str = '', labeller_name: str = '') -> Directions:
    """One direction per label the labeller returns, fitted on `num_samples` generated images: logistic
    regression for 0/1 labels, ridge regression for measurements (InterFaceGAN-style)."""
    w, images = generate_for_labels(G, num_samples, seed, class_idx, truncation_psi)
    labels = labeller(images)
    return directions_from_labels(G, w, labels, seed=seed, layers=layers, alpha=alpha,
                                  meta=dict(source=source, seed=seed, samples=num_samples, class_idx=class_idx,
                                            truncation_psi=truncation_psi, labeller=labeller_name))


def directions_from_labels(G: torch.nn.Module, w: np.ndarray, labels: dict, seed: int = 0,
                           layers: Optional[tuple[int, int]] = None, alpha: Optional[float] = None,
                           meta: Optional[dict] = None) -> Directions:
    """Fit one direction per entry of `labels` ({name: [N] values}) against the samples' w [N, w_dim]."""
    if not labels:
        raise EditingError('the labeller returned no labels')
    names, vectors, scores, kinds, alphas = [], [], [], [], []
    for name, y in labels.items():
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(y) != len(w):
            raise EditingError(f'label {name!r} has {len(y)} values for {len(w)} samples')
        try:
            v, info = fit_direction(w, y, seed=seed, alpha=alpha)
        except ValueError as e:
            raise EditingError(f'label {name!r}: {e}') from None
        names.append(name)
        vectors.append(v)
        scores.append(info['score'])
        kinds.append(info['kind'])
        alphas.append(info['alpha'])
    vectors = np.stack(vectors)
    start, stop = layers or (0, G.num_ws)
    return Directions(vectors=vectors, names=names, layer_start=start, layer_stop=stop,
                      scale=np.maximum(std_along(w, vectors), 1e-12), method='supervised', num_ws=G.num_ws,
                      meta=_meta(G, **(meta or {}), models=kinds),
                      stats=dict(held_out_score=np.array(scores), alpha=np.array(alphas)))


# ---------------------------------------------------------------------------------------------
# Named after a garment attribute: found by the attribute's gradient, checked on held-out seeds.

PATH_STRENGTHS = (-3.0, -1.5, 1.5, 3.0)   # where along a first estimate the gradients are taken again


@torch.no_grad()
def _sample_ws(G: torch.nn.Module, num: int, seed: int, class_idx: Optional[int], truncation_psi: float,
               batch_size: int = 256) -> torch.Tensor:
    z, c = sample_latents(G, num, seed, class_idx)
    device = next(G.parameters()).device
    return torch.cat([G.mapping(torch.from_numpy(z[s:s + batch_size]).to(device), torch.from_numpy(c[s:s + batch_size]).to(device),
                                truncation_psi=truncation_psi).float() for s in range(0, num, batch_size)])


def attribute_gradients(G: torch.nn.Module, ws: torch.Tensor, rows: tuple[int, int],
                        attribute: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 32,
                        progress: Optional[str] = None) -> np.ndarray:
    """[N, w_dim] unit gradients, one per latent of ws [N, num_ws, w_dim], of attribute(image) with respect to
    one offset in W added to the ws rows [start, stop)."""
    device = ws.device
    rows_mask = torch.zeros(1, G.num_ws, 1, device=device)
    rows_mask[:, rows[0]:rows[1]] = 1
    out = []
    for s in tqdm(range(0, len(ws), batch_size), desc=progress, unit='batch', disable=progress is None, leave=False):
        offset = torch.zeros(len(ws[s:s + batch_size]), 1, G.w_dim, device=device, requires_grad=True)
        with torch.enable_grad():
            attribute(G.synthesis(ws[s:s + batch_size] + offset * rows_mask, noise_mode='const')).sum().backward()
        g = offset.grad[:, 0].double().cpu().numpy()
        out.append(g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-30))
    return np.concatenate(out)


def max_margin(gradients: np.ndarray, tau: float = 0.05, iterations: int = 300) -> np.ndarray:
    """The unit vector u that makes the smallest g.u over the rows g of `gradients` large (a smooth max-margin:
    L-BFGS on the mean softplus(-g.u / tau), from their mean): a direction along which the attribute grows
    for every latent the gradients were taken at, not only on average."""
    g = torch.from_numpy(np.asarray(gradients, dtype=np.float64))
    v = torch.nn.Parameter(g.mean(0).clone())
    opt = torch.optim.LBFGS([v], max_iter=iterations, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(g @ (v / v.norm())) / tau).mean()
        loss.backward()
        return loss
    opt.step(closure)
    u = (v / v.norm()).detach().numpy()
    if not np.all(np.isfinite(u)):
        raise EditingError('the attribute has no gradient in W (every image measures the same)')
    return u


def gradient_direction(G: torch.nn.Module, attribute: Callable[[torch.Tensor], torch.Tensor], rows: tuple[int, int],
                       num_samples: int = 2000, seed: int = 0, class_idx: Optional[int] = None,
                       truncation_psi: float = 1, path: Sequence[float] = PATH_STRENGTHS) -> tuple[np.ndarray, dict]:
    """(unit direction, stats) along which `attribute` ([N, C, H, W] images in [-1, 1] -> [N], differentiable)
    grows for (nearly) every one of `num_samples` latents: the max-margin vector of the attribute's gradients
    in W on the ws rows `rows`, taken at the latents and again where a first estimate moves them (`path`, in
    std of W along it), so that the direction also holds at the strengths edits use, where a linear fit of
    the attribute on w (`supervised`) follows the average garment and turns some of them the other way.
    stats: `grows_at`, the share of those gradients with a positive component along it; `scale`, the std
    of W (without truncation) along it."""
    ws = _sample_ws(G, num_samples, seed, class_idx, truncation_psi)
    gradients = [attribute_gradients(G, ws, rows, attribute, progress='attribute gradients')]
    v = max_margin(gradients[0])
    w = sample_w(G, num_samples, seed, class_idx)   # untruncated: the unit of strength, as for every direction
    scale = float(std_along(w, v[None])[0])
    for s in path:
        moved = ws.clone()
        moved[:, rows[0]:rows[1]] += torch.from_numpy(s * scale * v).to(ws)
        gradients.append(attribute_gradients(G, moved, rows, attribute, progress=f'gradients at strength {s:g}'))
    gradients = np.concatenate(gradients)
    v = max_margin(gradients)
    return v, dict(grows_at=float(((gradients @ v) > 0).mean()), scale=float(std_along(w, v[None])[0]))


def garment_directions(G: torch.nn.Module, names: Sequence[str], num_samples: int = 2000, seed: int = 0,
                       layers: Optional[tuple[int, int]] = None, class_idx: Optional[int] = None,
                       truncation_psi: float = 1, source: str = '',
                       classifier: Optional[torch.nn.Module] = None) -> Directions:
    """Directions named after measures of the synthetic garments (labels.garment_measures): by their gradient
    (`gradient_direction`) where the measure has a differentiable form (check.SOFT_MEASURES, on each one's own
    rows unless `layers`), by a linear fit on w (`supervised`) otherwise; then each is checked on held-out
    seeds (check.check_direction): `stat/check_worst` is its worst share of passing seeds, `meta['checks']`
    the counts (check.CheckResult)."""
    classifier = classifier if classifier is not None else check.garment_classifier(next(G.parameters()).device)
    parts = []
    for name in [n for n in names if n in check.SOFT_MEASURES]:
        rows = layers or parse_layer_range(G, check.ATTRIBUTE_LAYERS[name])
        v, info = gradient_direction(G, functools.partial(check.SOFT_MEASURES[name], classifier=classifier), rows,
                                     num_samples=num_samples, seed=seed, class_idx=class_idx, truncation_psi=truncation_psi)
        parts.append(Directions(vectors=v[None], names=[name], layer_start=rows[0], layer_stop=rows[1],
                                scale=max(info['scale'], 1e-12), method='gradient', num_ws=G.num_ws,
                                meta=_meta(G, source=source, seed=seed, samples=num_samples, class_idx=class_idx,
                                           truncation_psi=truncation_psi), stats=dict(grows_at=np.array([info['grows_at']]))))
    linear = [n for n in names if n not in check.SOFT_MEASURES]
    if linear:
        parts.append(supervised(G, lambda images: labelling.garment_measures(images, linear), num_samples=num_samples,
                                seed=seed, layers=layers, class_idx=class_idx, truncation_psi=truncation_psi,
                                source=source, labeller_name='garments:' + ','.join(linear)))
    d = merge_directions(parts, method='supervised')
    results = {name: check.check_direction(G, d, name, classifier, only_class=class_idx)
               for name in d.names if check.checkable(name)}
    d.stats['check_worst'] = np.array([results[n].worst if n in results else np.nan for n in d.names])
    d.meta[CHECKS] = {name: dataclasses.asdict(r) for name, r in results.items()}
    return d


def class_directions(G: torch.nn.Module, num_samples: int = 2000, seed: int = 0,
                     layers: Optional[tuple[int, int]] = None, class_names: Optional[Sequence[str]] = None,
                     source: str = '') -> Directions:
    """For a conditional G: direction k points from the mean w over all classes to the mean w of class k
    (`num_samples` latents per class, the same z for every class). `stat/class_shift` is the strength that
    moves the overall mean onto class k's mean; to turn class a into b, edit a:-shift_a and b:+shift_b."""
    if G.c_dim == 0:
        raise EditingError('class directions need a conditional network (this one has no classes)')
    if not class_names:   # one naming everywhere (the shipped file's too): class_<name> where G records names
        class_names = [f'class_{name}' for name in getattr(G, 'class_names', None) or range(G.c_dim)]
    names = list(class_names)
    if len(names) != G.c_dim:
        raise EditingError(f'{len(names)} class names given for {G.c_dim} classes')
    means, pooled = [], []
    for k in range(G.c_dim):
        z, c = sample_latents(G, num_samples, seed, class_idx=k)
        w = map_latents(G, z, c)
        means.append(w.mean(0))
        pooled.append(w - w.mean(0))
    means = np.stack(means)
    delta = means - means.mean(0)
    norm = np.linalg.norm(delta, axis=1)
    if np.any(norm == 0):
        raise EditingError('some class has the same mean w as the average over classes')
    vectors = delta / norm[:, None]
    scale = np.maximum(std_along(np.concatenate(pooled), vectors), 1e-12)
    start, stop = layers or (0, G.num_ws)
    return Directions(vectors=vectors, names=names, layer_start=start, layer_stop=stop, scale=scale,
                      method='classes', num_ws=G.num_ws,
                      meta=_meta(G, source=source, seed=seed, samples=num_samples),
                      stats=dict(class_shift=norm / scale))
