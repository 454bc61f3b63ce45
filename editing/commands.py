"""The jobs behind gen_images.py, gen_video.py, style_mixing.py and directions.py.

Each job takes one options object whose fields are its script's command-line options, so that the scripts
only parse and the jobs can be called from Python (the web app, benchmarks) with the same names.
What every rendering job shares lives in `Session`: the snapshot actually read (a run directory resolves
to its newest snapshot, which is reported and recorded), the class and transform checks, latents with
their edits, and the JSON-lines record each run appends to its output folder.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional, Sequence, Union

import torch

from networks import generate
from networks.snapshot import export_pt, find_latest_snapshot, load_generator, load_snapshot
from torch_utils.jsonl import append_jsonl

from . import jobs
from .directions import Directions, load_directions, save_directions
from .edits import Edit
from .errors import EditingError
from .sources import Latents, apply_noise_maps, resolve_sources

Log = Callable[[str], None]
Sources = Sequence[Union[int, str]]


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
        self.network = resolve_network(opts.network, log)
        self.device = generate.default_device() if opts.device == 'auto' else torch.device(opts.device)
        self.G = load_generator(self.network, device=self.device)
        self.class_idx = check_class(self.G, opts.class_idx, self.network, needs_class, log)
        self.directions = self._directions() if opts.edit else None

    def latents(self, items: Sources, edit: bool = True) -> Latents:
        """Seeds mapped and latents files read, in order (their noise maps put into G), then moved along
        --edit unless `edit` is False."""
        lat = resolve_sources(self.G, items, self.opts.truncation_psi, self.class_idx)
        apply_noise_maps(self.G, lat.noise)
        return jobs.edit_latents(self.G, lat, self.directions, self.opts.edit if edit else None)

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

    def finish(self, script: str, paths: Sequence[str], folder: Optional[str] = None, **fields) -> str:
        """Append the run's record to <script>.jsonl in `folder` (default OUTDIR); returns the closing line."""
        seconds = round(time.time() - self.started, 3)
        outdir = folder or self.opts.outdir
        record = dict(network=self.network, device=str(self.device), truncation_psi=self.opts.truncation_psi,
                      noise_mode=self.opts.noise_mode, class_idx=self.class_idx, **fields, seconds=seconds)
        append_jsonl(os.path.join(outdir, f'{script}.jsonl'), record)
        return f'wrote {plural(len(paths), "file")} to {outdir} in {seconds:.1f} s'


def plural(n: int, noun: str) -> str:
    return f'{n} {noun}' + ('' if n == 1 else 's')


def resolve_network(network: str, log: Log) -> str:
    """The snapshot a --network names: a run directory (or a folder of runs) gives its newest snapshot."""
    if not network:
        raise EditingError('--network is required')
    if os.path.isdir(network):
        picked = find_latest_snapshot(network)
        if picked is not None:
            log(f'using {picked}')
            return picked
    return network


def check_class(G: torch.nn.Module, class_idx: Optional[Union[int, str]], network: str, needs_class: bool,
                log: Log) -> Optional[int]:
    """--class as an index, or as a name that the snapshot records (G.class_names)."""
    if G.c_dim == 0:
        if class_idx is not None:
            log('warning: --class is ignored, the network is unconditional')
        return None
    if class_idx is None:
        if needs_class:
            raise EditingError(f'{network}: the network is conditional ({G.c_dim} classes): '
                               f'pass --class={generate.class_choices(G)}')
        return None
    try:
        return generate.class_index(G, class_idx)
    except generate.ClassLabelError as e:
        raise EditingError(f'{network}: --class: {e}') from None


def _edits(opts: RenderOptions) -> list:
    return [[e.name, e.strength, e.layers] for e in opts.edit or []]


def _require_outdir(opts: RenderOptions) -> None:
    """Checked before the snapshot is loaded: a missing option should not cost a load."""
    if not opts.outdir:
        raise EditingError('--outdir is required')


def _outdir(opts: RenderOptions) -> str:
    _require_outdir(opts)
    os.makedirs(opts.outdir, exist_ok=True)
    return opts.outdir


# ---------------------------------------------------------------------------------------------
# The jobs.

def export_snapshot(network: str, path: str, log: Log = print) -> None:
    """gen_images.py --export-pt: the snapshot as a weights-only .pt file."""
    export_pt(load_snapshot(resolve_network(network, log)), path)
    log(f'wrote {path}')


def generate_images(opts: ImageOptions, log: Log = print) -> list[str]:
    """gen_images.py: PNGs of seeds and latents files, edited with --edit, or edit strips."""
    if opts.export_pt:
        export_snapshot(opts.network, opts.export_pt, log)
        return [opts.export_pt]
    if not opts.seeds:
        raise EditingError('--seeds is required (e.g. --seeds=0-7), or --ws=FILE.npz')
    if opts.edit_strip and not opts.edit:
        raise EditingError('--edit-strip needs --edit=NAMES (the directions to sweep)')
    _require_outdir(opts)
    session = Session(opts, log, needs_class=any(isinstance(item, int) for item in opts.seeds))
    outdir = _outdir(opts)
    G = session.G
    moved = tuple(opts.translate) != (0, 0) or opts.rotate != 0
    if moved and not generate.set_input_transform(G, opts.translate, opts.rotate):
        log('warning: --translate/--rotate apply to StyleGAN3 networks only; ignored')
    fields: dict = dict(translate=list(opts.translate), rotate=opts.rotate)
    if opts.edit_strip:
        if any(e.strength != 1 for e in opts.edit):
            log('note: with --edit-strip the strengths come from --edit-strip; those in --edit are not used')
        lat = session.latents(opts.seeds, edit=False)
        paths = jobs.write_edit_strip(G, lat, session.directions, opts.edit, opts.edit_strip, outdir,
                                      noise_mode=opts.noise_mode, batch_size=opts.batch_size)
        fields.update(mode='edit-strip', edits=[e.name for e in opts.edit], strengths=list(opts.edit_strip))
    elif opts.edit or not all(isinstance(item, int) for item in opts.seeds):
        lat = session.latents(opts.seeds)
        paths = jobs.write_images(G, lat, outdir, suffix='-edited' if opts.edit else '', noise_mode=opts.noise_mode,
                                  batch_size=opts.batch_size, grid=opts.grid)
        fields.update(mode='edit' if opts.edit else 'latents', images=len(lat.labels), edits=_edits(opts))
    else:
        paths = _seed_images(session, list(opts.seeds), outdir, opts.grid)
        fields.update(mode='seeds', seeds=len(opts.seeds))
    log(session.finish('gen_images', paths, **fields))
    return paths


