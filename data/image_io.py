"""Decoding images into the arrays the dataset code works with: HWC uint8, 1 or 3 channels.

Transparency is composited onto white (product cut-outs are shot on white, and a black fill would
teach the generator black halos); palette, CMYK, 16-bit and other modes are brought to L or RGB.

Every image file is opened here, as one of FORMATS only: Pillow would otherwise try each of its plugins,
and its EPS plugin hands a file that merely starts like PostScript to Ghostscript. The header's size is
checked before any pixel is decoded: at most MAX_PIXELS, an aspect ratio of at most MAX_ASPECT, and at most
MAX_DECODE_BYTES for what decoding and converting that mode takes, so a 126-byte PNG cannot ask for gigabytes.
"""
from __future__ import annotations

import contextlib
import io
from typing import BinaryIO, Callable, Iterator

import numpy as np
import PIL.Image

from torch_utils.cli import UserError

PIL.Image.init()
# Raster formats a photo collection realistically holds; GIF, TIFF and WebP are read at their first frame.
FORMATS = ('PNG', 'JPEG', 'WEBP', 'BMP', 'TIFF', 'GIF')
IMAGE_EXTENSIONS = tuple(sorted(ext for ext, fmt in PIL.Image.registered_extensions().items() if fmt in FORMATS))
MAX_PIXELS = 40_000_000          # a 7700x5200 photo
MAX_ASPECT = 16                  # longer side / shorter side; garments are not panoramas
MAX_DECODE_BYTES = 640 << 20     # what Pillow's buffer and the conversion to an array may take together
# Bytes per pixel of Pillow's buffer by mode (3-channel modes are stored in 4 bytes) ...
_BUFFER_BYTES = {'1': 1, 'L': 1, 'P': 1, 'I;16': 2, 'I;16B': 2, 'I;16L': 2, 'I;16N': 2}
# ... and of what to_array makes of it: an RGBA copy, a white canvas and their composite for transparent
# images, a uint8 array for the others; JPEG decoders keep coefficients for progressive files.
_ALPHA_WORK, _PLAIN_WORK, _JPEG_WORK = 13, 3, 6

_GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')
_WIDE_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


