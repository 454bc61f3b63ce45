"""The page: one gradio Blocks with a garment column and the Generate, Mix, Edit and Invert tabs, each
handler a thin call into the studio (app/studio.py), failures the user caused shown as messages."""
from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import traceback
from typing import Callable, Optional

import gradio as gr
import numpy as np

from app.studio import (INVERT_METHODS, MAX_DISCOVERY_SAMPLES, MAX_PTI_STEPS, MAX_RUNNING_INVERSIONS, MAX_SEED,
                        MAX_STEPS, MAX_TRUNCATION, MIX_PRESETS, STRENGTH_LIMIT, Session, Studio, StudioError,
                        mask_from_strokes, read_upload)
from torch_utils.cli import UserError
from torch_utils.media import side_by_side

MAX_SLIDERS = 16
# What becomes a message on the page: failures the user caused, which the toolkit raises as UserError. Anything
# else (a ValueError or KeyError included) is a bug: a short note on the page, the traceback in the log.
EXPECTED_ERRORS = (UserError,)
# System fonts only: the default theme's Google fonts would make every page load call out to the internet.
THEME = gr.themes.Soft(font=['ui-sans-serif', 'system-ui', 'sans-serif'], font_mono=['ui-monospace', 'monospace'])
# Small generators make small images: show them large, with visible pixels rather than a blur.
CSS = """
#current-image img, #mix-a-image img, #mix-b-image img, #mix-result img, #compare img, #gallery img {
  image-rendering: pixelated; }
#current-image img { width: 100%; height: 300px; object-fit: contain; }
#mix-a-image img, #mix-b-image img, #mix-result img { width: 100%; height: 180px; object-fit: contain; }
#compare img { width: 100%; height: 200px; object-fit: contain; }
"""


def _message(error: BaseException) -> str:
    return f'**{" ".join(str(error).split())}**'


def guarded(status: gr.components.Component, fn: Callable[..., dict]) -> Callable[..., dict]:
    """Run a handler; a failure the user caused becomes a message in `status`, anything else a short note
    (the traceback goes to the server's console, never to the page)."""
    @functools.wraps(fn)   # gradio reads the handler's signature (gr.SelectData, gr.Progress parameters)
    def wrapper(*args):
        try:
            out = fn(*args)
        except EXPECTED_ERRORS as e:
            return {status: _message(e)}
        except Exception as e:   # a bug: keep the page alive, log it for whoever runs the server
            traceback.print_exc()
            return {status: f'**internal error ({type(e).__name__}); the server log has the details**'}
        return {status: '', **out}
    return wrapper


@dataclasses.dataclass
class Page:
    """What every tab updates: the current garment on the left and the Edit tab's sliders (made before the
    tabs, which all show a new garment with its sliders; the Edit tab places them)."""
    studio: Studio
    demo: gr.Blocks
    state: gr.State
    current: gr.Image
    label: gr.Markdown
    commands: gr.Code
    downloads: gr.File
    sliders: list
    layers: gr.Dropdown
    edit_status: gr.Markdown
    trunc: Optional[gr.Slider] = None      # the Generate tab's truncation and class, which the Mix tab uses too
    cls: Optional[gr.Dropdown] = None
    # The sessions of open pages that started an inversion, by gradio's session hash: when a page goes away
    # (unload), its session is closed at once, which cancels its job, rather than when gradio drops the state.
    inverting: dict = dataclasses.field(default_factory=dict)

    @property
    def garment_outputs(self) -> list:
        return [self.current, self.label, self.commands, self.downloads]

    @property
    def slider_outputs(self) -> list:
        return self.garment_outputs + self.sliders + [self.layers, self.edit_status]

    def shown(self, s: Session) -> dict:
        """The current garment of session `s` as edited, with its commands; stale downloads hidden."""
        return {self.current: self.studio.render(s), self.label: s.garment.label, self.commands: self.studio.commands(s),
                self.downloads: gr.File(value=None, visible=False)}

    def with_sliders(self, s: Session) -> dict:
        """`shown`, and one slider per direction of the session (its names and strengths)."""
        d = self.studio.directions_of(s)
        names = d.names if d is not None else []
        updates = {}
        for i, slider in enumerate(self.sliders):
            if i < len(names):
                updates[slider] = gr.Slider(visible=True, label=names[i].replace('_', ' '),
                                            value=s.strengths.get(names[i], 0))
            else:
                updates[slider] = gr.Slider(visible=False, value=0)
        if len(names) > MAX_SLIDERS:
            updates[self.edit_status] = f'showing the first {MAX_SLIDERS} of {len(names)} directions'
        return {**(self.shown(s) if s.garment is not None else {}), **updates, self.layers: s.edit_layers or ''}


