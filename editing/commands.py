"""The jobs behind gen_video.py, style_mixing.py, directions.py and gen_images.py's edits and latents files
(gen_images.py --seeds alone is generation.images.generate_images).

Each job takes one options object whose fields are its script's command-line options (generation.images
holds those every rendering script shares), so that the scripts only parse and the jobs can be called from
Python (the web app, benchmarks) with the same names, and reads top to bottom: what to render (latents.py),
how to change it (edits.py), how to write it (render.py). What every job shares is generation's `Session`
(the opened network, the class check, the run's record), here with latents and their edits (`EditSession`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from generation.images import (ALL_CLASSES, ImageOptions, Log, RenderOptions, Session, Sources, check_image_options,
                               check_numbers, make_outdir, require_outdir, transform_input)
from torch_utils.cli import check_output_path
from torch_utils.media import MAX_FPS

from . import EditingError, discovery, render
from .check import check_tables
from .directions import Directions, load_directions, save_directions
from .edits import apply_edits
from .latents import Latents, apply_noise_maps, keyframes, resolve_sources

VIDEO_SUFFIXES = ('.mp4',)    # what render_interpolation writes (imageio's ffmpeg, H.264)


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


class EditSession(Session):
    """generation's Session with the directions --edit names, and latents made from seeds and files."""

    def __init__(self, opts: RenderOptions, log: Log = print, needs_class: bool = True):
        super().__init__(opts, log, needs_class)
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


def _edits(opts: RenderOptions) -> list:
    return [[e.name, e.strength, e.layers] for e in opts.edit or []]


# ---------------------------------------------------------------------------------------------
# The jobs.

def edit_images(opts: ImageOptions, log: Log = print) -> list[str]:
    """gen_images.py with --edit, --edit-strip or latents files (--ws): edited PNGs, edit strips, or the
    latents' images."""
    check_image_options(opts)
    if opts.class_idx == ALL_CLASSES:
        raise EditingError('--class=all takes seeds only (no --ws, --edit or --edit-strip)')
    session = EditSession(opts, log, needs_class=any(isinstance(item, int) for item in opts.seeds))
    outdir = make_outdir(opts)
    G = session.G
    fields = transform_input(session, opts)
    if opts.edit_strip:
        if any(e.strength != 1 for e in opts.edit):
            log('note: with --edit-strip the strengths come from --edit-strip; those in --edit are not used')
        lat = session.latents(opts.seeds, edit=False)
        paths = render.write_edit_strip(G, lat, session.directions, opts.edit, opts.edit_strip, outdir,
                                        noise_mode=opts.noise_mode, batch_size=opts.batch_size)
        fields.update(mode='edit-strip', edits=[e.name for e in opts.edit], strengths=list(opts.edit_strip))
    else:
        lat = session.latents(opts.seeds)
        paths = render.write_images(G, lat, outdir, suffix='-edited' if opts.edit else '', noise_mode=opts.noise_mode,
                                    batch_size=opts.batch_size, grid=opts.grid)
        fields.update(mode='edit' if opts.edit else 'latents', images=len(lat.labels), edits=_edits(opts))
    log(session.finish('gen_images', paths, **fields))
    return paths


def generate_video(opts: VideoOptions, log: Log = print) -> str:
    """gen_video.py: the interpolation video; returns its path."""
    items = keyframes(opts.seeds, opts.grid, opts.num_keyframes)
    check_numbers(opts, opts.seeds)
    if not 1 <= opts.fps <= MAX_FPS:
        raise EditingError(f'--fps={opts.fps:g} is outside 1..{MAX_FPS} frames per second')
    if not opts.output:
        require_outdir(opts)
    path = opts.output or os.path.join(opts.outdir, 'interpolation.mp4')   # the writer makes its folder
    if os.path.splitext(path)[1].lower() not in VIDEO_SUFFIXES:
        raise EditingError(f'--output={path}: videos are written as MP4 (H.264); give a file name ending in '
                           f'{" or ".join(VIDEO_SUFFIXES)}')
    check_output_path(path, '--output', folder=False)
    session = EditSession(opts, log, needs_class=any(isinstance(item, int) for item in items))
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
    check_numbers(opts, opts.rows, opts.cols)
    require_outdir(opts)
    session = EditSession(opts, log)
    outdir = make_outdir(opts)
    paths = render.write_mixing(session.G, session.latents(opts.rows), session.latents(opts.cols), opts.styles, outdir,
                              noise_mode=opts.noise_mode, batch_size=opts.batch_size)
    log(session.finish('style_mixing', paths, rows=len(opts.rows), cols=len(opts.cols), styles=opts.styles,
                       edits=_edits(opts)))
    return paths


def discover_directions(opts: DiscoverOptions, log: Log = print) -> Directions:
    """directions.py --discover: find directions and write them to opts.directions."""
    if not opts.directions:
        raise EditingError('--discover needs --directions=OUT.npz')
    check_numbers(opts)
    session = EditSession(opts, log, needs_class=False)
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
