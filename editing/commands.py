"""The jobs behind gen_images.py, gen_video.py, style_mixing.py and directions.py.

Each job takes one options object whose fields are its script's command-line options, so that the scripts
only parse and the jobs can be called from Python (the web app, benchmarks) with the same names, and reads
top to bottom: what to render (latents.py), how to change it (edits.py), how to write it (render.py).
What every rendering job shares lives in `Session`: the snapshot actually read (a run directory resolves
to its newest snapshot, which is reported and recorded), the class check, latents with their edits, and
the JSON-lines record each run appends to its output folder.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional, Sequence, Union

from networks.generate import check_render_numbers, check_seed_range, device_from_option, set_input_transform
from networks.snapshot import export_pt, open_network
from torch_utils.cli import check_output_path
from torch_utils.jsonl import append_jsonl
from torch_utils.media import MAX_FPS

from . import EditingError, discovery, render
from .check import check_tables
from .directions import Directions, load_directions, save_directions
from .edits import Edit, apply_edits
from .latents import Latents, Sources, apply_noise_maps, check_class, keyframes, resolve_sources

Log = Callable[[str], None]
VIDEO_SUFFIXES = ('.mp4',)    # what render_interpolation writes (imageio's ffmpeg, H.264)
ALL_CLASSES = 'all'           # gen_images.py --class=all: one row per class


@dataclasses.dataclass
class RenderOptions:
    """Options every rendering script has (NVIDIA's names on the command line)."""
    network: str = ''
    truncation_psi: float = 1.0
    class_idx: Optional[Union[int, str]] = None   # an index or a recorded class name (check_class)
    noise_mode: str = 'const'
    device: str = 'auto'
    batch_size: int = 8
    outdir: Optional[str] = None
    directions: Optional[str] = None
    edit: Optional[Sequence[Edit]] = None


@dataclasses.dataclass
class ImageOptions(RenderOptions):
    """gen_images.py: one PNG per seed or latent, optionally edited, as a grid or an edit strip."""
    seeds: Sources = ()
    translate: tuple[float, float] = (0.0, 0.0)
    rotate: float = 0.0
    grid: bool = False
    export_pt: Optional[str] = None
    edit_strip: Optional[Sequence[float]] = None


@dataclasses.dataclass
class VideoOptions(RenderOptions):
    """gen_video.py: an interpolation video through seeds or latents (NVIDIA's gen_video.py options)."""
    seeds: Sources = ()
    output: Optional[str] = None           # default: OUTDIR/interpolation.mp4
    grid: tuple[int, int] = (1, 1)         # columns, rows of simultaneous interpolations
    num_keyframes: Optional[int] = None
    w_frames: int = 60
    kind: str = 'cubic'
    loop: bool = True
    fps: float = 30.0


@dataclasses.dataclass
class MixingOptions(RenderOptions):
    """style_mixing.py: rows keep their latents except the --styles rows, taken from the columns."""
    rows: Sources = ()
    cols: Sources = ()
    styles: str = 'fine'


@dataclasses.dataclass
class DiscoverOptions(RenderOptions):
    """directions.py --discover: find directions with ganspace, sefa or supervised and write them."""
    method: str = 'ganspace'
    samples: Optional[int] = None
    components: int = 32
    layers: Optional[str] = None
    labels_from: Optional[str] = None
    seed: int = 0
    include_torgb: bool = False


class Session:
    """A generator opened for one run of a script, with the settings its latents are made with."""

    def __init__(self, opts: RenderOptions, log: Log = print, needs_class: bool = True):
        self.started = time.time()
        self.opts = opts
        self.log = log
        _require_network(opts)
        self.device = device_from_option(opts.device)
        opened = open_network(opts.network, self.device, log=log)
        self.G, self.network = opened.G, opened.name
        self.class_idx = check_class(self.G, opts.class_idx, self.network, needs_class, log)
        self.directions = self._directions() if opts.edit else None

    def latents(self, items: Sources, edit: bool = True) -> Latents:
        """Seeds mapped and latents files read, in order (their noise maps put into G), then moved along
        --edit unless `edit` is False."""
        lat = resolve_sources(self.G, items, self.opts.truncation_psi, self.class_idx)
        apply_noise_maps(self.G, lat.noise)
        if not edit or not self.opts.edit:
            return lat
        return dataclasses.replace(lat, ws=apply_edits(lat.ws, self.directions, self.opts.edit, self.G))

    def _directions(self) -> Directions:
        """The directions file --edit names, checked against G and against the names."""
        path = self.opts.directions
        if not path:
            raise EditingError('--edit needs --directions=FILE.npz')
        d = load_directions(path)
        d.check_network(self.G, path)
        for e in self.opts.edit:
            d.index(e.name)
        return d

    def finish(self, script: str, paths: Sequence[str], folder: Optional[str] = None, what: Optional[str] = None,
               **fields) -> str:
        """Append the run's record to <script>.jsonl in `folder` (default OUTDIR); returns the closing line
        (`what` says what was written, default how many files where)."""
        seconds = round(time.time() - self.started, 3)
        outdir = folder or self.opts.outdir
        record = dict(network=self.network, device=str(self.device), truncation_psi=self.opts.truncation_psi,
                      noise_mode=self.opts.noise_mode, class_idx=self.class_idx, **fields, seconds=seconds)
        append_jsonl(os.path.join(outdir, f'{script}.jsonl'), record)
        return f'wrote {what or plural(len(paths), "file") + " to " + outdir} in {seconds:.1f} s'


def plural(n: int, noun: str) -> str:
    return f'{n} {noun}' + ('' if n == 1 else 's')


def _require_network(opts: RenderOptions) -> None:
    if not opts.network:
        raise EditingError('--network is required')


def _edits(opts: RenderOptions) -> list:
    return [[e.name, e.strength, e.layers] for e in opts.edit or []]


def _check_numbers(opts: RenderOptions, *sources: Sources) -> None:
    """Seeds, truncation and (gen_images) translation and rotation within what the network computes, before the
    snapshot is loaded (the scripts check seeds as they parse them; this is for callers from Python)."""
    count = 0
    for items in sources:
        for item in items:
            if isinstance(item, int):
                check_seed_range(item, item, count)
                count += 1
    check_render_numbers(opts.truncation_psi, getattr(opts, 'translate', (0, 0)), getattr(opts, 'rotate', 0))


def _require_outdir(opts: RenderOptions) -> None:
    """Checked before the snapshot is loaded: a missing or unusable option should not cost a load."""
    if not opts.outdir:
        raise EditingError('--outdir is required')
    check_output_path(opts.outdir, '--outdir')


def _outdir(opts: RenderOptions) -> str:
    _require_outdir(opts)
    os.makedirs(opts.outdir, exist_ok=True)
    return opts.outdir


# ---------------------------------------------------------------------------------------------
# The jobs.

def export_snapshot(opts: RenderOptions, path: str, log: Log = print) -> None:
    """gen_images.py --export-pt: the snapshot as a weights-only .pt file."""
    check_output_path(path, '--export-pt', folder=False)
    _require_network(opts)
    export_pt(open_network(opts.network, keys=None, log=log).data, path)
    log(f'wrote {path}')


def generate_images(opts: ImageOptions, log: Log = print) -> list[str]:
    """gen_images.py: PNGs of seeds and latents files, edited with --edit, or edit strips."""
    if opts.export_pt:
        export_snapshot(opts, opts.export_pt, log)
        return [opts.export_pt]
    if not opts.seeds:
        raise EditingError('--seeds is required (e.g. --seeds=0-7), or --ws=FILE.npz')
    if opts.edit_strip and not opts.edit:
        raise EditingError('--edit-strip needs --edit=NAMES (the directions to sweep)')
    _check_numbers(opts, opts.seeds)
    _require_outdir(opts)
    if opts.class_idx == ALL_CLASSES:
        return _every_class(opts, log)
    session = Session(opts, log, needs_class=any(isinstance(item, int) for item in opts.seeds))
    outdir = _outdir(opts)
    G = session.G
    moved = tuple(opts.translate) != (0, 0) or opts.rotate != 0
    if moved and not set_input_transform(G, opts.translate, opts.rotate):
        log('warning: --translate/--rotate apply to StyleGAN3 networks only; ignored')
    fields: dict = dict(translate=list(opts.translate), rotate=opts.rotate)
    if opts.edit_strip:
        if any(e.strength != 1 for e in opts.edit):
            log('note: with --edit-strip the strengths come from --edit-strip; those in --edit are not used')
        lat = session.latents(opts.seeds, edit=False)
        paths = render.write_edit_strip(G, lat, session.directions, opts.edit, opts.edit_strip, outdir,
                                      noise_mode=opts.noise_mode, batch_size=opts.batch_size)
        fields.update(mode='edit-strip', edits=[e.name for e in opts.edit], strengths=list(opts.edit_strip))
    elif opts.edit or not all(isinstance(item, int) for item in opts.seeds):
        lat = session.latents(opts.seeds)
        paths = render.write_images(G, lat, outdir, suffix='-edited' if opts.edit else '', noise_mode=opts.noise_mode,
                                  batch_size=opts.batch_size, grid=opts.grid)
        fields.update(mode='edit' if opts.edit else 'latents', images=len(lat.labels), edits=_edits(opts))
    else:
        paths = render.write_seed_images(G, list(opts.seeds), outdir, truncation_psi=opts.truncation_psi,
                                         class_idx=session.class_idx, noise_mode=opts.noise_mode,
                                         batch_size=opts.batch_size, device=session.device, grid=opts.grid)
        fields.update(mode='seeds', seeds=len(opts.seeds))
    log(session.finish('gen_images', paths, **fields))
    return paths


def _every_class(opts: ImageOptions, log: Log) -> list[str]:
    """gen_images.py --class=all: every seed in every class of a conditional network, one row per class."""
    if not all(isinstance(item, int) for item in opts.seeds) or opts.edit or opts.edit_strip:
        raise EditingError('--class=all takes seeds only (no --ws, --edit or --edit-strip)')
    session = Session(dataclasses.replace(opts, class_idx=None), log, needs_class=False)
    if not session.G.c_dim:
        raise EditingError(f'{session.network}: --class=all needs a conditional network; this one has no classes')
    paths = render.write_class_rows(session.G, list(opts.seeds), _outdir(opts), truncation_psi=opts.truncation_psi,
                                    noise_mode=opts.noise_mode, batch_size=opts.batch_size, device=session.device,
                                    grid=opts.grid)
    log(session.finish('gen_images', paths, mode='class-rows', seeds=len(opts.seeds), classes=int(session.G.c_dim)))
    return paths


def generate_video(opts: VideoOptions, log: Log = print) -> str:
    """gen_video.py: the interpolation video; returns its path."""
    items = keyframes(opts.seeds, opts.grid, opts.num_keyframes)
    _check_numbers(opts, opts.seeds)
    if not 1 <= opts.fps <= MAX_FPS:
        raise EditingError(f'--fps={opts.fps:g} is outside 1..{MAX_FPS} frames per second')
    if not opts.output:
        _require_outdir(opts)
    path = opts.output or os.path.join(opts.outdir, 'interpolation.mp4')   # the writer makes its folder
    if os.path.splitext(path)[1].lower() not in VIDEO_SUFFIXES:
        raise EditingError(f'--output={path}: videos are written as MP4 (H.264); give a file name ending in '
                           f'{" or ".join(VIDEO_SUFFIXES)}')
    check_output_path(path, '--output', folder=False)
    session = Session(opts, log, needs_class=any(isinstance(item, int) for item in items))
    lat = session.latents(items)
    frames = render.render_interpolation(session.G, lat.ws, path, frames_per_key=opts.w_frames, kind=opts.kind,
                                         loop=opts.loop, fps=opts.fps, noise_mode=opts.noise_mode,
                                         batch_size=opts.batch_size, grid=opts.grid)
    log(session.finish('gen_video', [path], folder=os.path.dirname(path) or '.', what=f'{path} ({frames} frames)',
                       frames=frames, kind=opts.kind,
                       loop=opts.loop, grid=list(opts.grid), keyframes=lat.labels, edits=_edits(opts)))
    return path


def style_mix(opts: MixingOptions, log: Log = print) -> list[str]:
    """style_mixing.py: mix-grid.png and mix-grid.json."""
    if not opts.rows or not opts.cols:
        raise EditingError('style mixing needs both --rows and --cols')
    _check_numbers(opts, opts.rows, opts.cols)
    _require_outdir(opts)
    session = Session(opts, log)
    outdir = _outdir(opts)
    paths = render.write_mixing(session.G, session.latents(opts.rows), session.latents(opts.cols), opts.styles, outdir,
                              noise_mode=opts.noise_mode, batch_size=opts.batch_size)
    log(session.finish('style_mixing', paths, rows=len(opts.rows), cols=len(opts.cols), styles=opts.styles,
                       edits=_edits(opts)))
    return paths


def discover_directions(opts: DiscoverOptions, log: Log = print) -> Directions:
    """directions.py --discover: find directions and write them to opts.directions."""
    if not opts.directions:
        raise EditingError('--discover needs --directions=OUT.npz')
    _check_numbers(opts)
    session = Session(opts, log, needs_class=False)
    d = discovery.discover(session.G, opts.method, opts.directions, samples=opts.samples, components=opts.components,
                      layers=opts.layers, labels_from=opts.labels_from, seed=opts.seed, class_idx=session.class_idx,
                      truncation_psi=opts.truncation_psi, include_torgb=opts.include_torgb, source=session.network)
    log('\n'.join(d.describe() + check_tables(d)))
    log(f'wrote {opts.directions}')
    return d


def edit_directions_file(path: str, renames: Optional[dict] = None) -> Directions:
    """directions.py --list / --rename: the directions of a file, renamed (and saved) when asked."""
    d = load_directions(path)
    if renames:
        d = d.renamed(renames)
        save_directions(path, d)
    return d
