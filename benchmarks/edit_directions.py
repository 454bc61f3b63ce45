#!/usr/bin/env python3
"""Do supervised directions edit what they claim? Measured on the pretrained garment model (or a given snapshot).

Fits supervised directions (ridge regression in W on attributes measured from generated images: darkness
of the colour, sleeve extent), then moves held-out seeds along each direction and measures, per strength,
every attribute and the garment class (nearest-centroid on silhouettes, fitted on rendered garments).
A random direction scaled the same way is the control. Also checks that GANSpace and SeFa directions of
the same network are orthonormal and reproducible.

  # the pretrained garment model (pretrained/, the default):
  python benchmarks/edit_directions.py --figures=docs/figures
  # a small network trained here first (hours on a busy 2-core CPU, minutes on a GPU):
  python benchmarks/edit_directions.py --train-kimg=40 --res=16 --workdir=edit-bench
  # a given snapshot:
  python benchmarks/edit_directions.py --network=runs/00000-.../network-snapshot-000040.pkl --figures=docs/figures

Prints a table, appends one JSON line per attribute to --json-out, and writes an edit strip and a
strength/attribute chart per attribute to --figures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import click
import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from editing import discovery                                  # noqa: E402
from editing.directions import Directions                      # noqa: E402
from editing.edits import Edit, apply_edits                     # noqa: E402
from editing.labels import classify_garments, garment_measures  # noqa: E402
from generation.seeds import seeds_to_ws, synthesize          # noqa: E402
from networks.snapshot import find_latest_snapshot, load_generator  # noqa: E402
from torch_utils.media import image_grid, save_image           # noqa: E402
from torch_utils.jsonl import append_jsonl                      # noqa: E402


def train_network(workdir: str, res: int, kimg: float, batch: int) -> str:
    outdir = os.path.join(workdir, 'runs')
    cmd = [sys.executable, os.path.join(REPO, 'train.py'), f'--outdir={outdir}', '--cfg=stylegan2',
           f'--data=synthetic:garments?n=4000&resolution={res}', '--gpus=1', f'--batch={batch}', '--gamma=0.2',
           '--cbase=512' if res <= 16 else '--cbase=1024', '--cmax=32', '--map-depth=2', '--aug=noaug',
           f'--kimg={kimg}', '--tick=1', '--snap=2', '--metrics=none', '--workers=1']
    print(' '.join(cmd))
    subprocess.run(cmd, check=True, cwd=REPO)
    found = find_latest_snapshot(outdir)
    if found is None:
        raise click.ClickException(f'{outdir}: training wrote no snapshot')
    return found


def random_direction(G, w: np.ndarray, seed: int) -> Directions:
    v = np.random.RandomState(seed).randn(1, G.w_dim)
    v /= np.linalg.norm(v)
    return Directions(vectors=v, names=['random'], layer_start=0, layer_stop=G.num_ws,
                      scale=discovery.std_along(w, v), method='control', num_ws=G.num_ws)


def sweep(G, d: Directions, name: str, ws: torch.Tensor, strengths: list[float], measures: list[str]) -> dict:
    """Per strength: images, every measure [S, N], predicted class [S, N]."""
    images, values, classes = [], {m: [] for m in measures}, []
    for s in strengths:
        imgs = synthesize(G, apply_edits(ws, d, [Edit(name, s)]), batch_size=64)
        images.append(imgs)
        got = garment_measures(imgs, measures)
        for m in measures:
            values[m].append(got[m])
        classes.append(classify_garments(imgs))
    return dict(images=np.stack(images), values={m: np.stack(v) for m, v in values.items()}, classes=np.stack(classes))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if np.std(rx) == 0 or np.std(ry) == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def summarise(result: dict, attribute: str, strengths: list[float]) -> dict:
    v = result['values'][attribute]                       # [S, N]
    mean = v.mean(axis=1)
    zero = strengths.index(0.0)
    per_seed = [spearman(np.asarray(strengths), v[:, i]) for i in range(v.shape[1])]
    class_kept = (result['classes'] == result['classes'][zero][None]).mean(axis=1)
    return dict(mean=[round(float(x), 4) for x in mean], std=[round(float(x), 4) for x in v.std(axis=1)],
                mean_monotonic=bool(np.all(np.diff(mean) > 0)),
                per_seed_spearman_median=round(float(np.median(per_seed)), 3),
                seeds_monotonic=round(float(np.mean([np.all(np.diff(v[:, i]) >= 0) for i in range(v.shape[1])])), 3),
                class_kept=[round(float(x), 3) for x in class_kept],
                others={m: [round(float(x), 4) for x in vals.mean(axis=1)] for m, vals in result['values'].items() if m != attribute})


def chart(path: str, strengths: list[float], series: dict[str, tuple[list, list]], title: str, size=(420, 300)) -> None:
    """A small line chart (mean +- std per strength) drawn with PIL, so no plotting library is needed."""
    w, h = size
    left, right, top, bottom = 56, 16, 28, 40
    img = PIL.Image.new('RGB', size, 'white')
    dr = PIL.ImageDraw.Draw(img)
    lo = min(min(np.asarray(m) - np.asarray(s)) for m, s in series.values())
    hi = max(max(np.asarray(m) + np.asarray(s)) for m, s in series.values())
    pad = (hi - lo) * 0.05 or 0.01
    lo, hi = lo - pad, hi + pad
    x0, x1 = min(strengths), max(strengths)

    def px(x, y):
        return left + (x - x0) / (x1 - x0) * (w - left - right), top + (hi - y) / (hi - lo) * (h - top - bottom)
    dr.rectangle([left, top, w - right, h - bottom], outline='black')
    for x in strengths:
        X, _ = px(x, lo)
        dr.line([X, h - bottom, X, h - bottom + 4], fill='black')
        dr.text((X - 8, h - bottom + 6), f'{x:g}', fill='black')
    for k in range(5):
        y = lo + (hi - lo) * k / 4
        _, Y = px(x0, y)
        dr.line([left - 4, Y, left, Y], fill='black')
        dr.text((4, Y - 6), f'{y:.3f}', fill='black')
    dr.text((left, 6), title, fill='black')
    dr.text((w // 2 - 30, h - 16), 'strength (std of W)', fill='black')
    colours = ['#1f4e9c', '#b03030', '#2d7d3a', '#8a5a00']
    for (label, (mean, std)), colour in zip(series.items(), colours):
        pts = [px(x, m) for x, m in zip(strengths, mean)]
        for x, m, s in zip(strengths, mean, std):
            X, Ya = px(x, m - s)
            _, Yb = px(x, m + s)
            dr.line([X, Ya, X, Yb], fill=colour)
        dr.line(pts, fill=colour, width=2)
        for X, Y in pts:
            dr.ellipse([X - 3, Y - 3, X + 3, Y + 3], fill=colour)
    for k, (label, colour) in enumerate(zip(series, colours)):
        dr.line([left + 8, top + 12 + 14 * k, left + 24, top + 12 + 14 * k], fill=colour, width=2)
        dr.text((left + 28, top + 6 + 14 * k), label, fill=colour)
    img.save(path)


def strip_figure(path: str, images: np.ndarray, rows: int, scale: int = 4) -> None:
    """Rows = seeds, columns = strengths, upscaled so 16-32 px garments are visible."""
    s, n = images.shape[:2]
    cells = [images[j, i] for i in range(min(rows, n)) for j in range(s)]
    grid = image_grid(cells, cols=s)
    big = np.asarray(PIL.Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), PIL.Image.NEAREST))
    save_image(big, path)


@click.command()
@click.option('--network', help='Snapshot or short name to measure  [default: garments, or the network --train-kimg trains]')
@click.option('--train-kimg', type=float, help='Train a network of --res for this long first, and measure it')
@click.option('--res', type=int, default=16, show_default=True, help='Resolution of the network trained here')
@click.option('--batch', type=int, default=16, show_default=True)
@click.option('--workdir', envvar='SG3C_EDIT_WORKDIR', metavar='DIR',
              help='Where the network is trained (env SG3C_EDIT_WORKDIR)  [default: a new temporary folder]')
@click.option('--attributes', default='darkness,sleeve', show_default=True)
@click.option('--samples', type=int, default=3000, show_default=True, help='Generated images the directions are fitted on')
@click.option('--eval-seeds', type=int, default=200, show_default=True, help='Held-out seeds edited (100000 onwards)')
@click.option('--strengths', default='-3,-2,-1,0,1,2,3', show_default=True)
@click.option('--figures', default=None, help='Directory for the strip and chart PNGs')
@click.option('--json-out', default=None, help='Append results as JSON lines here')
@click.option('--device', default='cpu', show_default=True)
def main(network, train_kimg, res, batch, workdir, attributes, samples, eval_seeds, strengths, figures, json_out, device):
    if not network and train_kimg:
        workdir = workdir or tempfile.mkdtemp(prefix='sg3c-edit-bench-')   # kept: the trained network is reusable
        print(f'training in {workdir}')
        network = train_network(workdir, res, train_kimg, batch)
    network = network or 'garments'
    torch.manual_seed(0)
    G = load_generator(network, device=device)
    attrs = [a.strip() for a in attributes.split(',') if a.strip()]
    strengths = [float(s) for s in strengths.split(',')]
    if 0.0 not in strengths:
        raise click.BadParameter('the strengths must include 0')

    # Unsupervised directions of the same network: orthonormal and reproducible.
    checks = {}
    for method, make in (('ganspace', lambda: discovery.ganspace(G, num_samples=5000, num_components=16, seed=0)),
                         ('sefa', lambda: discovery.sefa(G, num_components=16, num_samples=1000, seed=0))):
        a, b = make(), make()
        v = a.vectors.astype(np.float64)
        checks[method] = dict(max_abs_gram_minus_identity=float(np.abs(v @ v.T - np.eye(len(v))).max()),
                              identical_rerun=bool(np.array_equal(a.vectors, b.vectors) and np.array_equal(a.scale, b.scale)))
    print(json.dumps(dict(network=network, unsupervised=checks)))

    d = discovery.supervised(G, lambda imgs: garment_measures(imgs, attrs), num_samples=samples, seed=0,
                             labeller_name='garments:' + ','.join(attrs))
    # Held-out seeds; a conditional network draws seed s as class s mod c_dim, so every class is edited.
    ws = torch.cat([seeds_to_ws(G, [s], class_idx=s % G.c_dim if G.c_dim else None)
                    for s in range(100000, 100000 + eval_seeds)])
    w_fit = discovery.sample_w(G, samples, seed=0)
    control = random_direction(G, w_fit, seed=7)
    rows = []
    for i, attr in enumerate(attrs):
        result = sweep(G, d, attr, ws, strengths, attrs)
        ctrl = sweep(G, control, 'random', ws, strengths, attrs)
        summary = summarise(result, attr, strengths)
        control_summary = summarise(ctrl, attr, strengths)
        row = dict(network=network, attribute=attr, fit_held_out_r2=round(float(d.stats['held_out_score'][i]), 3),
                   fit_samples=samples, eval_seeds=eval_seeds, strengths=strengths, edit=summary,
                   control_random_direction=dict(mean=control_summary['mean'], class_kept=control_summary['class_kept']),
                   unsupervised=checks)
        rows.append(row)
        print(f'\n{attr}: held-out R^2 of the fit {row["fit_held_out_r2"]}')
        print(f'  {"strength":>8s} {"mean":>8s} {"std":>8s} {"class kept":>10s} {"random dir":>10s}')
        for k, s in enumerate(strengths):
            print(f'  {s:8g} {summary["mean"][k]:8.4f} {summary["std"][k]:8.4f} {summary["class_kept"][k]:10.3f} '
                  f'{control_summary["mean"][k]:10.4f}')
        print(f'  monotonic mean: {summary["mean_monotonic"]}, per-seed Spearman median '
              f'{summary["per_seed_spearman_median"]}, seeds monotonic {summary["seeds_monotonic"]}')
        if figures:
            os.makedirs(figures, exist_ok=True)
            strip_figure(os.path.join(figures, f'edit-{attr}-strip.png'), result['images'], rows=8)
            v, c = result['values'][attr], ctrl['values'][attr]
            chart(os.path.join(figures, f'edit-{attr}-curve.png'), strengths,
                  {f'{attr} direction': (list(v.mean(1)), list(v.std(1) / np.sqrt(v.shape[1]))),
                   'random direction': (list(c.mean(1)), list(c.std(1) / np.sqrt(c.shape[1])))},
                  title=f'measured {attr} vs edit strength (mean +- s.e., {v.shape[1]} seeds)')
    if json_out:
        for row in rows:
            append_jsonl(json_out, row, allow_nan=True)


if __name__ == '__main__':
    main()
