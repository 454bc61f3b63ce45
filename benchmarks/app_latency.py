#!/usr/bin/env python3
"""How long app.py takes to show the new image after a slider moves, on the current machine's CPU.

For each config and resolution a generator with NVIDIA's default widths (random weights, as
benchmarks/generate.py builds it) is saved with GANSpace directions, then:

* library: `Studio.set_strength` + `Studio.render` (edit + synthesis + uint8), median of --repeats;
* browser: app.py is started on a free localhost port and driven in headless Chromium: from the key press
  on the slider to the new image loaded on the page (timed inside the page), median of --repeats.

  python benchmarks/app_latency.py                                   # stylegan2, stylegan3-t at 64 and 256
  python benchmarks/app_latency.py --configs=stylegan2 --res=64 --repeats=10 --json-out=latency.jsonl

Figures only; nothing here asserts.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time

import click
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, 'benchmarks')]

from generate import generator_kwargs   # noqa: E402  (benchmarks/generate.py)
from torch_utils.jsonl import append_jsonl   # noqa: E402

# Installed in the page: the time from the key press on slider 0 to the next image in #current-image
# having loaded, in ms, is left in window.__latency.
PAGE_TIMER = """
const range = document.querySelector('#slider-0 input[type=range]');
const box = document.querySelector('#current-image');
window.__latency = null;
range.addEventListener('keydown', () => {
  const t0 = performance.now();
  const before = box.querySelector('img') ? box.querySelector('img').src : null;
  const watch = new MutationObserver(() => {
    const img = box.querySelector('img');
    if (!img || img.src === before) return;
    watch.disconnect();
    const done = () => { window.__latency = performance.now() - t0; };
    if (img.complete && img.naturalWidth) done(); else img.addEventListener('load', done, {once: true});
  });
  watch.observe(box, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}, {once: true});
"""


def build(cfg: str, res: int, channel_base: int) -> torch.nn.Module:
    from networks import stylegan2, stylegan3
    family, kwargs = generator_kwargs(cfg, res)
    kwargs['channel_base'] = channel_base * (2 if cfg == 'stylegan3-r' else 1)
    torch.manual_seed(0)
    G = (stylegan3 if family == 'stylegan3' else stylegan2).Generator(**kwargs)
    return G.eval().requires_grad_(False)


def config_model(cfg: str, res: int, base: int, tmp: str) -> tuple:
    """(network file, directions file, Studio, config, res, channel_base) of a random generator of `cfg`."""
    from editing.directions import save_directions
    from editing.discovery import ganspace
    from app.studio import Studio
    from networks.snapshot import save_snapshot
    G = build(cfg, res, base)
    net, dirs = os.path.join(tmp, f'{cfg}-{res}-{base}.pkl'), os.path.join(tmp, f'{cfg}-{res}-{base}.npz')
    save_snapshot(net, dict(G=G, G_ema=G, D=None, augment_pipe=None, training_set_kwargs=None))
    d = ganspace(G, num_samples=1000, num_components=4)
    save_directions(dirs, d)
    return net, dirs, Studio(G, net, d), cfg, res, base


def app_model(network: str, tmp: str) -> tuple:
    """The same for the app's own model (e.g. garments): its directions beside it, else GANSpace components."""
    from editing.directions import save_directions
    from editing.discovery import ganspace
    from app.studio import Studio, resolve_network
    studio = Studio.load(resolve_network(network).path)
    dirs = studio.directions_path
    if not dirs:
        dirs = os.path.join(tmp, 'ganspace.npz')
        studio.directions = ganspace(studio.G, num_samples=1000, num_components=4)
        save_directions(dirs, studio.directions)
    return studio.network, dirs, studio, os.path.basename(studio.network), studio.G.img_resolution, 0


def library_latency(studio, repeats: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds of this process) per slider update."""
    from app.studio import Session
    s = Session()
    studio.set_garment(s, studio.seed_garment(0, 0.7, 0 if studio.num_classes else None))
    name = studio.directions.names[0]
    studio.render(s)                                   # warm-up
    wall, cpu = [], []
    for i in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        studio.set_strength(s, name, 0.1 * (i + 1))
        studio.render(s)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def browser_latency(network: str, directions: str, repeats: int, threads: int) -> list[float]:
    import browser   # benchmarks/browser.py
    from selenium.webdriver.common.keys import Keys
    app = browser.App(f'--network={network}', f'--directions={directions}', '--device=cpu', '--perceptual=none',
                      timeout=300, env=dict(OMP_NUM_THREADS=str(threads)))
    driver = browser.chrome()
    times = []
    try:
        driver.get(app.url)
        browser.wait_for(lambda: browser.image_src(driver, 'current-image'), 120, 'the first garment')
        browser.open_tab(driver, 'Edit')
        knob = browser.by_id(driver, 'slider-0', 'input[type=range]')
        for i in range(repeats + 1):
            driver.execute_script(PAGE_TIMER)
            # Whole-range jumps: a small step on a random network may leave every uint8 pixel as it was, and
            # the page then keeps the same image file, which the timer would wait for in vain.
            knob.send_keys(Keys.END if i % 2 == 0 else Keys.HOME)
            try:
                ms = browser.wait_for(lambda: driver.execute_script('return window.__latency'), 120, 'the new image')
            except TimeoutError:
                print('  no new image within 120 s; stopping this config', file=sys.stderr)
                break
            if i:                                      # the first move warms up the server's code paths
                times.append(ms / 1000)
            time.sleep(0.3)
    finally:
        driver.quit()
        app.stop()
    return times


@click.command(help=__doc__)
@click.option('--configs', default='stylegan2,stylegan3-t', show_default=True)
@click.option('--res', 'resolutions', default='64,256', show_default=True)
@click.option('--cbase', 'bases', default='32768,16384', show_default=True,
              help="channel_base values (NVIDIA's default 32768; 16384 as their paper256 config), channel_max 512")
@click.option('--repeats', type=click.IntRange(min=1), default=5, show_default=True)
@click.option('--browser/--no-browser', 'use_browser', default=True, show_default=True, help='Also time it in Chromium')
@click.option('--threads', type=click.IntRange(min=1), help='CPU threads for the library and the app  [default: torch\'s]')
@click.option('--json-out', type=click.Path(dir_okay=False), help='Append one JSON line per measurement')
@click.option('--network', help='Time this snapshot (path or short name, e.g. garments) instead of the configs')
def main(configs, resolutions, bases, repeats, use_browser, threads, json_out, network):
    if threads:
        torch.set_num_threads(threads)
    print(f'{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads')
    print(f'{"config":<12} {"res":>4} {"cbase":>6} {"library s":>10} {"library CPU s":>14} {"browser s":>10} '
          f'{"browser max s":>14} {"load":>5}')
    with tempfile.TemporaryDirectory() as tmp:
        if network:
            measurements = [app_model(network, tmp)]
        else:
            measurements = [config_model(c, int(r), int(b), tmp) for r in resolutions.split(',')
                            for b in bases.split(',') for c in configs.split(',')]
        for net, dirs, studio, cfg, res, base in measurements:
            load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
            wall, cpu = library_latency(studio, repeats)
            web = browser_latency(net, dirs, repeats, torch.get_num_threads()) if use_browser else []
            row = dict(config=cfg, res=res, channel_base=base, library_s=statistics.median(wall),
                       library_cpu_s=statistics.median(cpu), browser_s=statistics.median(web) if web else None,
                       browser_max_s=max(web) if web else None, repeats=repeats, threads=torch.get_num_threads(),
                       load_average=load)
            print(f'{cfg:<12} {res:>4} {base:>6} {row["library_s"]:>10.3f} {row["library_cpu_s"]:>14.3f} '
                  + (f'{row["browser_s"]:>10.3f} {row["browser_max_s"]:>14.3f}' if web else f'{"-":>10} {"-":>14}') + f' {load:>5.1f}', flush=True)
            if json_out:
                append_jsonl(json_out, row, allow_nan=True)


if __name__ == '__main__':
    main()
