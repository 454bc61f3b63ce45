"""The designer app's model side (app/page.py lays out the page), free of any web framework: one shared
generator, and per-user sessions that hold the current garment, the slider strengths and a background
inversion.

app/page.py only lays out the page and forwards events here, so everything the page does can be tested (and
scripted) without a browser:

* Generate: a garment from seed / truncation / class, or a grid of seeds to pick from.
* Mix: the structure of garment A with the style of garment B (ws rows from B, as style_mixing.py --styles).
* Edit: one strength per named direction (in std of W along it, so +-3 is a strong edit), an optional layer
  range overriding the directions' own rows; GANSpace components found on demand when no file is given.
* Invert: an uploaded photo (read as an image only, with size limits) inverted by projection or PTI in a
  background thread that reports progress and can be cancelled.
* Export: PNG, the latent `.npz` that `gen_images.py --ws` reads, the tuned generator of a PTI result, and the
  shell commands that reproduce the image.

The generator is never modified: an inversion's own generator (PTI-tuned weights, or a copy holding optimised
noise maps) belongs to the garment, so concurrent sessions never see each other's results.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import shlex
import threading
import time
import traceback
from typing import Callable, Optional, Sequence, Union

import numpy as np
import PIL.Image
import torch
from torch import nn

from data.image_io import FORMATS as IMAGE_FORMATS, ImageDecodeError, decode_image
from editing.directions import Directions, load_directions
from editing.discovery import ganspace
from editing.edits import Edit, apply_edits, mix_ws, parse_layer_range, preset_range
from inversion.outputs import save_latents
from inversion.perceptual import Perceptual
from inversion.preprocess import Target, prepare_target
from inversion.projector import LatentStats, latent_stats
from inversion.run import PROJECT_STEPS, InvertOptions, invert
from generation.seeds import MAX_SEED, seeds_to_ws, synthesize
from networks.snapshot import Source, SnapshotError, export_pt, open_network, pin_source, resolve_source
from torch_utils.cli import UserError
from torch_utils.compute_once import ComputeOnce
from torch_utils.media import save_image

PathLike = Union[str, os.PathLike]
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Formats a photo arrives in: those of every image reader (Pillow can open more, and EPS starts Ghostscript).
UPLOAD_FORMATS = IMAGE_FORMATS
INVERT_METHODS = ('project', 'pti')
STRENGTH_LIMIT = 3.0                     # sliders span +-3 std of W along each direction
# Every number a page sends is bounded here (a client need not use the page's widgets): these bound how long
# one request may keep the server busy.
MAX_TRUNCATION = 1.5
MAX_DISCOVERY_SAMPLES = 50_000           # GANSpace; 5,000 takes a few seconds on a CPU
MAX_STEPS = 1000                         # projection steps (NVIDIA's projector uses 1000)
MAX_PTI_STEPS = 350                      # PTI's own default
MAX_RUNNING_INVERSIONS = 2               # on the whole server, whatever the sessions: each holds a core for minutes
CANCEL_WAIT = 5.0                        # seconds a cancelled job is given to stop (it stops at its next step)
MIX_PRESETS = ('coarse', 'middle', 'fine')
DEFAULT_NETWORK = 'garments'
W_AVG_SAMPLES = 10000                    # invert.py's default --w-avg-samples


class StudioError(UserError):
    """Something the user asked for that cannot be done; its one-line message is shown on the page."""


class Cancelled(Exception):
    """Raised inside an inversion's step callback to stop it."""


# ---------------------------------------------------------------------------------------------
# Which network: the command line's, or a model placed in the app's folder.

def resolve_network(name: str) -> Source:
    """The snapshot behind --network (networks.snapshot.resolve_source): a URL as given (downloaded when
    loaded), a run directory pinned to its newest snapshot now (pin_source: the page and its commands name
    that file). Only those places are looked at, so the app never loads a network nobody chose."""
    try:
        return pin_source(resolve_source(name))
    except SnapshotError as e:
        raise StudioError(f'{e}; pass --network=PATH to a snapshot (.pkl, .pt or run directory)') from None


