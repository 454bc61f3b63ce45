"""The gen_images.py job for seeds: seedNNNN.png per seed (or per seed and class), optional grid, the .pt
export, and what every generating run shares (`Session`): the network opened (networks.snapshot.open_network;
a run directory resolves to its newest snapshot, which is reported and recorded), the class check, and the
JSON-lines record each run appends to its output folder.

Options objects hold a script's command-line options under their names, so that the scripts only parse and
the jobs can be called from Python with the same names. The edit fields (`directions`, `edit`, `edit_strip`)
and latents files (`--ws`) belong to editing/, whose jobs build on these; `needs_editing` says which a
gen_images.py run is.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from networks.snapshot import export_pt, open_network
from torch_utils.cli import check_output_path
from torch_utils.devices import device_from_option
from torch_utils.jsonl import append_jsonl
from torch_utils.media import image_grid, save_image

from . import GenerationError
from .seeds import (ClassLabelError, check_render_numbers, check_seed_range, class_choices, class_index,
                    generate_from_seeds, set_input_transform)

Log = Callable[[str], None]
Sources = Sequence[Union[int, str]]   # seeds and paths of latents files
ALL_CLASSES = 'all'                   # gen_images.py --class=all: one row per class


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
    directions: Optional[str] = None              # editing/
    edit: Optional[Sequence[Any]] = None          # editing/: editing.edits.Edit


@dataclasses.dataclass
class ImageOptions(RenderOptions):
    """gen_images.py: one PNG per seed or latent, optionally edited, as a grid or an edit strip."""
    seeds: Sources = ()
    translate: tuple[float, float] = (0.0, 0.0)
    rotate: float = 0.0
    grid: bool = False
    export_pt: Optional[str] = None
    edit_strip: Optional[Sequence[float]] = None   # editing/


def only_seeds(items: Sources) -> bool:
    return all(isinstance(item, int) for item in items)


def needs_editing(opts: ImageOptions) -> bool:
    """Whether a gen_images.py run is editing's (edits, edit strips, latents files) rather than generate_images'."""
    return not opts.export_pt and bool(opts.edit or opts.edit_strip or not only_seeds(opts.seeds))


def check_class(G: torch.nn.Module, class_idx: Optional[Union[int, str]], network: str, needs_class: bool,
                log: Log) -> Optional[int]:
    """--class as an index, or as a name that the snapshot records (G.class_names)."""
    if G.c_dim == 0:
        if class_idx is not None:
            log('warning: --class is ignored, the network is unconditional')
        return None
    if class_idx is None:
        if needs_class:
            raise GenerationError(f'{network}: the network is conditional ({G.c_dim} classes): '
                                  f'pass --class={class_choices(G)}')
        return None
    try:
        return class_index(G, class_idx)
    except ClassLabelError as e:
        raise GenerationError(f'{network}: --class: {e}') from None


class Session:
    """A generator opened for one run of a script, with the settings its images are made with."""

    def __init__(self, opts: RenderOptions, log: Log = print, needs_class: bool = True):
        self.started = time.time()
        self.opts = opts
        self.log = log
        require_network(opts)
        self.device = device_from_option(opts.device)
        opened = open_network(opts.network, self.device, log=log)
        self.G, self.network = opened.G, opened.name
        self.class_idx = check_class(self.G, opts.class_idx, self.network, needs_class, log)

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


def require_network(opts: RenderOptions) -> None:
    if not opts.network:
        raise GenerationError('--network is required')


def check_numbers(opts: RenderOptions, *sources: Sources) -> None:
    """Seeds, truncation and (gen_images) translation and rotation within what the network computes, before the
    snapshot is loaded (the scripts check seeds as they parse them; this is for callers from Python)."""
    count = 0
    for items in sources:
        for item in items:
            if isinstance(item, int):
                check_seed_range(item, item, count)
                count += 1
    check_render_numbers(opts.truncation_psi, getattr(opts, 'translate', (0, 0)), getattr(opts, 'rotate', 0))


def require_outdir(opts: RenderOptions) -> None:
    """Checked before the snapshot is loaded: a missing or unusable option should not cost a load."""
    if not opts.outdir:
        raise GenerationError('--outdir is required')
    check_output_path(opts.outdir, '--outdir')


def make_outdir(opts: RenderOptions) -> str:
    require_outdir(opts)
    os.makedirs(opts.outdir, exist_ok=True)
    return opts.outdir


def check_image_options(opts: ImageOptions) -> None:
    """What every gen_images.py run checks before the snapshot is loaded."""
    if not opts.seeds:
        raise GenerationError('--seeds is required (e.g. --seeds=0-7), or --ws=FILE.npz')
    if opts.edit_strip and not opts.edit:
        raise GenerationError('--edit-strip needs --edit=NAMES (the directions to sweep)')
    check_numbers(opts, opts.seeds)
    require_outdir(opts)


def transform_input(session: Session, opts: ImageOptions) -> dict:
    """--translate/--rotate put into a StyleGAN3 generator (warned about otherwise); their record fields."""
    moved = tuple(opts.translate) != (0, 0) or opts.rotate != 0
    if moved and not set_input_transform(session.G, opts.translate, opts.rotate):
        session.log('warning: --translate/--rotate apply to StyleGAN3 networks only; ignored')
    return dict(translate=list(opts.translate), rotate=opts.rotate)


# ---------------------------------------------------------------------------------------------
# Files.

def with_grid(images: list[np.ndarray], paths: list[str], outdir: str, suffix: str = '') -> list[str]:
    """`paths` and grid<suffix>.png of all `images` (written)."""
    paths.append(os.path.join(outdir, f'grid{suffix}.png'))
    save_image(image_grid(images), paths[-1])
    return paths


def write_seed_images(G: torch.nn.Module, seeds: Sequence[int], outdir: str, truncation_psi: float = 1,
                      class_idx: Optional[int] = None, noise_mode: str = 'const', batch_size: int = 8,
                      device: Optional[torch.device] = None, grid: bool = False) -> list[str]:
    """seedNNNN.png per seed, rendered exactly as NVIDIA's gen_images.py does (z from the seed, one forward
    pass), and optionally grid.png."""
    images, paths = [], []
    stream = generate_from_seeds(G, seeds, truncation_psi=truncation_psi, class_idx=class_idx,
                                 noise_mode=noise_mode, batch_size=batch_size, device=device)
    for seed, image in tqdm(stream, total=len(seeds), desc='generating', unit='img'):
        paths.append(os.path.join(outdir, f'seed{seed:04d}.png'))
        save_image(image, paths[-1])
        if grid:
            images.append(image)
    return with_grid(images, paths, outdir) if grid else paths


def write_class_rows(G: torch.nn.Module, seeds: Sequence[int], outdir: str, truncation_psi: float = 1,
                     noise_mode: str = 'const', batch_size: int = 8, device: Optional[torch.device] = None,
                     grid: bool = False) -> list[str]:
    """seedNNNN-<class>.png for every seed in every class of a conditional G (rendered as write_seed_images
    renders one class), and optionally grid.png: one row per class, one column per seed."""
    names = getattr(G, 'class_names', None) or [str(k) for k in range(G.c_dim)]
    images, paths = [], []
    for k, name in enumerate(names):
        stream = generate_from_seeds(G, seeds, truncation_psi=truncation_psi, class_idx=k, noise_mode=noise_mode,
                                     batch_size=batch_size, device=device)
        for seed, image in tqdm(stream, total=len(seeds), desc=f'generating {name}', unit='img'):
            paths.append(os.path.join(outdir, f'seed{seed:04d}-{name}.png'))
            save_image(image, paths[-1])
            images.append(image)
    if grid:
        paths.append(os.path.join(outdir, 'grid.png'))
        save_image(image_grid(images, cols=len(seeds)), paths[-1])
    return paths


# ---------------------------------------------------------------------------------------------
# The jobs.

def export_snapshot(opts: RenderOptions, path: str, log: Log = print) -> None:
    """gen_images.py --export-pt: the snapshot as a weights-only .pt file."""
    check_output_path(path, '--export-pt', folder=False)
    require_network(opts)
    export_pt(open_network(opts.network, keys=None, log=log).data, path)
    log(f'wrote {path}')


def generate_images(opts: ImageOptions, log: Log = print) -> list[str]:
    """gen_images.py for seeds: seedNNNN.png per seed (or per seed and class with --class=all), or --export-pt.
    Edits and latents files are editing.commands.edit_images' (needs_editing)."""
    if opts.export_pt:
        export_snapshot(opts, opts.export_pt, log)
        return [opts.export_pt]
    check_image_options(opts)
    if needs_editing(opts):
        raise GenerationError('edits and latents files are rendered by editing.commands.edit_images')
    if opts.class_idx == ALL_CLASSES:
        return _every_class(opts, log)
    session = Session(opts, log)
    outdir = make_outdir(opts)
    fields = transform_input(session, opts)
    paths = write_seed_images(session.G, list(opts.seeds), outdir, truncation_psi=opts.truncation_psi,
                              class_idx=session.class_idx, noise_mode=opts.noise_mode, batch_size=opts.batch_size,
                              device=session.device, grid=opts.grid)
    log(session.finish('gen_images', paths, **fields, mode='seeds', seeds=len(opts.seeds)))
    return paths


def _every_class(opts: ImageOptions, log: Log) -> list[str]:
    """gen_images.py --class=all: every seed in every class of a conditional network, one row per class."""
    session = Session(dataclasses.replace(opts, class_idx=None), log, needs_class=False)
    if not session.G.c_dim:
        raise GenerationError(f'{session.network}: --class=all needs a conditional network; this one has no classes')
    paths = write_class_rows(session.G, list(opts.seeds), make_outdir(opts), truncation_psi=opts.truncation_psi,
                             noise_mode=opts.noise_mode, batch_size=opts.batch_size, device=session.device,
                             grid=opts.grid)
    log(session.finish('gen_images', paths, mode='class-rows', seeds=len(opts.seeds), classes=int(session.G.c_dim)))
    return paths
