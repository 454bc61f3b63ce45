#!/usr/bin/env python3
"""Metric speed: time of fid10k_full at 64x64 on the current device.

Times calc_metric twice against the same dataset: once with an empty statistics cache (real features
+ generated features + FID) and once with the real statistics cached (what every snapshot after the
first costs during training). The generator is a snapshot given with --network, or a freshly
initialised network of the chosen config at 64x64.

NVIDIA's Inception is used when it can be found locally (--detector-dir, $SG3C_DETECTOR_DIR or the
detector cache), or downloaded with --download. Otherwise the run says so and times a TorchScript
stand-in (input resized to 299 px, 2048 features): those timings show the cost of generation, data
loading and the FID maths, not of Inception, and are labelled as such.

  python benchmarks/metrics.py
  python benchmarks/metrics.py --metric=fid50k_full --network=runs/00000-.../network-snapshot-000432.pkl --data=garments.zip
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metrics.api import calc_metric, resolve_data                      # noqa: E402
from metrics.detectors import locate_detector                          # noqa: E402
from metrics import DetectorError                               # noqa: E402
from metrics.standin import save_standin_detectors                     # noqa: E402
from networks import stylegan2, stylegan3                              # noqa: E402
from networks.snapshot import load_generator                           # noqa: E402
from torch_utils.devices import default_device                         # noqa: E402
from torch_utils.torchscript import TRUST_ENV                          # noqa: E402


def fresh_generator(cfg: str, res: int, cbase: int, cmax: int) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, channel_base=cbase,
                  channel_max=cmax)
    if cfg == 'stylegan2':
        return stylegan2.Generator(**common, mapping_kwargs=dict(num_layers=2))
    return stylegan3.Generator(**common, conv_kernel=1 if cfg == 'stylegan3-r' else 3,
                               use_radial_filters=cfg == 'stylegan3-r', mapping_kwargs=dict(num_layers=2))


@click.command()
@click.option('--metric', default='fid10k_full', show_default=True)
@click.option('--network', help='Snapshot to evaluate  [default: a fresh --cfg network]')
@click.option('--cfg', type=click.Choice(['stylegan2', 'stylegan3-t', 'stylegan3-r']), default='stylegan2', show_default=True)
@click.option('--res', type=int, default=64, show_default=True)
@click.option('--cbase', type=int, default=16384, show_default=True)
@click.option('--cmax', type=int, default=512, show_default=True)
@click.option('--data', default='synthetic:garments?n=1000', show_default=True, help='Dataset (rendered at --res)')
@click.option('--detector-dir', help='Folder with inception-2015-12-05.pt')
@click.option('--download', is_flag=True, help='Download NVIDIA\'s Inception if it is not available locally')
def main(metric, network, cfg, res, cbase, cmax, data, detector_dir, download):
    device = default_device()
    G = load_generator(network, device) if network else fresh_generator(cfg, res, cbase, cmax).to(device).eval()
    try:
        path = locate_detector('inception', detector_dir, download=download)
        detector_dir, detector = os.path.dirname(path), 'nvidia-inception'
    except DetectorError as e:
        print(f'NOTE: the real Inception detector is not available ({e}).')
        print('NOTE: timing with a STAND-IN detector instead: the numbers below exclude the cost of Inception.')
        detector_dir = tempfile.mkdtemp(prefix='standin-detectors-')
        written = save_standin_detectors(detector_dir, feature_dim=2048, resize=299)
        os.environ[TRUST_ENV] = os.pathsep.join(written.values())   # TorchScript this script wrote itself
        detector = 'stand-in (resize 299, 2048 features)'

    device_name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    data = resolve_data(data, G.img_resolution)['path']     # render/convert once, outside the timings
    with tempfile.TemporaryDirectory() as cache:
        os.environ['SG3C_CACHE'] = cache                     # a cold statistics cache for the first run
        timings = {}
        for label in ('cold_cache', 'warm_cache'):
            if device.type == 'cuda':
                torch.cuda.synchronize()
            start = time.time()
            result = calc_metric(metric, G, data=data, device=device, detector_dir=detector_dir)
            timings[label] = time.time() - start
            print(f'{metric} {label:10s} {timings[label]:8.1f} s   value {list(result["results"].values())[0]:.4g}',
                  flush=True)
    print(json.dumps(dict(metric=metric, device=device_name, detector=detector, resolution=G.img_resolution,
                          generator=network or f'fresh {cfg} cbase={cbase} cmax={cmax}',
                          seconds_cold_cache=round(timings['cold_cache'], 2),
                          seconds_warm_cache=round(timings['warm_cache'], 2))))


if __name__ == '__main__':
    main()