def build_ui(studio: Studio, export_root: Optional[str] = None) -> gr.Blocks:
    """The page: current garment on the left, the Generate / Mix / Edit / Invert tabs on the right."""
    export_root = export_root or tempfile.mkdtemp(prefix='sg3c-app-')
    with gr.Blocks(title='Garment studio', analytics_enabled=False) as demo:
        state = gr.State(lambda: Session(), delete_callback=lambda s: s.close())   # one per browser tab
        gr.Markdown(header(studio))
        with gr.Row():
            with gr.Column(scale=2):
                page = garment_column(studio, demo, state, export_root)
            with gr.Column(scale=3):
                with gr.Tabs():
                    generate_tab(page)
                    mix_tab(page)
                    edit_tab(page)
                    invert_tab(page)

        def page_closed(request: gr.Request):
            close_session(page, request)
        demo.unload(page_closed)
    return demo


def close_session(page: Page, request: Optional[gr.Request]) -> None:
    """A page went away (gradio's unload): its inversion stops now."""
    session = page.inverting.pop(getattr(request, 'session_hash', None), None)
    if session is not None:
        session.close()


def header(studio: Studio) -> str:
    """The page's first lines: which network (family, size, classes, ws rows) and which directions."""
    G = studio.G
    family = {'stylegan2': 'StyleGAN2', 'stylegan3': 'StyleGAN3'}[G.family]
    d_text = (f'{len(studio.directions)} directions from `{os.path.basename(studio.directions_path)}`'
              if studio.directions else 'no directions file (find GANSpace components in the Edit tab)')
    return (f'## Garment studio\n`{studio.network_arg}`: {family}, {studio.resolution}x{studio.resolution}'
            + (f', {studio.num_classes} classes' if studio.num_classes else '') + f', {G.num_ws} ws rows; {d_text}')


def garment_column(studio: Studio, demo: gr.Blocks, state: gr.State, export_root: str) -> Page:
    """The current garment, its downloads and its shell commands."""
    current = gr.Image(label='Current garment', format='png', interactive=False, elem_id='current-image',
                       buttons=['download', 'fullscreen'])
    label = gr.Markdown(elem_id='current-label')
    export_btn = gr.Button('Prepare downloads (PNG, latent .npz)', elem_id='export-btn')
    downloads = gr.File(label='Downloads', file_count='multiple', interactive=False, elem_id='downloads',
                        visible=False)
    commands = gr.Code(label='The same image from the shell', language='shell', interactive=False,
                       wrap_lines=True, show_line_numbers=False, elem_id='commands')
    export_status = gr.Markdown(elem_id='export-status')

    def export(s):
        outdir = tempfile.mkdtemp(dir=export_root)
        return {downloads: gr.File(value=studio.export(s, outdir), visible=True)}

    export_btn.click(guarded(export_status, export), [state], [downloads, export_status])
    sliders = [gr.Slider(-STRENGTH_LIMIT, STRENGTH_LIMIT, value=0, step=0.05, visible=False, elem_id=f'slider-{i}',
                         render=False) for i in range(MAX_SLIDERS)]
    layers = gr.Dropdown(['', 'coarse', 'middle', 'fine', 'all'], value='', allow_custom_value=True,
                         label="Layers every edit acts on (empty: each direction's own; or A-B)", elem_id='edit-layers',
                         render=False)
    return Page(studio, demo, state, current, label, commands, downloads, sliders, layers,
                gr.Markdown(elem_id='edit-status', render=False))