class ImageDecodeError(UserError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def mode_channels(mode: str) -> int:
    """Channels an image of this PIL mode has after `to_array`."""
    return 1 if mode in _GREY_MODES else 3


def _has_alpha(image: PIL.Image.Image) -> bool:
    return image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (image.mode == 'P' and 'transparency' in image.info)


def decode_bytes(width: int, height: int, mode: str, fmt: str) -> int:
    """An upper estimate of the memory decoding an image of this size, mode and format into an array takes."""
    work = _ALPHA_WORK if mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La', 'P') else _PLAIN_WORK
    return width * height * (_BUFFER_BYTES.get(mode, 4) + work + (_JPEG_WORK if fmt == 'JPEG' else 0))


def check_size(w: int, h: int) -> None:
    """Refuse (ImageDecodeError) an image size beyond MAX_PIXELS or MAX_ASPECT, wherever the size comes from."""
    if w < 1 or h < 1:
        raise ImageDecodeError(f'{w}x{h}: no pixels')
    if w * h > MAX_PIXELS:
        raise ImageDecodeError(f'{w}x{h} pixels is more than the {MAX_PIXELS / 1e6:.0f} megapixels read')
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageDecodeError(f'{w}x{h}: more than {MAX_ASPECT} times as long as it is wide')


def check_header(image: PIL.Image.Image) -> None:
    """Refuse (ImageDecodeError) an opened image whose header asks for more than the limits above."""
    w, h = image.size
    check_size(w, h)
    need = decode_bytes(w, h, image.mode, image.format)
    if need > MAX_DECODE_BYTES:
        raise ImageDecodeError(f'{w}x{h} {image.mode} would take {need / 2 ** 20:.0f} MiB to decode '
                               f'(at most {MAX_DECODE_BYTES / 2 ** 20:.0f} MiB)')


@contextlib.contextmanager
def open_image(f: BinaryIO, formats: tuple = FORMATS) -> Iterator[PIL.Image.Image]:
    """PIL.Image.open as one of `formats` only, its header checked (see check_header); pixels not yet decoded.
    Opening fails with ImageDecodeError; what the caller's block raises passes unchanged."""
    try:
        image = PIL.Image.open(f, formats=formats)
    except PIL.UnidentifiedImageError:   # its message names our in-memory buffer, not the file
        raise ImageDecodeError(f'not an image in a format read here ({", ".join(formats)})') from None
    except (OSError, SyntaxError, ValueError, EOFError, PIL.Image.DecompressionBombError) as e:
        raise ImageDecodeError(f'{type(e).__name__}: {e}') from None
    with image:
        check_header(image)
        yield image


def to_array(image: PIL.Image.Image) -> np.ndarray:
    """HWC uint8 with 1 (greyscale) or 3 channels."""
    grey = mode_channels(image.mode) == 1
    if _has_alpha(image):
        rgba = image.convert('RGBA')
        white = PIL.Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        image = PIL.Image.alpha_composite(white, rgba).convert('L' if grey else 'RGB')
    elif image.mode in _WIDE_MODES:
        return _wide_to_uint8(image)
    elif image.mode not in ('L', 'RGB'):
        image = image.convert('L' if grey else 'RGB')
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _wide_to_uint8(image: PIL.Image.Image) -> np.ndarray:
    """Wide greyscale: PIL's convert('L') clips instead of scaling; scale by the type's range instead, a few
    rows at a time (in float64, as a whole image would need 8 bytes per pixel at once)."""
    values = np.asarray(image)
    if values.dtype.kind == 'f' and not np.isfinite(values).all():
        raise ImageDecodeError('the image holds NaN or infinite values')
    peak = float(values.max())
    top = 1.0 if image.mode == 'F' and peak <= 1.0 else (255.0 if peak <= 255 else 65535.0)
    out = np.empty(values.shape + (1,), dtype=np.uint8)
    rows = max(1, (1 << 20) // max(values.shape[1], 1))
    for start in range(0, values.shape[0], rows):
        chunk = values[start:start + rows].astype(np.float64) * (255.0 / top)
        out[start:start + rows, :, 0] = np.clip(np.rint(chunk), 0, 255)
    return out


def decode_image(data: bytes) -> np.ndarray:
    """Encoded bytes -> HWC uint8; every failure (including truncation, and headers over the limits) becomes
    ImageDecodeError."""
    with open_image(io.BytesIO(data)) as image:
        try:
            image.load()   # decode fully now, so a truncated file fails here and not halfway through training
            return to_array(image)
        except (OSError, SyntaxError, ValueError, EOFError, PIL.Image.DecompressionBombError) as e:
            raise ImageDecodeError(f'{type(e).__name__}: {e}') from None


def place_resized(image: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int], fill: np.ndarray,
                  resize: Callable[[np.ndarray, int, int], np.ndarray]) -> np.ndarray:
    """The region `box` = (left, top, width, height) of an HWC image, which may reach past the image (filled with
    `fill`, one value per channel), resized to `size` = (width, height) by `resize(array, width, height)`.

    When the region shrinks, the image part is resized before it is placed on the output canvas, so the
    memory taken is bounded by the input and the output: padding a 1x16000 strip to a square first would
    allocate 16000x16000 pixels."""
    left, top, bw, bh = box
    (width, height), (h, w, c) = size, image.shape
    sx, sy = width / bw, height / bh
    if sx >= 1 and sy >= 1:   # the canvas is no larger than the output: pad, then resize as a whole
        canvas = np.empty([bh, bw, c], dtype=image.dtype)
        canvas[...] = fill
        y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + bh, h), min(left + bw, w)
        if y1 > y0 and x1 > x0:
            canvas[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
        return resize(canvas, width, height)
    out = np.empty([height, width, c], dtype=image.dtype)
    out[...] = fill
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + bh, h), min(left + bw, w)
    if y1 > y0 and x1 > x0:
        px0, py0 = min(round((x0 - left) * sx), width - 1), min(round((y0 - top) * sy), height - 1)
        px1, py1 = max(min(round((x1 - left) * sx), width), px0 + 1), max(min(round((y1 - top) * sy), height), py0 + 1)
        out[py0:py1, px0:px1] = resize(image[y0:y1, x0:x1], px1 - px0, py1 - py0)
    return out


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
