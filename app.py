#!/usr/bin/env python3
"""Web app for designers: generate garments, mix two, edit them with sliders, invert a photo, in the browser.

\b
  python app.py                                        # the pretrained garment model (pretrained/*-garments-*.pt)
  python app.py --network=runs/ --directions=sup.npz   # a run's newest snapshot, with its directions
  python app.py --network=snapshot.pkl --port=8080 --device=cpu
  python app.py --network=snapshot.pkl --share         # also on a public gradio.live link

Open http://127.0.0.1:7860 (or --port). The app loads only the network named here (a short name is looked
up in pretrained/ beside this file); uploaded photos are decoded as images only. See docs/app.md.
"""
from __future__ import annotations

import click

from app.serve import serve
from app.studio import DEFAULT_NETWORK
from torch_utils.cli import run


@click.command(help=__doc__)
@click.option('--network', default=DEFAULT_NETWORK, show_default=True, metavar='NAME|PATH|URL',
              help='Snapshot (.pkl, .pt, run dir, URL) or the short name of a model in pretrained/')
@click.option('--directions', type=click.Path(dir_okay=False), metavar='FILE.npz',
              help='Directions for the sliders  [default: the .npz beside the network, if any]')
@click.option('--port', type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option('--host', default='127.0.0.1', show_default=True, help='Address to listen on (0.0.0.0: every interface)')
@click.option('--share', is_flag=True, help='Also serve on a public gradio.live link')
@click.option('--device', default='auto', show_default=True, help="'auto' (CUDA when available), 'cpu', 'cuda', ...")
@click.option('--perceptual', default='auto', show_default=True, metavar='auto|vgg16|PATH|none',
              help="Inversion's perceptual loss; auto: NVIDIA's vgg16.pt if already downloaded, else pixel loss only")
def main(network, directions, port, host, share, device, perceptual):
    serve(network, directions, port, host, share, device, perceptual)


if __name__ == '__main__':
    run(main)