def generate_tab(page: Page) -> None:
    """A garment from a seed, a truncation and a class; or a grid of seeds to pick one from."""
    studio, state = page.studio, page.state
    classes = [(name, i) for i, name in enumerate(studio.class_names)]
    with gr.Tab('Generate', id='generate', elem_id='tab-generate'):
        with gr.Row():
            seed = gr.Number(label='Seed', value=0, precision=0, minimum=0, maximum=MAX_SEED, elem_id='seed')
            random_btn = gr.Button('Random seed', elem_id='random-btn')
        page.trunc = gr.Slider(0, MAX_TRUNCATION, value=0.7, step=0.05, elem_id='trunc',
                               label='Truncation (lower: more typical garments, higher: more varied)')
        page.cls = gr.Dropdown(choices=classes, value=0 if classes else None, label='Garment class',
                               visible=bool(classes), elem_id='class')
        gen_btn = gr.Button('Generate', variant='primary', elem_id='generate-btn')
        with gr.Row():
            grid_n = gr.Slider(2, 32, value=8, step=1, label='Seeds in the grid (from the seed above)')
            grid_btn = gr.Button('Show a grid of seeds', elem_id='grid-btn')
        # Whole garments (contain, not cover) and no caption over their hems: the label names the seeds.
        gallery = gr.Gallery(label='Click a garment to make it current', columns=4, format='png', object_fit='contain',
                             allow_preview=False, elem_id='gallery')
        status = gr.Markdown(elem_id='generate-status')

    def generate(s, seed_value, trunc_value, cls_value):
        studio.set_garment(s, studio.seed_garment(seed_value, trunc_value, cls_value))
        return page.with_sliders(s)

    def random_seed(s, trunc_value, cls_value):
        value = int(np.random.randint(0, 2 ** 31))
        return {seed: value, **generate(s, value, trunc_value, cls_value)}

    def grid(s, first, n, trunc_value, cls_value):
        cells = studio.seed_grid(s, first, n, trunc_value, cls_value)
        seeds = f'{cells[0][1]} to {cells[-1][1].split()[-1]}' if len(cells) > 1 else cells[0][1]
        return {gallery: gr.Gallery(value=[img for img, _ in cells],
                                    label=f'{seeds}, row by row: click a garment to make it current')}

    def pick(s, evt: gr.SelectData):
        studio.set_garment(s, studio.pick_from_grid(s, evt.index))
        return page.with_sliders(s)

    inputs, outputs = [state, seed, page.trunc, page.cls], page.slider_outputs + [status]
    gen_btn.click(guarded(status, generate), inputs, outputs)
    seed.submit(guarded(status, generate), inputs, outputs)
    random_btn.click(guarded(status, random_seed), [state, page.trunc, page.cls], page.slider_outputs + [seed, status])
    grid_btn.click(guarded(status, grid), [state, seed, grid_n, page.trunc, page.cls], [gallery, status])
    gallery.select(guarded(status, pick), [state], outputs)
    page.demo.load(guarded(status, generate), inputs, outputs)


def mix_tab(page: Page) -> None:
    """Garment A's structure with garment B's style: the preset's (or the custom cut's) ws rows from B."""
    studio, G = page.studio, page.studio.G
    with gr.Tab('Mix', id='mix', elem_id='tab-mix'):
        gr.Markdown('Garment A gives the structure, garment B the style: the chosen ws rows come '
                    'from B (as `style_mixing.py --styles`). Seeds use the truncation and class '
                    'of the Generate tab.')
        with gr.Row():
            seed_a = gr.Number(label='Garment A (structure): seed', value=1, precision=0, minimum=0,
                               maximum=MAX_SEED, elem_id='mix-a')
            seed_b = gr.Number(label='Garment B (style): seed', value=2, precision=0, minimum=0,
                               maximum=MAX_SEED, elem_id='mix-b')
        preset = gr.Radio([*MIX_PRESETS, 'custom'], value='fine', elem_id='mix-preset',
                          label='Rows from B: ' + ', '.join(f'{p} {a}-{b - 1}' for p, (a, b) in studio.presets().items()))
        cut = gr.Slider(1, G.num_ws - 1, value=studio.preset_cut('fine') or G.num_ws // 2, step=1,
                        elem_id='mix-cut', label='Custom: structure from A ends at ws row (B gives this row and later)')
        mix_btn = gr.Button('Mix', variant='primary', elem_id='mix-btn')
        with gr.Row():
            # Only the fullscreen button: the download and share buttons covered the result's label.
            img_a = gr.Image(label='A', format='png', interactive=False, elem_id='mix-a-image', buttons=['fullscreen'])
            img_b = gr.Image(label='B', format='png', interactive=False, elem_id='mix-b-image', buttons=['fullscreen'])
            img_mix = gr.Image(label="A in B's style", format='png', interactive=False, elem_id='mix-result',
                               buttons=['fullscreen'])
        status = gr.Markdown(elem_id='mix-status')

    def mix(s, a, b, preset_value, cut_value, trunc_value, cls_value):
        ga = studio.seed_garment(a, trunc_value, cls_value)
        gb = studio.seed_garment(b, trunc_value, cls_value)
        rows = studio.mix_rows(preset_value) if preset_value in MIX_PRESETS else studio.mix_rows(cut=cut_value)
        studio.set_garment(s, studio.mix(ga, gb, rows))
        out = page.with_sliders(s)
        return {img_a: studio.image(ga), img_b: studio.image(gb), img_mix: out[page.current], **out}

    def preset_moved(preset_value):
        cut_value = studio.preset_cut(preset_value) if preset_value in MIX_PRESETS else None
        return gr.Slider(value=cut_value) if cut_value is not None else gr.Slider()

    inputs = [page.state, seed_a, seed_b, preset, cut, page.trunc, page.cls]
    outputs = page.slider_outputs + [img_a, img_b, img_mix, status]
    mix_btn.click(guarded(status, mix), inputs, outputs)
    preset.input(preset_moved, [preset], [cut]).then(guarded(status, mix), inputs, outputs)
    # input, not release: the arrow keys move the slider too (and a drag remixes where it stops)
    cut.input(lambda: 'custom', None, [preset], trigger_mode='always_last').then(guarded(status, mix), inputs, outputs)


