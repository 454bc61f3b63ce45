"""Procedural flat-lay garments on white: the offline demo set, test data, and ground truth for edits.

Six classes (t-shirt, long-sleeve, dress, trousers, skirt, jacket) drawn as silhouettes with sloped
shoulders, necklines, sleeves or legs, waistbands, hems and zips, in one of twelve named colours with a
solid, striped, dotted or checked pattern, and slightly varied in size, proportions and position.

Every image is fully described by its attribute dict (class, colour, sleeve length, pattern and the sampled
geometry), and `render_garment(attrs, resolution)` redraws it from that dict alone. Changing one entry and
re-rendering gives the counterfactual image ("same shirt, longer sleeves"), which is what checking an
editing direction needs. The `measure_*` functions read attributes back from pixels.

Shapes are drawn with PIL on a canvas several times larger than the output and box-filtered down, so edges
are anti-aliased without the ringing a Lanczos filter leaves around dark garments.
"""
from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import PIL.Image
import PIL.ImageDraw

CLASSES = ('t-shirt', 'long-sleeve', 'dress', 'trousers', 'skirt', 'jacket')
PATTERNS = ('solid', 'stripes', 'dots', 'checks')
COLOURS = {
    'black': (32, 32, 36), 'grey': (130, 130, 134), 'navy': (28, 42, 96), 'blue': (48, 108, 200),
    'red': (192, 36, 40), 'green': (38, 128, 68), 'yellow': (232, 196, 48), 'pink': (236, 140, 172),
    'brown': (112, 72, 44), 'beige': (206, 180, 138), 'purple': (108, 58, 150), 'orange': (236, 118, 34),
}
COLOUR_NAMES = tuple(COLOURS)
SLEEVED = ('t-shirt', 'long-sleeve', 'dress', 'jacket')
# Sleeve length as a fraction of a full (wrist-length) sleeve; 0 = sleeveless.
SLEEVE_RANGE = {'t-shirt': (0.18, 0.42), 'long-sleeve': (0.75, 1.0), 'dress': (0.0, 0.45), 'jacket': (0.85, 1.0),
                'trousers': (0.0, 0.0), 'skirt': (0.0, 0.0)}
PATTERN_PROBS = (0.55, 0.15, 0.15, 0.15)
VERSION = 1             # bump when the drawing changes, so that cached synthetic datasets are rebuilt
FULL_SLEEVE = 0.42      # length of a wrist-length sleeve, in units of the garment scale
SLEEVE_ANGLE = 30.0     # degrees from vertical: arms of a flat-lay shirt point down and out


# ---------------------------------------------------------------------------------------------
# Attributes.

def sample_attributes(rng: np.random.RandomState, cls: Optional[str] = None) -> dict:
    """Random attributes (semantic and geometric) of one garment; all JSON-serialisable."""
    cls = cls or CLASSES[rng.randint(len(CLASSES))]
    colour_idx = rng.randint(len(COLOUR_NAMES))
    colour = np.clip(np.asarray(COLOURS[COLOUR_NAMES[colour_idx]]) + rng.randint(-12, 13, size=3), 0, 255)
    lo, hi = SLEEVE_RANGE[cls]
    sleeve = float(rng.uniform(lo, hi)) if hi > 0 else 0.0
    if cls == 'dress' and rng.rand() < 0.35:
        sleeve = 0.0
    pattern_idx = int(rng.choice(len(PATTERNS), p=PATTERN_PROBS))
    return dict(
        class_idx=CLASSES.index(cls), class_name=cls,
        colour=[int(v) for v in colour], colour_name=COLOUR_NAMES[colour_idx], colour_idx=int(colour_idx),
        sleeve_length=round(sleeve, 4),
        pattern=PATTERNS[pattern_idx], pattern_idx=pattern_idx,
        # Geometry: size, placement and proportions (fractions of the canvas / of the garment scale).
        scale=round(float(rng.uniform(0.80, 0.92)), 4),
        offset=[round(float(v), 4) for v in rng.uniform(-0.025, 0.025, size=2)],
        width=round(float(rng.uniform(0.9, 1.1)), 4),
        length=round(float(rng.uniform(0.92, 1.08)), 4),
        neckline='v' if cls in ('t-shirt', 'dress') and rng.rand() < 0.3 else 'round',
        pattern_period=round(float(rng.uniform(0.085, 0.115)), 4),
        pattern_phase=[round(float(v), 4) for v in rng.uniform(0, 1, size=2)],
    )


