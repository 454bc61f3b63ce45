"""The quality bar of the shipped garment model (issue 16), measured with the garment classifier.

- Conditional accuracy: for each class, `num_per_class` samples at truncation 1 are classified; the rate
  at which they get their requested class stands next to the same rate on up to `num_per_class` training
  images of that class (the classifier's own ceiling on this data).
- `fid_garments`: Fréchet distance between classifier features of `num_fid` samples (labels drawn from the
  training set's, as NVIDIA's metrics do) and of the whole training set, for the model, for a baseline
  snapshot of the same run (1 kimg), and between two random halves of the training set. The model passes
  when its figure is at most `split + 0.25 * (baseline - split)`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
from tqdm import tqdm

from data.dataset import ImageFolderDataset
from data.synthetic_garments import COLOUR_NAMES, COLOURS
from metrics.frechet import frechet_distance
from metrics.garment_classifier import GarmentClassifier
from torch_utils.atomic import atomic_write

PASS_FRACTION = 0.25
MIN_ACCURACY = 0.8


@torch.no_grad()
def classify(classifier: GarmentClassifier, images: np.ndarray, batch: int = 256,
             head: str = 'class_logits') -> tuple[np.ndarray, np.ndarray]:
    """(predicted class [N], features [N, F]) of uint8 images [N, H, W, C]; with `head='colour_logits'` the
    predicted colour (an index into synthetic_garments.COLOUR_NAMES) instead of the class."""
    device = next(classifier.parameters()).device
    classes, features = [], []
    for i in range(0, len(images), batch):
        out = classifier.predict(torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).to(device).permute(0, 3, 1, 2))
        classes.append(out[head].argmax(1).cpu().numpy())
        features.append(out['features'].double().cpu().numpy())
    return np.concatenate(classes), np.concatenate(features)


@torch.no_grad()
def generate(G: torch.nn.Module, labels: np.ndarray, seed: int, truncation_psi: float = 1.0, batch: int = 100,
             desc: Optional[str] = None) -> np.ndarray:
    """uint8 images [N, H, W, C] for class indices `labels` [N], z from `seed` (drawn on the CPU, so the
    same on every device), constant noise; runs on G's device. A progress bar named `desc` where given."""
    device = next(G.parameters()).device
    z_all = np.random.RandomState(seed).randn(len(labels), G.z_dim).astype(np.float32)
    out = []
    bar = tqdm(total=len(labels), desc=desc, unit='img', disable=desc is None)
    for i in range(0, len(labels), batch):
        z = torch.from_numpy(z_all[i:i + batch])
        c = torch.zeros([len(z), G.c_dim])
        if G.c_dim:
            c[torch.arange(len(z)), torch.from_numpy(labels[i:i + batch])] = 1
        img = G(z.to(device), c.to(device), truncation_psi=truncation_psi, noise_mode='const')
        out.append((img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy())
        bar.update(len(z))
    bar.close()
    return np.concatenate(out)


def load_training_set(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Every image [N, H, W, C] and class index [N] of a labelled dataset (no mirroring)."""
    ds = ImageFolderDataset(path, use_labels=True)
    images = np.stack([ds[i][0].transpose(1, 2, 0) for i in range(len(ds))])
    labels = np.asarray([int(np.argmax(ds.get_label(i))) for i in range(len(ds))])
    return images, labels


def _fid(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False, bias=True), b.mean(0), np.cov(b, rowvar=False, bias=True))


def evaluate(G: torch.nn.Module, baseline: Optional[torch.nn.Module], classifier: GarmentClassifier,
             images: np.ndarray, labels: np.ndarray, class_names: list[str], num_fid: int = 10000,
             num_per_class: int = 1000, seed: int = 0, log=print) -> dict:
    rng = np.random.RandomState(seed)
    real_pred, real_feat = classify(classifier, images)
    result: dict = dict(num_fid=num_fid, num_per_class=num_per_class, classes={})
    for k, name in enumerate(class_names):
        mine = np.flatnonzero(labels == k)[:num_per_class]
        fake = generate(G, np.full(num_per_class, k), seed=seed + 1000 * (k + 1), desc=f'{name} samples')
        fake_pred, _ = classify(classifier, fake)
        result['classes'][name] = dict(samples=float((fake_pred == k).mean()), training=float((real_pred[mine] == k).mean()),
                                       num_training=int(len(mine)))
        log(f'{name}: samples {result["classes"][name]["samples"]:.3f}, training {result["classes"][name]["training"]:.3f}')
    result['accuracy_samples'] = float(np.mean([v['samples'] for v in result['classes'].values()]))
    result['accuracy_training'] = float(np.mean([v['training'] for v in result['classes'].values()]))
    fid_labels = labels[rng.randint(len(labels), size=num_fid)]
    _, fake_feat = classify(classifier, generate(G, fid_labels, seed=seed, desc='fid samples'))
    result['fid_model'] = _fid(fake_feat, real_feat)
    log(f'fid_garments model: {result["fid_model"]:.3f}')
    half = rng.permutation(len(images))
    result['fid_split_halves'] = _fid(real_feat[half[:len(half) // 2]], real_feat[half[len(half) // 2:]])
    if baseline is not None:
        _, base_feat = classify(classifier, generate(baseline, fid_labels, seed=seed, desc='baseline fid samples'))
        result['fid_baseline'] = _fid(base_feat, real_feat)
        result['fid_threshold'] = result['fid_split_halves'] + PASS_FRACTION * (result['fid_baseline'] - result['fid_split_halves'])
        result['pass_fid'] = bool(result['fid_model'] <= result['fid_threshold'])
    result['pass_accuracy'] = bool(min(v['samples'] for v in result['classes'].values()) >= MIN_ACCURACY)
    return result


def truncation_sweep(G: torch.nn.Module, classifier: GarmentClassifier, class_names: list[str],
                     truncations: list[float], num_per_class: int = 200, seed: int = 0, log=print) -> list[dict]:
    """Per truncation: the class accuracy of `num_per_class` samples of each class (z seeds as `evaluate`'s)
    and the share of all samples the classifier reads as each of the training set's 12 colours, which the
    training set draws equally often. `covered` counts the colours with at least a quarter of that share."""
    rows = []
    for psi in truncations:
        accuracy, colours = {}, []
        for k, name in enumerate(class_names):
            fake = generate(G, np.full(num_per_class, k), seed=seed + 1000 * (k + 1), truncation_psi=psi,
                            desc=f'{name} at {psi:g}')
            accuracy[name] = float((classify(classifier, fake)[0] == k).mean())
            colours.append(classify(classifier, fake, head='colour_logits')[0])
        share = np.bincount(np.concatenate(colours), minlength=len(COLOUR_NAMES)) / (num_per_class * len(class_names))
        rows.append(dict(truncation=psi, accuracy=accuracy, min_accuracy=min(accuracy.values()),
                         colour_share=dict(zip(COLOUR_NAMES, share.round(4).tolist())),
                         covered=int((share >= 0.25 / len(COLOUR_NAMES)).sum())))
        log(f'truncation {psi:g}: worst class {min(accuracy, key=accuracy.get)} {rows[-1]["min_accuracy"]:.3f}, '
            f'{rows[-1]["covered"]} of {len(COLOUR_NAMES)} colours')
    return rows


def colour_coverage_figure(rows: list[dict], path: str, bar: int = 18, height: int = 90) -> None:
    """A PNG: per truncation, one bar per training colour (drawn in that colour) as high as its share of the
    samples, the training set's share (1/12) as a grey line, and the worst class accuracy."""
    left, gap, top = 80, 4, 6
    scale = height / 0.3                      # a 30% share fills the panel
    width = left + len(COLOUR_NAMES) * (bar + gap) + 190
    image = PIL.Image.new('RGB', (width, top + len(rows) * (height + 26)), 'white')
    draw = PIL.ImageDraw.Draw(image)
    for r, row in enumerate(rows):
        base = top + r * (height + 26) + height
        draw.text((6, base - height // 2 - 6), f'psi {row["truncation"]:g}', fill='black')
        for i, name in enumerate(COLOUR_NAMES):
            x = left + i * (bar + gap)
            h = min(height, round(row['colour_share'][name] * scale))
            draw.rectangle([x, base - h, x + bar - 1, base], fill=COLOURS[name], outline=(90, 90, 90))
        even = base - round(scale / len(COLOUR_NAMES))
        draw.line([left - 2, even, left + len(COLOUR_NAMES) * (bar + gap), even], fill=(150, 150, 150))
        draw.text((left + len(COLOUR_NAMES) * (bar + gap) + 8, base - height // 2 - 12),
                  f'{row["covered"]} of {len(COLOUR_NAMES)} colours\nworst class {row["min_accuracy"]:.2f}', fill='black')
        draw.line([0, base + 13, width, base + 13], fill=(225, 225, 225))
    atomic_write(path, lambda f: image.save(f, format='PNG'))


def format_table(r: dict) -> str:
    lines = [f'{"class":<14}{"samples":>9}{"training":>10}',
             *(f'{name:<14}{v["samples"]:>9.3f}{v["training"]:>10.3f}' for name, v in r['classes'].items()),
             f'{"mean":<14}{r["accuracy_samples"]:>9.3f}{r["accuracy_training"]:>10.3f}', '',
             f'fid_garments ({r["num_fid"]} samples vs the training set)',
             f'  model           {r["fid_model"]:.3f}', f'  split halves    {r["fid_split_halves"]:.3f}']
    if 'fid_baseline' in r:
        lines += [f'  1-kimg baseline {r["fid_baseline"]:.3f}', f'  pass threshold  {r["fid_threshold"]:.3f}  '
                  f'({"pass" if r["pass_fid"] else "FAIL"})']
    lines.append(f'accuracy >= {MIN_ACCURACY:.0%} for every class: {"pass" if r["pass_accuracy"] else "FAIL"}')
    return '\n'.join(lines)