def edit_tab(page: Page) -> None:
    """One slider per direction, the layers every edit acts on, and GANSpace components on demand."""
    studio, state = page.studio, page.state
    with gr.Tab('Edit', id='edit', elem_id='tab-edit'):
        gr.Markdown(f'Each slider moves the current garment along a direction, in standard '
                    f'deviations of W along it (+-{STRENGTH_LIMIT:g} is a strong edit).')
        for slider in page.sliders:
            slider.render()
        with gr.Row():
            page.layers.render()
            reset_btn = gr.Button('Reset', elem_id='reset-btn')
        with gr.Accordion('Find directions (GANSpace)', open=studio.directions is None):
            with gr.Row():
                components = gr.Slider(2, MAX_SLIDERS, value=8, step=1, label='Components')
                samples = gr.Number(value=5000, precision=0, minimum=100, maximum=MAX_DISCOVERY_SAMPLES,
                                    label='Samples of W')
            discover_btn = gr.Button('Find principal directions', elem_id='discover-btn')
        page.edit_status.render()

    def slider_moved(i):
        def moved(s, value):   # the box's number as typed (preprocess=False): clamped here, and the box told
            value = float(value) if isinstance(value, (int, float)) else 0.0
            d = studio.directions_of(s)
            if d is None or i >= len(d):
                raise StudioError('no direction behind this slider')
            used = float(np.clip(value, -STRENGTH_LIMIT, STRENGTH_LIMIT)) if np.isfinite(value) else 0.0
            if value == used == s.strengths.get(d.names[i], 0):   # the box echoing a value set here: no news
                return {status: gr.skip()}
            studio.set_strength(s, d.names[i], used)
            note = {} if used == value else {status: f'**strengths lie in +-{STRENGTH_LIMIT:g}: {value:g} is {used:g}**',
                                             page.sliders[i]: gr.Slider(value=used)}
            return {**(page.shown(s) if s.garment is not None else {}), **note}
        return moved

    status = page.edit_status
    for i, slider in enumerate(page.sliders):
        # preprocess=False: gradio's bounds check would fail in the server (a traceback in its log) and leave 99
        # in the box while the image used 3; the handler clamps the typed number and shows the one it used
        slider.input(guarded(status, slider_moved(i)), [state, slider], page.garment_outputs + [status, slider],
                     trigger_mode='always_last', show_progress='hidden', preprocess=False)

    def set_layers(s, spec):
        studio.set_edit_layers(s, spec)
        return page.shown(s) if s.garment is not None else {}

    def reset(s):
        studio.reset_edits(s)
        return page.with_sliders(s)

    def discover(s, k, n):
        studio.discover(s, k, n)
        return {**page.with_sliders(s), status: f'{int(k)} GANSpace components of {int(n)} samples of W'}

    page.layers.change(guarded(status, set_layers), [state, page.layers], page.garment_outputs + [status])
    reset_btn.click(guarded(status, reset), [state], page.slider_outputs)
    discover_btn.click(guarded(status, discover), [state, components, samples], page.slider_outputs)


