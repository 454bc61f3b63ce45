"""Serving the page: the listening address checked before anything loads, the network and the perceptual
loss loaded once, gradio launched quietly, and one startup message saying what is served where."""
from __future__ import annotations

import errno
import socket
from typing import Any, Optional

from app.page import CSS, THEME, build_ui
from app.studio import MAX_UPLOAD_BYTES, Studio, StudioError, resolve_network
from inversion.perceptual import PerceptualUnavailable, load_perceptual
from metrics import DetectorError
from metrics.detectors import locate_detector
from torch_utils.cli import UserError
from torch_utils.devices import device_from_option


def load_perceptual_for_app(kind: str, device) -> tuple[Any, str]:
    """(network, name): 'auto' takes NVIDIA's vgg16.pt when it is already on disk, never downloading it."""
    if kind == 'auto':
        try:
            kind = locate_detector('vgg16', download=False, option=None)
        except DetectorError:
            return None, 'none'
    try:
        return load_perceptual(kind, device), kind
    except PerceptualUnavailable as e:
        raise StudioError(str(e)) from None


def serve(network: str, directions: Optional[str], port: int, host: str, share: bool, device: str,
          perceptual: str) -> None:
    """app.py's options -> the page served until Ctrl-C: the port checked first, then the model loaded."""
    check_listen(host, port)   # before the model loads; gradio would blame its own launch() arguments
    device = device_from_option(device)
    source = resolve_network(network)
    loss_net, loss_name = load_perceptual_for_app(perceptual, device)
    studio = Studio.load(source.path, directions, device=device, perceptual=loss_net, perceptual_name=loss_name,
                         network_arg=source.command_name(network), log=lambda line: print(line, flush=True))
    demo = build_ui(studio)
    demo.queue(default_concurrency_limit=4)
    # quiet: gradio's own lines would tell the user to edit launch() for a public link (--share does it)
    try:
        _, local_url, share_url = demo.launch(
            server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD_BYTES, theme=THEME, css=CSS,
            ssr_mode=False, footer_links=['settings'], show_error=False, quiet=True, prevent_thread_lock=True)
    except OSError:   # taken since check_listen looked
        raise UserError(f'--host={host} --port={port}: cannot listen there (in use?); pass another --port') from None
    print(startup_text(studio, network, local_url, share_url), flush=True)
    demo.block_thread()


def check_listen(host: str, port: int) -> None:
    """That the server can listen on host:port, or one line naming --host or --port and why."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f'--host={host}: not an address to listen on ({getattr(e, "strerror", None) or e})') from None
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server will
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f'--port={port}: already in use on {host}; pass another --port') from None
            if e.errno == errno.EACCES:
                raise UserError(f'--port={port}: not allowed for this user ({e.strerror}); pass one above 1023') from None
            raise UserError(f'--host={host}: cannot listen there ({e.strerror or e})') from None


def startup_text(studio: Studio, given: str, local_url: str, share_url: Optional[str]) -> str:
    """What the app serves and where: the network (and what --network it came from), directions, perceptual
    loss, addresses."""
    resolved = '' if studio.network_arg == given else f' (from --network={given})'
    lines = [f'network: {studio.network_arg}{resolved}',
             f'directions: {studio.directions_path} ({len(studio.directions)})' if studio.directions is not None else
             'directions: none (the Edit tab finds GANSpace components)',
             f'perceptual loss for inversion: {studio.perceptual_name}',
             f'open {local_url}' + (f' or the public link {share_url}' if share_url else
                                    ' (--share adds a public link; Ctrl-C stops)')]
    return '\n'.join(lines)