def _seed_images(session: Session, seeds: list[int], outdir: str, grid: bool) -> list[str]:
    """Seeds rendered exactly as NVIDIA's gen_images.py does (z from the seed, one forward pass)."""
    from tqdm import tqdm
    opts = session.opts
    images, paths = [], []
    stream = generate.generate_from_seeds(session.G, seeds, truncation_psi=opts.truncation_psi,
                                          class_idx=session.class_idx, noise_mode=opts.noise_mode,
                                          batch_size=opts.batch_size, device=session.device)
    for seed, image in tqdm(stream, total=len(seeds), desc='generating', unit='img'):
        paths.append(os.path.join(outdir, f'seed{seed:04d}.png'))
        generate.save_image(image, paths[-1])
        if grid:
            images.append(image)
    if grid:
        paths.append(os.path.join(outdir, 'grid.png'))
        generate.save_image(generate.image_grid(images), paths[-1])
    return paths


def keyframes(seeds: Sources, grid: tuple[int, int], num_keyframes: Optional[int]) -> list[Union[int, str]]:
    """The keyframe list of a video grid: every cell gets `num_keyframes` consecutive entries; without it
    the seeds must split evenly over the cells; with it they are repeated cyclically as far as needed."""
    cells = grid[0] * grid[1]
    items = list(seeds)
    if not items:
        raise EditingError('--seeds is required (e.g. --seeds=0-7), or --ws=FILE.npz')
    if num_keyframes is None:
        if len(items) % cells:
            raise EditingError(f'{len(items)} seeds do not split evenly over a {grid[0]}x{grid[1]} grid: '
                               f'give a multiple of {cells} or --num-keyframes')
        return items
    return [items[i % len(items)] for i in range(num_keyframes * cells)]


def generate_video(opts: VideoOptions, log: Log = print) -> str:
    """gen_video.py: the interpolation video; returns its path."""
    items = keyframes(opts.seeds, opts.grid, opts.num_keyframes)
    if not opts.output:
        _require_outdir(opts)
    path = opts.output or os.path.join(opts.outdir, 'interpolation.mp4')   # the writer makes its folder
    session = Session(opts, log, needs_class=any(isinstance(item, int) for item in items))
    lat = session.latents(items)
    frames = jobs.write_video(session.G, lat, path, frames_per_key=opts.w_frames, kind=opts.kind, loop=opts.loop,
                              fps=opts.fps, noise_mode=opts.noise_mode, batch_size=opts.batch_size, grid=opts.grid)
    log(session.finish('gen_video', [path], folder=os.path.dirname(path) or '.', frames=frames, kind=opts.kind,
                       loop=opts.loop, grid=list(opts.grid), keyframes=lat.labels, edits=_edits(opts)))
    return path


def style_mix(opts: MixingOptions, log: Log = print) -> list[str]:
    """style_mixing.py: mix-grid.png and mix-grid.json."""
    if not opts.rows or not opts.cols:
        raise EditingError('style mixing needs both --rows and --cols')
    _require_outdir(opts)
    session = Session(opts, log)
    outdir = _outdir(opts)
    paths = jobs.write_mixing(session.G, session.latents(opts.rows), session.latents(opts.cols), opts.styles, outdir,
                              noise_mode=opts.noise_mode, batch_size=opts.batch_size)
    log(session.finish('style_mixing', paths, rows=len(opts.rows), cols=len(opts.cols), styles=opts.styles,
                       edits=_edits(opts)))
    return paths


def discover_directions(opts: DiscoverOptions, log: Log = print) -> Directions:
    """directions.py --discover: find directions and write them to opts.directions."""
    if not opts.directions:
        raise EditingError('--discover needs --directions=OUT.npz')
    session = Session(opts, log, needs_class=False)
    d = jobs.discover(session.G, opts.method, opts.directions, samples=opts.samples, components=opts.components,
                      layers=opts.layers, labels_from=opts.labels_from, seed=opts.seed, class_idx=session.class_idx,
                      truncation_psi=opts.truncation_psi, include_torgb=opts.include_torgb, source=session.network)
    log('\n'.join(d.describe()))
    log(f'wrote {opts.directions}')
    return d


def edit_directions_file(path: str, renames: Optional[dict] = None) -> Directions:
    """directions.py --list / --rename: the directions of a file, renamed (and saved) when asked."""
    d = load_directions(path)
    if renames:
        d = d.renamed(renames)
        save_directions(path, d)
    return d
