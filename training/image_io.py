"""Decoding images into the arrays the dataset code works with: HWC uint8, 1 or 3 channels.

Transparency is composited onto white (product cut-outs are shot on white, and a black fill would
teach the generator black halos); palette, CMYK, 16-bit and other modes are brought to L or RGB.
"""
from __future__ import annotations

import io

import numpy as np
import PIL.Image

from torch_utils.cli import UserError

PIL.Image.init()
# Raster formats a photo collection realistically holds and that Pillow decodes by itself.
IMAGE_EXTENSIONS = tuple(sorted(
    ext for ext in ('.png', '.jpg', '.jpeg', '.jpe', '.jfif', '.bmp', '.dib', '.gif', '.webp', '.tif', '.tiff',
                    '.ppm', '.pgm', '.pbm', '.pnm', '.tga', '.qoi', '.avif')
    if PIL.Image.registered_extensions().get(ext) in PIL.Image.OPEN))

_GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


class ImageDecodeError(UserError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def mode_channels(mode: str) -> int:
    """Channels an image of this PIL mode has after `to_array`."""
    return 1 if mode in _GREY_MODES else 3


def _has_alpha(image: PIL.Image.Image) -> bool:
    return image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (image.mode == 'P' and 'transparency' in image.info)


def to_array(image: PIL.Image.Image) -> np.ndarray:
    """HWC uint8 with 1 (greyscale) or 3 channels."""
    grey = mode_channels(image.mode) == 1
    if _has_alpha(image):
        rgba = image.convert('RGBA')
        white = PIL.Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        image = PIL.Image.alpha_composite(white, rgba).convert('L' if grey else 'RGB')
    elif image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
        # Wide greyscale: PIL's convert('L') clips instead of scaling; scale by the type's range instead.
        values = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == 'F' and values.max() <= 1.0 else (255.0 if values.max() <= 255 else 65535.0)
        return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)[:, :, None]
    elif image.mode not in ('L', 'RGB'):
        image = image.convert('L' if grey else 'RGB')
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def decode_image(data: bytes) -> np.ndarray:
    """Encoded bytes -> HWC uint8; every failure (including truncation) becomes ImageDecodeError."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()   # decode fully now, so a truncated file fails here and not halfway through training
            return to_array(image)
    except PIL.UnidentifiedImageError:   # its message names our in-memory buffer, not the file
        raise ImageDecodeError('not a known image format') from None
    except (OSError, SyntaxError, ValueError, EOFError, PIL.Image.DecompressionBombError) as e:
        raise ImageDecodeError(f'{type(e).__name__}: {e}') from None


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """HWC uint8 (1 or 3 channels) -> PNG bytes. Level 1 decodes nearly as fast as NVIDIA's level 0 (stored)
    and is ~40x smaller on white-background garments."""
    pil = PIL.Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image, 'L' if image.shape[2] == 1 else 'RGB')
    buffer = io.BytesIO()
    pil.save(buffer, format='PNG', compress_level=compress_level)
    return buffer.getvalue()


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Greyscale <-> RGB so that one dataset has one channel count."""
    if image.shape[2] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=2)
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, :, None]
