"""Latent editing: direction discovery (GANSpace, SeFa, supervised, class means), edits with layer ranges,
style mixing and interpolation videos. gen_images.py, gen_video.py, style_mixing.py and directions.py only parse
options and call commands.py here."""
from .directions import Directions, load_directions, save_directions
from .edits import Edit, apply_edits, parse_edits, parse_strengths
from .layers import parse_layer_range, parse_layers, preset_range, style_layers
from .mixing import mix_ws, mixing_grid
from .sources import Latents, load_ws_file, parse_sources, resolve_sources
from .video import interpolate, render_interpolation

__all__ = ['Directions', 'load_directions', 'save_directions', 'Edit', 'apply_edits', 'parse_edits', 'parse_strengths',
           'parse_layer_range', 'parse_layers', 'preset_range', 'style_layers', 'mix_ws', 'mixing_grid', 'Latents',
           'load_ws_file', 'parse_sources', 'resolve_sources', 'interpolate', 'render_interpolation']