def invert_tab(page: Page) -> None:
    """A photo (optionally masked) inverted in the background, with progress, cancelling and a comparison."""
    studio, state = page.studio, page.state
    classes = [(name, i) for i, name in enumerate(studio.class_names)]
    with gr.Tab('Invert', id='invert', elem_id='tab-invert'):
        with gr.Row():
            photo = gr.File(label='Photo of a garment', file_types=['image'], type='filepath', elem_id='photo')
            mask_file = gr.File(label='Mask (optional, white = garment)', file_types=['image'],
                                type='filepath', elem_id='mask')
        painter = gr.ImageEditor(label='...or paint over the garment to mask it (optional)',
                                 type='numpy', sources=[], image_mode='RGBA', elem_id='painter',
                                 brush=gr.Brush(colors=['#ff0066'], color_mode='fixed'), transforms=[], height=320)
        # Its own class, not the Generate tab's: the photo's garment decides.
        invert_cls = gr.Dropdown(choices=classes, value=0 if classes else None, visible=bool(classes),
                                 label='Class of the garment in the photo', elem_id='invert-class')
        with gr.Row():
            method = gr.Radio(list(INVERT_METHODS), value='pti', label='Method', elem_id='method')
            steps = gr.Slider(1, MAX_STEPS, value=200, step=1, label='Projection steps', elem_id='steps')
            pti_steps = gr.Slider(0, MAX_PTI_STEPS, value=100, step=1, label='PTI tuning steps', elem_id='pti-steps')
        with gr.Row():
            invert_btn = gr.Button('Invert', variant='primary', elem_id='invert-btn')
            cancel_btn = gr.Button('Cancel', variant='stop', elem_id='cancel-btn')
        status = gr.Markdown(elem_id='invert-status')
        compare = gr.Image(label='Target | reconstruction', format='png', interactive=False, elem_id='compare')
        gr.Markdown('Perceptual loss: ' + studio.perceptual_name if studio.perceptual is not None else
                    "Pixel loss only: NVIDIA's vgg16.pt was not found (start with --perceptual=PATH for "
                    'a perceptual loss)')

    def photo_uploaded(path):
        if not path:
            return {painter: None}
        image = read_upload(path)
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        return {painter: dict(background=image, layers=[], composite=None),
                status: f'{os.path.basename(path)}: {image.shape[1]}x{image.shape[0]}'}

    def invert(s, photo_path, mask_path, painted, method_value, steps_value, pti_value, cls_value,
               request: gr.Request, progress=gr.Progress()):
        try:
            job, target = start_inversion(studio, s, photo_path, mask_path, painted, method_value, steps_value,
                                          pti_value, cls_value)
        except EXPECTED_ERRORS as e:
            yield {status: _message(e)}
            return
        page.inverting[getattr(request, 'session_hash', None)] = s
        try:
            while not job.wait(0.4):
                fraction, text = job.progress()
                progress(fraction, desc=text)
                yield {status: text}
        finally:   # gradio closes this generator when the page goes away: the job goes with it
            if not job.done:
                job.cancel()
        try:
            studio.finish_inversion(s)
        except EXPECTED_ERRORS as e:
            yield {status: _message(e)}
            return
        yield {**page.with_sliders(s), status: job.progress()[1] + '; the reconstruction is the current garment',
               compare: side_by_side(target.uint8(), job.reconstruction)}

    def cancel(s):
        if s.job is not None and not s.job.done:
            s.job.cancel()
            return {status: 'cancelling...'}
        return {}

    photo.upload(guarded(status, photo_uploaded), [photo], [painter, status])
    invert_btn.click(invert, [state, photo, mask_file, painter, method, steps, pti_steps, invert_cls],
                     page.slider_outputs + [status, compare], concurrency_limit=MAX_RUNNING_INVERSIONS)
    cancel_btn.click(guarded(status, cancel), [state], [status], queue=False)


def start_inversion(studio: Studio, s: Session, photo_path, mask_path, painted, method, steps, pti_steps, cls):
    """(job, target): the uploaded photo with its mask (an uploaded file, else the painted strokes) inverted
    in the background."""
    if not photo_path:
        raise StudioError('upload a photo first')
    image = read_upload(photo_path)
    mask = None
    if mask_path:
        mask = read_upload(mask_path, what='mask')
        if mask.shape[:2] != image.shape[:2]:
            raise StudioError(f'the mask is {mask.shape[1]}x{mask.shape[0]}, the photo {image.shape[1]}x{image.shape[0]}')
        mask = mask.max(axis=2) >= 128
    elif painted and painted.get('layers'):
        mask = mask_from_strokes(painted['layers'], image.shape[:2])
    name = os.path.splitext(os.path.basename(photo_path))[0]
    target = studio.prepare_photo(image, mask, name=name)
    job = studio.start_inversion(s, target, method, steps, pti_steps, cls, photo_file=os.path.basename(photo_path),
                                 mask=mask)
    return job, target
