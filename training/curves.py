"""A run's training curves as one PNG, for those without TensorBoard: losses, D's scores, augment p and
every recorded metric over kimg (calc_metrics.py --plot).

Drawn with Pillow alone: one small panel per quantity, the x axis in kimg, each panel's y range its own
data's (min and max written at the axis).
"""
from __future__ import annotations

import glob
import math
import os
from typing import Sequence

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

from networks.snapshot import snapshot_nimg
from torch_utils.cli import UserError
from torch_utils.jsonl import read_jsonl
from torch_utils.media import save_image

# (panel title, stats.jsonl names drawn in it)
PANELS = (
    ('G loss', ('Loss/G/loss',)),
    ('D loss', ('Loss/D/loss',)),
    ('D scores: real, fake', ('Loss/scores/real', 'Loss/scores/fake')),
    ('augment p', ('Progress/augment',)),
    ('R1 penalty', ('Loss/r1_penalty',)),
    ('sec/kimg', ('Timing/sec_per_kimg',)),
)
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))
PANEL_W, PANEL_H, MARGIN = 380, 210, 46

Series = list[tuple[float, float]]


def run_curves(run_dir: str) -> list[tuple[str, dict[str, Series]]]:
    """(panel title, {name: [(kimg, value)]}) of a run: the PANELS present in stats.jsonl, then one panel per
    metric result (from metric-*.jsonl, at each snapshot's kimg)."""
    ticks = list(read_jsonl(os.path.join(run_dir, 'stats.jsonl')))
    if not ticks:
        raise UserError(f'{run_dir}: no stats.jsonl with ticks to plot')
    panels = []
    for title, names in PANELS:
        lines = {name: [(t['Progress/kimg']['mean'], t[name]['mean']) for t in ticks
                        if _number(t.get(name)) and _number(t.get('Progress/kimg'))] for name in names}
        lines = {name: points for name, points in lines.items() if points}
        if lines:
            panels.append((title, lines))
    metrics: dict[str, Series] = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(run_dir), 'metric-*.jsonl'))):
        for record in read_jsonl(path):
            kimg = snapshot_nimg(str(record.get('snapshot_pkl'))) / 1000
            results = record.get('results')
            if kimg < 0 or not isinstance(results, dict):
                continue
            for key, value in results.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    metrics.setdefault(key, []).append((kimg, float(value)))
    panels += [(key, {key: sorted(dict(points).items())}) for key, points in sorted(metrics.items())]
    return panels


def _number(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get('mean'), (int, float)) and math.isfinite(value['mean'])


def draw_curves(panels: Sequence[tuple[str, dict[str, Series]]], title: str = '') -> np.ndarray:
    """[H, W, 3] uint8: the panels on a grid of two columns."""
    cols = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / cols)
    head = 28 if title else 0
    image = PIL.Image.new('RGB', (cols * PANEL_W, head + rows * PANEL_H), 'white')
    draw = PIL.ImageDraw.Draw(image)
    font = PIL.ImageFont.load_default()
    if title:
        draw.text((8, 8), title, fill='black', font=font)
    for i, (name, lines) in enumerate(panels):
        r, c = divmod(i, cols)
        _panel(draw, font, c * PANEL_W, head + r * PANEL_H, name, lines)
    return np.asarray(image)


def _panel(draw, font, x0: int, y0: int, name: str, lines: dict[str, Series]) -> None:
    left, top, right, bottom = x0 + MARGIN + 10, y0 + 24, x0 + PANEL_W - 12, y0 + PANEL_H - 30
    xs = [x for points in lines.values() for x, _ in points]
    ys = [y for points in lines.values() for _, y in points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if x_hi == x_lo:
        x_hi = x_lo + 1
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    to_px = lambda x, y: (left + (x - x_lo) / (x_hi - x_lo) * (right - left),   # noqa: E731
                          bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top))
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    draw.text((x0 + 8, y0 + 6), name, fill='black', font=font)
    draw.text((x0 + 4, top - 4), f'{y_hi:.4g}', fill=(90, 90, 90), font=font)
    draw.text((x0 + 4, bottom - 8), f'{y_lo:.4g}', fill=(90, 90, 90), font=font)
    draw.text((left, bottom + 4), f'{x_lo:g}', fill=(90, 90, 90), font=font)
    draw.text((right - 60, bottom + 4), f'{x_hi:g} kimg', fill=(90, 90, 90), font=font)
    for k, (label, points) in enumerate(lines.items()):
        colour = COLOURS[k % len(COLOURS)]
        pts = [to_px(x, y) for x, y in points]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for px, py in pts if len(pts) <= 40 else pts[-1:]:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        if len(lines) > 1:
            draw.text((right - 150, top + 4 + 12 * k), label.split('/')[-1], fill=colour, font=font)


def plot_run(run_dir: str, path: str) -> str:
    """Draw a run's curves into the PNG `path`; returns it."""
    save_image(draw_curves(run_curves(run_dir), title=os.path.basename(os.path.normpath(run_dir))), path)
    return path