# ---------------------------------------------------------------------------------------------
# Geometry: polygons in canvas units ([0, 1] on both axes, y down).

def _sleeve(shoulder, armpit, side: int, length: float, cuff_half: float) -> list:
    """Quadrilateral from the armhole (shoulder..armpit) to a cuff perpendicular to the arm direction."""
    angle = np.radians(SLEEVE_ANGLE)
    d = np.array([side * np.sin(angle), np.cos(angle)])
    n = np.array([d[1], -d[0]]) * side         # perpendicular, pointing up/outwards
    mid = (np.asarray(shoulder) + np.asarray(armpit)) / 2
    cuff = mid + d * length
    return [tuple(shoulder), tuple(cuff + n * cuff_half), tuple(cuff - n * cuff_half), tuple(armpit)]


def _shapes(a: dict) -> tuple[list, list, list]:
    """(garment polygons/ellipses, cut-outs, detail lines) for one attribute dict."""
    cls, s = a['class_name'], a['scale']
    cx, cy = 0.5 + a['offset'][0], 0.5 + a['offset'][1]
    wf, lf = a['width'], a['length']
    fill, cut, lines = [], [], []     # entries: ('poly', points) / ('ellipse', box); lines: (points, width)

    def neck(x, y, half_w, depth):
        if a['neckline'] == 'v':
            cut.append(('poly', [(x - half_w, y - 0.01), (x + half_w, y - 0.01), (x, y + depth * 2.2)]))
        else:
            cut.append(('ellipse', [x - half_w, y - depth, x + half_w, y + depth]))

    if cls in ('t-shirt', 'long-sleeve', 'jacket'):
        jacket = cls == 'jacket'
        half = 0.19 * s * wf
        top, bottom = cy - 0.30 * s * lf, cy + (0.40 if jacket else 0.32) * s * lf
        drop = 0.035 * s                                   # shoulder slope
        neck_half = 0.065 * s
        shoulder_l, shoulder_r = (cx - half - 0.015 * s, top + drop), (cx + half + 0.015 * s, top + drop)
        armpit_dy = 0.17 * s
        body = [(cx - neck_half, top), (cx + neck_half, top), shoulder_r, (cx + half, shoulder_r[1] + armpit_dy),
                (cx + half * 0.98, bottom), (cx - half * 0.98, bottom), (cx - half, shoulder_l[1] + armpit_dy), shoulder_l]
        fill.append(('poly', body))
        if a['sleeve_length'] > 0:
            length = a['sleeve_length'] * FULL_SLEEVE * s
            cuff = (0.085 - 0.035 * a['sleeve_length']) * s
            for shoulder, side in ((shoulder_l, -1), (shoulder_r, 1)):
                armpit = (shoulder[0] - side * 0.015 * s, shoulder[1] + armpit_dy)
                fill.append(('poly', _sleeve(shoulder, armpit, side, length, cuff)))
                if cls != 't-shirt':   # ribbed cuffs on long sleeves
                    q = _sleeve(shoulder, armpit, side, length - 0.025 * s, cuff)
                    lines.append(([q[1], q[2]], 0.006 * s))
        lines.append(([(cx - half * 0.98, bottom - 0.03 * s), (cx + half * 0.98, bottom - 0.03 * s)], 0.005 * s))
        if jacket:   # stand collar instead of a neckline, zip, pocket flaps
            collar_top = top - 0.045 * s
            fill.append(('poly', [(cx - neck_half - 0.025 * s, top + 0.01 * s), (cx - neck_half + 0.005 * s, collar_top),
                                  (cx + neck_half - 0.005 * s, collar_top), (cx + neck_half + 0.025 * s, top + 0.01 * s)]))
            lines.append(([(cx - neck_half - 0.02 * s, top + 0.005 * s), (cx + neck_half + 0.02 * s, top + 0.005 * s)],
                          0.007 * s))
            lines.append(([(cx, collar_top), (cx, bottom)], 0.008 * s))
            for side in (-1, 1):
                px = cx + side * half * 0.55
                lines.append(([(px - 0.05 * s, bottom - 0.15 * s), (px + 0.05 * s, bottom - 0.15 * s)], 0.006 * s))
        else:
            neck(cx, top, neck_half, 0.045 * s)
    elif cls == 'dress':
        top, waist, hem = cy - 0.42 * s * lf, cy - 0.08 * s * lf, cy + 0.44 * s * lf
        shoulder_half, waist_half, hem_half = 0.15 * s * wf, 0.115 * s * wf, 0.31 * s * wf
        neck_half = 0.06 * s
        if a['sleeve_length'] > 0:
            sl, sr = (cx - shoulder_half, top + 0.02 * s), (cx + shoulder_half, top + 0.02 * s)
            armpit_dy = 0.13 * s
            length = a['sleeve_length'] * FULL_SLEEVE * s
            for shoulder, side in ((sl, -1), (sr, 1)):
                armpit = (shoulder[0] - side * 0.01 * s, shoulder[1] + armpit_dy)
                fill.append(('poly', _sleeve(shoulder, armpit, side, length, 0.07 * s)))
            bodice = [(cx - neck_half, top), (cx + neck_half, top), sr, (cx + shoulder_half - 0.01 * s, sr[1] + armpit_dy),
                      (cx + waist_half, waist), (cx - waist_half, waist), (cx - shoulder_half + 0.01 * s, sl[1] + armpit_dy), sl]
        else:   # straps and a scooped armhole
            strap = 0.035 * s
            bodice = [(cx - neck_half - strap, top), (cx - neck_half, top), (cx + neck_half, top),
                      (cx + neck_half + strap, top), (cx + shoulder_half, top + 0.15 * s),
                      (cx + waist_half, waist), (cx - waist_half, waist), (cx - shoulder_half, top + 0.15 * s)]
        fill.append(('poly', bodice))
        fill.append(('poly', [(cx - waist_half, waist), (cx + waist_half, waist), (cx + hem_half, hem),
                              (cx - hem_half, hem)]))
        neck(cx, top, neck_half, 0.05 * s)
        lines.append(([(cx - waist_half, waist), (cx + waist_half, waist)], 0.006 * s))
    elif cls == 'trousers':
        top, crotch, hem = cy - 0.44 * s * lf, cy - 0.14 * s * lf, cy + 0.45 * s * lf
        half, hem_leg = 0.19 * s * wf, 0.085 * s * wf
        gap = 0.012 * s
        fill.append(('poly', [(cx - half, top), (cx + half, top), (cx + half * 1.04, crotch), (cx - half * 1.04, crotch)]))
        for side in (-1, 1):
            outer, inner = cx + side * half * 1.04, cx + side * gap
            hem_outer = cx + side * (gap + 2 * hem_leg + 0.01 * s)
            fill.append(('poly', [(inner, crotch - 0.001), (outer, crotch - 0.001), (hem_outer, hem), (inner + side * 0.01 * s, hem)]))
        lines.append(([(cx - half, top + 0.04 * s), (cx + half, top + 0.04 * s)], 0.006 * s))   # waistband
        lines.append(([(cx, top + 0.04 * s), (cx, crotch - 0.02 * s)], 0.005 * s))              # fly
    elif cls == 'skirt':
        top, hem = cy - 0.26 * s * lf, cy + 0.28 * s * lf
        half_top, half_hem = 0.17 * s * wf, 0.31 * s * wf
        fill.append(('poly', [(cx - half_top, top), (cx + half_top, top), (cx + half_hem, hem), (cx - half_hem, hem)]))
        lines.append(([(cx - half_top, top + 0.045 * s), (cx + half_top, top + 0.045 * s)], 0.006 * s))
    else:
        raise ValueError(f'unknown garment class {cls!r} (choose from {", ".join(CLASSES)})')
    return fill, cut, lines