def directions_beside(network: str, G: nn.Module) -> Optional[str]:
    """The directions .npz stored next to a network file (same stem, any suffix), if one fits the network."""
    if not os.path.isfile(network):
        return None
    stem = os.path.splitext(network)[0]
    for path in sorted(glob.glob(glob.escape(stem) + '*.npz')):
        try:
            load_directions(path).check_network(G)
        except (ValueError, OSError, UserError):
            continue
        return path
    return None


# ---------------------------------------------------------------------------------------------
# Uploads.

def read_upload(path: PathLike, what: str = 'photo', max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """An uploaded file as HWC uint8 (1 or 3 channels), decoded as one of UPLOAD_FORMATS only and within the
    header limits of data.image_io (pixels, aspect ratio, decoder memory); anything else, too big, or
    broken raises StudioError naming `what`."""
    name = os.path.basename(os.fspath(path))
    size = os.path.getsize(path)
    if size > max_bytes:
        raise StudioError(f'{what} {name}: {size / 2**20:.1f} MB is more than the {max_bytes / 2**20:.0f} MB allowed')
    with open(path, 'rb') as f:
        data = f.read(max_bytes + 1)
    try:
        return decode_image(data)
    except ImageDecodeError as e:
        raise StudioError(f'{what} {name}: {e}') from None


def mask_from_strokes(layers: Sequence[np.ndarray], shape: tuple[int, int]) -> Optional[np.ndarray]:
    """HxW bool mask of everything painted on RGBA layers (alpha > 0), or None when nothing was painted."""
    mask = np.zeros(shape, dtype=bool)
    for layer in layers:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4:
            continue
        if layer.shape[:2] != shape:
            layer = np.asarray(PIL.Image.fromarray(layer).resize((shape[1], shape[0]), PIL.Image.NEAREST))
        mask |= layer[:, :, 3] > 0
    return mask if mask.any() else None


# ---------------------------------------------------------------------------------------------
# Per-user state.

@dataclasses.dataclass
class Garment:
    ws: torch.Tensor                   # [1, num_ws, w_dim] on the CPU, before the sliders' edits
    label: str                         # shown on the page
    recipe: dict                       # how the shell tools rebuild it (see Studio.commands)
    G: Optional[nn.Module] = None      # its own generator (an inversion's), else the studio's
    noise: dict = dataclasses.field(default_factory=dict)   # optimised noise maps of an inversion
    tuned: bool = False                # G's weights differ from the studio's (PTI)
    mask: Optional[np.ndarray] = None  # HxW bool garment mask of an inverted photo, at the photo's size


@dataclasses.dataclass
class Session:
    """One browser tab's state. A new one holds no network, so the web framework can copy it cheaply."""
    garment: Optional[Garment] = None
    strengths: dict = dataclasses.field(default_factory=dict)       # direction name -> strength (std)
    edit_layers: Optional[str] = None                               # preset or 'A-B' for every edit
    directions: Optional[Directions] = None                         # found on the page (GANSpace)
    grid_seeds: list = dataclasses.field(default_factory=list)
    job: Optional['InversionJob'] = None

    def close(self) -> None:
        if self.job is not None:
            self.job.cancel()


# ---------------------------------------------------------------------------------------------
# Inversion in the background.

class InversionJob:
    """One inversion in a daemon thread. Poll `progress()`; `cancel()` stops it at the next step."""

    def __init__(self, G: nn.Module, target: Target, method: str, *, steps: int, pti_steps: int,
                 perceptual: Optional[Perceptual], stats: LatentStats, class_idx: Optional[int],
                 recipe: dict, mask: Optional[np.ndarray] = None, seed: int = 0,
                 on_end: Callable[['InversionJob'], None] = lambda job: None):
        if method not in INVERT_METHODS:
            raise StudioError(f'unknown inversion method {method!r} (choose {" or ".join(INVERT_METHODS)})')
        self.method, self.target, self.recipe, self.mask = method, target, recipe, mask
        self._project_steps = steps
        self.total = steps + (pti_steps if method == 'pti' else 0)
        self.step, self.stage = 0, 'starting'
        self.result: Optional[Garment] = None
        self.reconstruction: Optional[np.ndarray] = None
        self.error: Optional[str] = None
        self.started = self.finished = time.time()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._on_end = on_end
        opts = InvertOptions(method=method, steps=steps, pti_steps=pti_steps, class_idx=class_idx, seed=seed)
        kwargs = dict(perceptual=perceptual, stats=stats, progress=False, callback=self._on_step)
        self._thread = threading.Thread(target=self._run, args=(G, opts, kwargs), daemon=True, name='inversion')
        self._thread.start()

    def _on_step(self, stage: str, step: int, losses: dict) -> None:
        if self._cancel.is_set():
            raise Cancelled()
        self.stage = stage
        self.step = step + 1 + (self._project_steps if stage == 'pti' else 0)   # PTI tunes after projecting

    def _run(self, G: nn.Module, opts: InvertOptions, kwargs: dict) -> None:
        try:
            out = invert(G, self.target, opts, **kwargs)
            self.reconstruction = synthesize(out.G, out.ws.cpu())[0]
            self.result = Garment(ws=out.ws.detach().cpu(), label=f'photo {self.target.name} ({self.method})',
                                  recipe=self.recipe, G=out.G, noise={k: v.cpu() for k, v in out.noise.items()},
                                  tuned=out.tuned, mask=self.mask)
        except Cancelled:
            self.error = 'cancelled'
        except UserError as e:
            self.error = str(e)
        except Exception as e:   # a bug or out of memory: the page says so, the server log has the traceback
            traceback.print_exc()
            self.error = f'failed ({type(e).__name__})'
        finally:
            self.finished = time.time()
            self._done.set()
            self._on_end(self)

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once the job has finished (done, failed or cancelled)."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def progress(self) -> tuple[float, str]:
        """(fraction done, one line for the page)."""
        if self.done:
            return 1.0, (f'stopped: {self.error}' if self.error else
                         f'done in {self.finished - self.started:.1f} s')
        fraction = self.step / max(self.total, 1)
        tuning = self.total - self._project_steps
        if self.stage == 'pti':   # each stage counts its own steps; the bar counts both
            return fraction, f'tuning the generator (PTI): step {self.step - self._project_steps} of {tuning}'
        then = f', then {tuning} PTI tuning steps' if tuning else ''
        return fraction, f'projecting into W: step {self.step} of {self._project_steps}{then}'


# ---------------------------------------------------------------------------------------------
# The shared model side.

class Studio:
    """A loaded generator with its directions, shared read-only by every session."""

    def __init__(self, G: nn.Module, network: str, directions: Optional[Directions] = None,
                 directions_path: Optional[str] = None, perceptual: Optional[Perceptual] = None,
                 perceptual_name: str = 'none', w_avg_samples: int = W_AVG_SAMPLES, network_arg: Optional[str] = None,
                 log: Callable[[str], None] = lambda line: None):
        self.G = G.eval().requires_grad_(False)
        self.log = log   # the server's log: one line per inversion that ends
        self.network = network
        self.network_arg = network_arg or network   # what the page and its commands call it (Source.command_name)
        self.device = next(G.parameters()).device
        if directions is not None:
            directions.check_network(G, directions_path or 'directions')
        self.directions, self.directions_path = directions, directions_path
        self.perceptual, self.perceptual_name = perceptual, perceptual_name
        self.w_avg_samples = w_avg_samples
        self._stats = ComputeOnce()      # class index -> LatentStats
        self._ganspace = ComputeOnce()   # (components, samples) -> Directions
        self._jobs: list[InversionJob] = []   # every session's, for the server-wide cap
        self._jobs_lock = threading.Lock()

    @classmethod
    def load(cls, network: str, directions: Optional[str] = None, device: Union[str, torch.device] = 'cpu',
             perceptual: Optional[Perceptual] = None, perceptual_name: str = 'none', **kwargs) -> 'Studio':
        G = open_network(network, device=device).G
        path = directions or directions_beside(network, G)
        try:
            return cls(G, network, load_directions(path) if path else None, path, perceptual, perceptual_name, **kwargs)
        except ValueError as e:   # a directions file that is broken or made for another network
            raise StudioError(str(e)) from None

    # --- facts the page shows ---------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return int(self.G.c_dim)

    @property
    def class_names(self) -> list[str]:
        """What the page calls each label: the snapshot's class names, else 'class 0', 'class 1', ..."""
        return list(getattr(self.G, 'class_names', None) or [f'class {i}' for i in range(self.num_classes)])

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    def presets(self) -> dict[str, tuple[int, int]]:
        return {p: preset_range(self.G, p) for p in MIX_PRESETS}

    def preset_cut(self, preset: str) -> Optional[int]:
        """Where the Mix tab's custom cut (A's rows before it, B's from it on) stands for a preset, or None
        where no cut describes it: 'coarse' takes B's rows from row 0, below the cut's range 1..num_ws-1."""
        start = preset_range(self.G, preset)[0]
        return start if 1 <= start < self.G.num_ws else None

    def directions_of(self, session: Session) -> Optional[Directions]:
        return session.directions or self.directions

    def _class(self, class_idx: Optional[int]) -> Optional[int]:
        if not self.num_classes:
            return None
        try:
            k = int(class_idx)
        except (TypeError, ValueError):
            k = -1
        if not 0 <= k < self.num_classes:
            raise StudioError(f'choose a garment class 0-{self.num_classes - 1}')
        return k

    # --- Generate ----------------------------------------------------------------------------
    def seed_garment(self, seed: int, truncation: float = 1.0, class_idx: Optional[int] = None) -> Garment:
        seed, truncation = _seed(seed), _truncation(truncation)
        class_idx = self._class(class_idx)
        ws = seeds_to_ws(self.G, [seed], truncation, class_idx).float().cpu()
        label = f'seed {seed}' + (f', {self.class_names[class_idx]}' if class_idx is not None else '')
        return Garment(ws, label, dict(kind='seed', seed=seed, trunc=float(truncation), cls=class_idx))

    def seed_grid(self, session: Session, first_seed: int, count: int, truncation: float = 1.0,
                  class_idx: Optional[int] = None) -> list[tuple[np.ndarray, str]]:
        """(image, caption) of `count` consecutive seeds; `pick_from_grid` makes one the current garment."""
        first_seed, count, truncation = _seed(first_seed), int(count), _truncation(truncation)
        if not 1 <= count <= 64:
            raise StudioError('a grid holds 1 to 64 seeds')
        _seed(first_seed + count - 1)
        class_idx = self._class(class_idx)
        seeds = list(range(first_seed, first_seed + count))
        ws = seeds_to_ws(self.G, seeds, truncation, class_idx).float().cpu()
        session.grid_seeds = [(s, float(truncation), class_idx) for s in seeds]
        return [(img, f'seed {s}') for img, s in zip(synthesize(self.G, ws), seeds)]

    def pick_from_grid(self, session: Session, index: int) -> Garment:
        if not 0 <= index < len(session.grid_seeds):
            raise StudioError('that grid is gone; show the grid again')
        seed, trunc, cls = session.grid_seeds[index]
        return self.seed_garment(seed, trunc, cls)

    # --- Mix ---------------------------------------------------------------------------------
    def mix_rows(self, preset: Optional[str] = None, cut: Optional[int] = None) -> list[int]:
        """ws rows that garment B gives: a preset's rows (as style_mixing.py --styles), or every row from
        `cut` on (the rows before it, the structure, stay A's)."""
        n = self.G.num_ws
        if preset:
            start, stop = preset_range(self.G, preset)
            return list(range(start, stop))
        cut = int(cut if cut is not None else n // 2)
        if not 1 <= cut < n:
            raise StudioError(f'the structure must end between rows 1 and {n - 1}')
        return list(range(cut, n))

    def mix(self, a: Garment, b: Garment, rows: Sequence[int]) -> Garment:
        """A's ws with `rows` taken from B: A's structure, B's style. A mix of inversions keeps A's generator."""
        if b.G is not None and b.G is not a.G:
            raise StudioError('garment B comes from an inverted photo with its own generator; use it as garment A')
        ws = mix_ws(a.ws, b.ws, list(rows))[0]
        recipe = dict(kind='mix', a=a.recipe, b=b.recipe, rows=[int(r) for r in rows])
        return Garment(ws, f'{a.label} with the style of {b.label} (rows {_rows_text(rows)})', recipe, G=a.G,
                       noise=a.noise, tuned=a.tuned)

    # --- the current garment and its edits ---------------------------------------------------
    def set_garment(self, session: Session, garment: Garment) -> None:
        """Make `garment` current; the sliders start again from zero."""
        session.garment = garment
        session.strengths = {}

    def reset_edits(self, session: Session) -> None:
        session.strengths = {}
        session.edit_layers = None

    def set_strength(self, session: Session, name: str, strength: float) -> None:
        d = self.directions_of(session)
        if d is None:
            raise StudioError('no directions: load a directions file or find GANSpace components first')
        d.index(name)
        strength = float(strength)
        if not np.isfinite(strength) or abs(strength) > STRENGTH_LIMIT + 1e-9:
            raise StudioError(f'strength must lie in +-{STRENGTH_LIMIT:g}')
        # Rounded as the command line prints it, so the shown command reproduces the image exactly.
        session.strengths[name] = round(strength, 4)

    def set_edit_layers(self, session: Session, spec: Optional[str]) -> None:
        """'coarse', 'middle', 'fine', 'all' or 'A-B' (inclusive) for every edit; empty for the directions' own."""
        spec = (spec or '').strip() or None
        if spec is not None and spec != 'all':
            try:
                parse_layer_range(self.G, spec)
            except ValueError as e:
                raise StudioError(str(e)) from None
        session.edit_layers = spec

    def edits(self, session: Session) -> list[Edit]:
        return [Edit(name, s, session.edit_layers) for name, s in session.strengths.items() if s != 0]

    def current_ws(self, session: Session) -> torch.Tensor:
        """[1, num_ws, w_dim]: the current garment with the sliders' edits."""
        g = self._garment(session)
        edits = self.edits(session)
        return apply_edits(g.ws, self.directions_of(session), edits, self.G) if edits else g.ws

    def render(self, session: Session) -> np.ndarray:
        """[H, W, C] uint8 image of the current garment as edited."""
        return self.image(self._garment(session), self.current_ws(session))

    def image(self, garment: Garment, ws: Optional[torch.Tensor] = None) -> np.ndarray:
        """[H, W, C] uint8 image of a garment (of `ws` instead of its own latent, if given)."""
        return synthesize(garment.G or self.G, garment.ws if ws is None else ws)[0]

    def _garment(self, session: Session) -> Garment:
        if session.garment is None:
            raise StudioError('no garment yet: generate one, mix two, or invert a photo')
        return session.garment

    def discover(self, session: Session, components: int = 16, samples: int = 5000) -> Directions:
        """GANSpace components of this network for the session's sliders (computed once per setting)."""
        components, samples = int(components), int(samples)
        if not 1 <= components <= 64 or not 2 * components <= samples <= MAX_DISCOVERY_SAMPLES:
            raise StudioError(f'GANSpace: 1-64 components and at least twice as many samples, at most '
                              f'{MAX_DISCOVERY_SAMPLES}')
        session.directions = self._ganspace.get((components, samples), lambda: ganspace(
            self.G, num_samples=samples, num_components=components, source=self.network))
        session.strengths = {}
        return session.directions

    # --- Invert ------------------------------------------------------------------------------
    def latent_stats(self, class_idx: Optional[int]) -> LatentStats:
        def compute() -> LatentStats:
            c = None
            if self.num_classes:
                c = torch.zeros([1, self.num_classes], device=self.device)
                c[0, class_idx] = 1
            return latent_stats(self.G, self.w_avg_samples, c=c)
        return self._stats.get(class_idx, compute)

    def prepare_photo(self, photo: np.ndarray, mask: Optional[np.ndarray] = None, name: str = 'photo') -> Target:
        try:
            return prepare_target(photo, self.resolution, int(self.G.img_channels), mask=mask, name=name)
        except ValueError as e:
            raise StudioError(f'{name}: {e}') from None

    def start_inversion(self, session: Session, target: Target, method: str = 'pti', steps: Optional[int] = None,
                        pti_steps: int = 100, class_idx: Optional[int] = None, photo_file: str = 'photo.png',
                        mask: Optional[np.ndarray] = None) -> InversionJob:
        """Start inverting `target` (from `photo_file`, with the photo-sized `mask` it was prepared with) in the
        background; a job already running for the session is cancelled (and given a moment to stop). At most
        MAX_RUNNING_INVERSIONS run on the server at once, whichever sessions started them: a client that starts
        jobs and goes away cannot pile up threads (its jobs end when it goes: app/page.py cancels them)."""
        if session.job is not None and not session.job.done:
            session.job.cancel()
            session.job.wait(CANCEL_WAIT)
        class_idx = self._class(class_idx)
        try:
            steps = int(steps if steps is not None else PROJECT_STEPS[method if method in PROJECT_STEPS else 'pti'])
            pti_steps = int(pti_steps)
        except (TypeError, ValueError):
            steps = pti_steps = -1
        if not 1 <= steps <= MAX_STEPS or not 0 <= pti_steps <= MAX_PTI_STEPS:
            raise StudioError(f'projection steps lie in 1-{MAX_STEPS}, PTI steps in 0-{MAX_PTI_STEPS}')
        recipe = dict(kind='inversion', method=method, photo=os.path.basename(photo_file), steps=steps,
                      pti_steps=pti_steps, cls=class_idx, perceptual=self.perceptual_name,
                      w_avg_samples=self.w_avg_samples,
                      mask=f'{target.name}_mask.png' if mask is not None else None)
        stats = self.latent_stats(class_idx)
        with self._jobs_lock:
            self._jobs = [job for job in self._jobs if not job.done]
            if len(self._jobs) >= MAX_RUNNING_INVERSIONS:
                raise StudioError(f'the server is running {len(self._jobs)} inversions, as many as it runs at once; '
                                  f'try again when one has finished')
            session.job = InversionJob(self.G, target, method, steps=steps, pti_steps=pti_steps,
                                       perceptual=self.perceptual, stats=stats, class_idx=class_idx, recipe=recipe,
                                       mask=mask, on_end=self._ended)
            self._jobs.append(session.job)
        return session.job

    def _ended(self, job: InversionJob) -> None:
        self.log(f'inversion of {job.target.name} ({job.method}) {job.progress()[1]} at step {job.step} of {job.total}')

    def running_inversions(self) -> int:
        with self._jobs_lock:
            return sum(not job.done for job in self._jobs)

    def finish_inversion(self, session: Session) -> Optional[Garment]:
        """The finished job's garment, made current; None while it runs; StudioError if it failed."""
        job = session.job
        if job is None or not job.done:
            return None
        if job.error:
            raise StudioError(f'inversion {job.error}')
        if session.garment is not job.result:
            self.set_garment(session, job.result)
        return job.result

    # --- Export ------------------------------------------------------------------------------
    def export(self, session: Session, outdir: PathLike, stem: str = 'garment') -> list[str]:
        """PNG, latents .npz (`w` with the edits applied, noise maps, the recipe) and, for PTI, the tuned
        generator as a weights-only .pt; returns the paths."""
        g = self._garment(session)
        os.makedirs(outdir, exist_ok=True)
        base = os.path.join(os.fspath(outdir), stem)
        save_image(self.render(session), base + '.png')
        save_latents(base + '.npz', self.current_ws(session), 'w+', g.noise,
                     recipe=json.dumps(dict(g.recipe, edits=self.edit_text(session))))
        paths = [base + '.png', base + '.npz']
        if g.mask is not None:
            paths.append(os.path.join(os.fspath(outdir), g.recipe['mask']))
            save_image(g.mask.astype(np.uint8)[:, :, None] * 255, paths[-1])
        if g.tuned:
            export_pt(dict(G=g.G, G_ema=g.G), base + '_generator.pt')
            paths.append(base + '_generator.pt')
        return paths

    def edit_text(self, session: Session) -> str:
        """The sliders as gen_images.py --edit: 'darker:1.5,sleeve:-2@3-5'."""
        layers = session.edit_layers
        if layers and layers not in ('coarse', 'middle', 'fine', 'all'):
            start, stop = parse_layer_range(self.G, layers)
            layers = f'{start}-{stop - 1}'
        return ','.join(f'{e.name}:{e.strength:g}' + (f'@{layers}' if layers else '') for e in self.edits(session))

    def commands(self, session: Session, stem: str = 'garment') -> str:
        """Shell commands that rebuild the current image: from its recipe where the shell tools can express
        it, and always exactly from the exported files."""
        g = self._garment(session)
        net = shlex.quote(self.network_arg)
        lines = []
        edit = self.edit_text(session)
        edit_opts = ''
        if edit:
            d_path = self.directions_path
            if session.directions is not None:
                d, d_path = session.directions, 'ganspace.npz'
                lines.append(f'python directions.py --network={net} --discover=ganspace --components={len(d)} '
                             f'--samples={d.meta.get("samples")} --directions={d_path}')
            edit_opts = f' --directions={shlex.quote(d_path)} --edit={shlex.quote(edit)}'
        renders = ('python gen_images.py', 'python style_mixing.py')
        lines += [line + edit_opts + ' --outdir=out' if line.startswith(renders) else line
                  for line in _recipe_commands(g.recipe, self.network_arg, getattr(self.G, 'class_names', None))]
        exact_net = f'{stem}_generator.pt' if g.tuned else self.network_arg
        lines.append(f'# exactly this image, from the downloads:\npython gen_images.py --network={shlex.quote(exact_net)} '
                     f'--ws={stem}.npz --outdir=out')
        return '\n'.join(lines)


def _recipe_commands(recipe: dict, network: str, class_names: Optional[Sequence[str]] = None) -> list[str]:
    """Commands (gen_images.py last, without --outdir) that rebuild a garment from scratch; empty when the
    shell tools cannot express it (a mix involving a photo or another mix)."""
    net = shlex.quote(network)
    if recipe['kind'] == 'seed':
        return [f'python gen_images.py --network={net} --seeds={recipe["seed"]}{_sample_opts(recipe, class_names)}']
    if recipe['kind'] == 'mix':
        a, b = recipe['a'], recipe['b']
        if a['kind'] != 'seed' or b['kind'] != 'seed' or (a['trunc'], a['cls']) != (b['trunc'], b['cls']):
            return []
        return ['# the mix is the bottom-right cell of out/mix-grid.png:',
                f'python style_mixing.py --network={net} --rows={a["seed"]} --cols={b["seed"]} '
                f'--styles={_rows_text(recipe["rows"])}{_sample_opts(a, class_names)}']
    tag = 'project-w' if recipe['method'] == 'project' else 'pti'
    out = f'inverted/{os.path.splitext(recipe["photo"])[0]}_{tag}'
    mask = f' --mask={shlex.quote(recipe["mask"])}' if recipe.get('mask') else ''
    cls = _class_opt(recipe['cls'], class_names)
    pti = f' --pti-steps={recipe["pti_steps"]}' if recipe['method'] == 'pti' else ''
    if recipe['w_avg_samples'] != W_AVG_SAMPLES:
        pti += f' --w-avg-samples={recipe["w_avg_samples"]}'
    tuned = shlex.quote(out + '.pkl') if recipe['method'] == 'pti' else net
    return [f'python invert.py --method={recipe["method"]} --network={net} --target={shlex.quote(recipe["photo"])}'
            f'{mask} --steps={recipe["steps"]}{pti}{cls} --perceptual={shlex.quote(recipe["perceptual"])} --outdir=inverted',
            f'python gen_images.py --network={tuned} --ws={shlex.quote(out + ".npz")}']


def _sample_opts(recipe: dict, class_names: Optional[Sequence[str]] = None) -> str:
    trunc = f' --trunc={recipe["trunc"]:g}' if recipe['trunc'] != 1 else ''
    return trunc + _class_opt(recipe['cls'], class_names)


def _class_opt(cls: Optional[int], class_names: Optional[Sequence[str]]) -> str:
    """' --class=jacket' where the snapshot records names, else ' --class=5'; '' for no class."""
    if cls is None:
        return ''
    return f' --class={shlex.quote(class_names[cls]) if class_names else cls}'


def _seed(value) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):   # an emptied number box
        raise StudioError(f'enter a seed: a whole number from 0 to {MAX_SEED}')
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise StudioError(f'{value!r} is not a seed (a whole number)') from None
    if not 0 <= seed <= MAX_SEED:
        raise StudioError(f'seeds lie in 0 .. {MAX_SEED}')
    return seed


def _truncation(value) -> float:
    try:
        psi = float(value)
    except (TypeError, ValueError):
        raise StudioError(f'{value!r} is not a truncation (a number)') from None
    if not 0 <= psi <= MAX_TRUNCATION:
        raise StudioError(f'truncation lies in 0 .. {MAX_TRUNCATION:g}')
    return psi


def _rows_text(rows: Sequence[int]) -> str:
    rows = sorted(int(r) for r in rows)
    return f'{rows[0]}-{rows[-1]}' if rows == list(range(rows[0], rows[-1] + 1)) else ','.join(map(str, rows))