# ---------------------------------------------------------------------------------------------
# Rendering.

@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in canvas units, shared by every garment of one size."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    return t[None, :], t[:, None]


def _supersample(resolution: int) -> int:
    return 4 if resolution <= 64 else 2


def _pattern_mask(a: dict, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Where the accent colour goes, in a frame that moves and scales with the garment."""
    period = a['pattern_period'] * a['scale']
    u = (xx - 0.5 - a['offset'][0]) / period + a['pattern_phase'][0]
    v = (yy - 0.5 - a['offset'][1]) / period + a['pattern_phase'][1]
    if a['pattern'] == 'stripes':
        return np.broadcast_to(v % 1.0 < 0.3, np.broadcast_shapes(u.shape, v.shape))
    if a['pattern'] == 'dots':
        return np.hypot(u % 1.0 - 0.5, v % 1.0 - 0.5) < 0.22
    if a['pattern'] == 'checks':   # windowpane: thin lines both ways, so the base colour stays the majority
        return ((u % 1.0) < 0.15) | ((v % 1.0) < 0.15)
    return np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=bool)


def accent_colour(colour) -> np.ndarray:
    """Pattern colour: darker on light garments, lighter on dark ones, so patterns always show."""
    colour = np.asarray(colour, dtype=np.float32)
    return np.clip(colour * 0.55, 0, 255) if colour.mean() > 100 else np.clip(colour + 95, 0, 255)


def render_garment(attrs: dict, resolution: int) -> np.ndarray:
    """One garment from its attribute dict, as [resolution, resolution, 3] uint8 on white."""
    ss = _supersample(resolution)
    size = resolution * ss

    def draw(shapes, lines=()):
        img = PIL.Image.new('L', (size, size), 0)
        d = PIL.ImageDraw.Draw(img)
        for kind, pts in shapes:
            if kind == 'poly':
                d.polygon([(x * size, y * size) for x, y in pts], fill=255)
            else:
                d.ellipse([pts[0] * size, pts[1] * size, pts[2] * size, pts[3] * size], fill=255)
        for pts, width in lines:
            d.line([(x * size, y * size) for x, y in pts], fill=255, width=max(1, int(round(width * size))))
        return np.asarray(img) > 127

    fill, cut, lines = _shapes(attrs)
    mask = draw(fill) & ~draw(cut)
    details = draw([], lines) & mask
    xx, yy = _grid(size)

    colour = np.asarray(attrs['colour'], dtype=np.float32)
    texture = np.empty([size, size, 3], dtype=np.float32)
    texture[:] = colour
    pattern = _pattern_mask(attrs, xx, yy)
    texture[pattern] = accent_colour(colour)
    # Soft fold shading: a little darker towards the sides, as cloth lying flat under a top light.
    cx = 0.5 + attrs['offset'][0]
    shade = 1.0 - 0.10 * np.clip(np.abs(xx - cx) / (0.4 * attrs['scale']), 0, 1) ** 2
    texture *= shade[..., None]
    texture[details] *= 0.72                      # seams, zips, waistbands

    image = np.where(mask[..., None], texture, np.float32(255))
    image = image.reshape(resolution, ss, resolution, ss, 3).mean(axis=(1, 3))   # box filter = exact area coverage
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def garment_attributes(num: int, seed: int = 0, classes: Optional[list[str]] = None) -> list[dict]:
    """The attribute dicts `render_garments(num, ..., seed, classes)` draws, without rendering."""
    rng = np.random.RandomState(seed)
    return [sample_attributes(rng, None if classes is None else classes[rng.randint(len(classes))])
            for _ in range(num)]


def render_garments(num: int, resolution: int = 64, seed: int = 0,
                    classes: Optional[list[str]] = None) -> tuple[np.ndarray, list[dict]]:
    """`num` random garments as [N, H, W, 3] uint8 plus one attribute dict each; the same seed gives the same set.

    `classes` restricts the draw to some of CLASSES (default all six, equally likely)."""
    if resolution < 8:
        raise ValueError(f'resolution {resolution} is too small for a garment (minimum 8)')
    attributes = garment_attributes(num, seed, classes)
    images = np.empty([num, resolution, resolution, 3], dtype=np.uint8)
    for i, a in enumerate(attributes):
        images[i] = render_garment(a, resolution)
    return images, attributes


# ---------------------------------------------------------------------------------------------
# Reading attributes back from pixels (for generated or edited images as much as for rendered ones).

def garment_mask(images: np.ndarray, threshold: float = 40) -> np.ndarray:
    """[N, H, W] bool: pixels clearly different from the white background."""
    return (255 - np.asarray(images, dtype=np.float32)).max(axis=-1) > threshold


def measure_colour(images: np.ndarray) -> np.ndarray:
    """[N, 3] per-channel median of garment pixels; patterns cover well under half, so this is the base colour."""
    images = np.asarray(images)
    out = np.full([len(images), 3], 255.0)
    for i, (img, m) in enumerate(zip(images, garment_mask(images))):
        if m.any():
            out[i] = np.median(img[m].astype(np.float32), axis=0)
    return out


def classify_colour(images: np.ndarray) -> np.ndarray:
    """[N] index into COLOUR_NAMES of the nearest named colour (allowing for the fold shading)."""
    rgb = measure_colour(images) / 0.97
    palette = np.asarray([COLOURS[n] for n in COLOUR_NAMES], dtype=np.float32)
    return np.argmin(((rgb[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)


def measure_darkness(images: np.ndarray) -> np.ndarray:
    """[N] 1 - luma of the garment colour, in [0, 1]."""
    return 1 - (measure_colour(images) @ np.array([0.299, 0.587, 0.114])) / 255


def measure_coverage(images: np.ndarray) -> np.ndarray:
    """[N] fraction of the image covered by the garment."""
    return garment_mask(images).mean(axis=(1, 2))


def measure_sleeve_extent(images: np.ndarray) -> np.ndarray:
    """[N] how far the garment reaches sideways beyond its narrowest part (sleeves), per side, as a fraction of
    the image width.

    The narrowest row is the torso below the sleeves for a top and the waist for a dress; only rows above it
    count, so a dress's flared skirt does not read as sleeves. Image-width units (not garment height) keep
    tops and dresses on one scale."""
    out = np.zeros(len(images))
    for i, m in enumerate(garment_mask(images)):
        rows = np.nonzero(m.any(axis=1))[0]
        if rows.size < 4:
            continue
        r0, r1 = rows[0], rows[-1]
        height = r1 - r0 + 1
        lo, hi = r0 + height // 8, r1 - max(1, height // 32)
        extent = np.zeros(m.shape[0])
        for r in range(r0, r1 + 1):
            cols = np.nonzero(m[r])[0]
            extent[r] = cols[-1] - cols[0] + 1 if cols.size else 0
        middle = extent[lo:hi + 1]
        narrow_row = lo + (len(middle) - 1 - np.argmin(middle[::-1]))   # lowest of the narrowest rows
        out[i] = (extent[r0:narrow_row + 1].max() - extent[narrow_row]) / 2 / m.shape[1]
    return out


def measure_pattern_features(images: np.ndarray) -> np.ndarray:
    """[N, 2]: (texture energy, vertical share of it) inside the garment, away from its edges.

    Solid garments have almost no energy; stripes (horizontal bands) put nearly all of it in the vertical
    gradient; dots and checks spread it over both directions."""
    images = np.asarray(images, dtype=np.float32).mean(axis=-1)
    mask = garment_mask(np.asarray(images)[..., None].repeat(3, -1))
    inner = mask.copy()
    for axis in (1, 2):
        for shift in (-2, -1, 1, 2):
            inner &= np.roll(mask, shift, axis=axis)
    gy = np.abs(np.diff(images, axis=1))[:, :, :-1]
    gx = np.abs(np.diff(images, axis=2))[:, :-1, :]
    inner = inner[:, :-1, :-1]
    out = np.zeros([len(images), 2])
    for i in range(len(images)):
        if inner[i].any():
            ey, ex = gy[i][inner[i]].mean(), gx[i][inner[i]].mean()
            out[i] = [ey + ex, ey / max(ey + ex, 1e-6)]
    return out


def attribute_table(attributes: list[dict], key: str, default=None) -> np.ndarray:
    """One attribute of every garment as an array (e.g. 'sleeve_length', 'class_idx')."""
    return np.asarray([a.get(key, default) for a in attributes])
