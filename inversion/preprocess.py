"""Turning a photo (and an optional garment mask) into a target tensor at the generator's resolution.

Two kinds of photo arrive here:

* a product photo of a flat garment: the whole frame should be reproduced, so a non-square photo is padded
  to a square with its own background colour (estimated from the border) rather than cropped, which would
  cut off sleeves or hems;
* a photo of a person wearing the garment, with a mask that selects the garment: the frame is cut to a
  square around the mask (the generator's garments fill most of the frame) and every loss later looks only
  inside the mask, so the person, the skin and the room never pull on the latent.

Masks are binarised at 0.5 after resizing: a pixel either counts fully or not at all, which is what makes
"pixels outside the mask cannot change the result" an exact property rather than an approximate one.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence, Union

import numpy as np
import PIL.Image
import torch

from data.colour import fill_for
from data.image_io import ImageDecodeError, decode_image, is_image_name, match_channels, place_resized
from torch_utils.cli import UserError

FIT_MODES = ('auto', 'pad', 'crop', 'mask')


class TargetError(UserError):
    """A target image or mask that cannot be used; the message names the file."""


@dataclasses.dataclass
class Target:
    """One prepared target: what every inversion method consumes."""
    name: str                           # file stem, used to name the outputs
    image: torch.Tensor                 # [1, C, R, R] float32 in [-1, 1]
    mask: Optional[torch.Tensor]        # [1, 1, R, R] float32 of 0/1, or None for "every pixel counts"
    background: tuple[int, ...]         # the colour used to pad the photo, per channel
    box: tuple[int, int, int]           # (left, top, side) of the square cut from the photo, in photo pixels

    def uint8(self) -> np.ndarray:
        """[R, R, C] uint8 view of the target, for side-by-side figures."""
        return (self.image[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """HWC uint8 (1 or 3 channels); a missing or undecodable file raises TargetError naming it."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise TargetError(f'{path}: cannot read ({e.strerror or e})') from None
    try:
        return decode_image(data)
    except ImageDecodeError as e:
        raise TargetError(f'{path}: not a readable image ({e})') from None


def estimate_background(image: np.ndarray, border: float = 0.04) -> np.ndarray:
    """Per-channel median of a frame of width `border` (fraction of the short side, at least 1 px).

    Product photos are shot on a plain backdrop that touches every edge; the median ignores a garment
    that reaches the border in a few places.
    """
    h, w = image.shape[:2]
    k = max(1, int(round(min(h, w) * border)))
    frame = np.concatenate([image[:k].reshape(-1, image.shape[2]), image[-k:].reshape(-1, image.shape[2]),
                            image[:, :k].reshape(-1, image.shape[2]), image[:, -k:].reshape(-1, image.shape[2])])
    return np.median(frame, axis=0)


def mask_box(mask: np.ndarray, margin: float) -> tuple[int, int, int]:
    """Square (left, top, side) around the mask's bounding box, grown by `margin` of its long side per edge."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError('the mask is empty (no pixel >= 50%)')
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(round(max(bottom - top, right - left) * (1 + 2 * margin)))
    cy, cx = (top + bottom) / 2, (left + right) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), max(side, 1)


def square_box(h: int, w: int, fit: str, mask: Optional[np.ndarray], margin: float) -> tuple[int, int, int]:
    """The square region of the photo that becomes the target; it may extend past the photo (padding)."""
    if fit == 'auto':
        fit = 'mask' if mask is not None else 'pad'
    if fit == 'pad':
        side = max(h, w)
    elif fit == 'crop':
        side = min(h, w)
    elif fit == 'mask':
        if mask is None:
            raise ValueError("fit='mask' needs a mask")
        return mask_box(mask, margin)
    else:
        raise ValueError(f'unknown fit {fit!r}; choose from {", ".join(FIT_MODES)}')
    return (w - side) // 2, (h - side) // 2, side


def fit_square(image: np.ndarray, box: tuple[int, int, int], fill: Sequence[float], resolution: int,
               resample) -> np.ndarray:
    """image[top:top+side, left:left+side] with `fill` wherever the box leaves the photo, resized to
    resolution x resolution (the photo part is shrunk before it is padded: see place_resized)."""
    left, top, side = box
    fill = np.asarray(fill, dtype=np.float64).round().astype(image.dtype)

    def resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
        if array.shape[:2] == (height, width):
            return array
        squeeze = array.shape[2] == 1
        out = np.asarray(PIL.Image.fromarray(array[:, :, 0] if squeeze else array).resize((width, height), resample))
        return out[:, :, None] if out.ndim == 2 else out
    return place_resized(image, (left, top, side, side), (resolution, resolution), fill, resize)


def prepare_target(image: np.ndarray, resolution: int, channels: int, *, mask: Optional[np.ndarray] = None,
                   fit: str = 'auto', background: Optional[Sequence[int]] = None, mask_margin: float = 0.08,
                   name: str = 'target') -> Target:
    """Fit an HWC uint8 photo (and an HW or HW1 mask of the same size) to the generator's square resolution."""
    image = match_channels(image, channels)
    h, w = image.shape[:2]
    binary = None
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim == 3:
            mask = mask[:, :, 0] if mask.shape[2] == 1 else match_channels(mask, 1)[:, :, 0]
        if mask.shape != (h, w):
            raise ValueError(f'the mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}')
        binary = mask >= 128 if mask.dtype == np.uint8 else mask >= 0.5
    bg = estimate_background(image) if background is None else fill_for(background, channels).astype(np.float64)
    box = square_box(h, w, fit, binary, mask_margin)
    target = fit_square(image, box, bg, resolution, PIL.Image.LANCZOS)
    tensor = torch.from_numpy(target.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    mask_tensor = None
    if binary is not None:
        m = fit_square(binary.astype(np.uint8)[:, :, None] * 255, box, [0], resolution, PIL.Image.BILINEAR)
        mask_tensor = torch.from_numpy((m[:, :, 0] >= 128).astype(np.float32))[None, None]
        if mask_tensor.sum() == 0:
            raise ValueError(f'the mask covers no pixel at {resolution}x{resolution}')
    return Target(name=name, image=tensor, mask=mask_tensor, background=tuple(int(round(v)) for v in bg), box=box)


def load_target(path: Union[str, os.PathLike], resolution: int, channels: int, *,
                mask_path: Optional[Union[str, os.PathLike]] = None, name: Optional[str] = None, **kwargs) -> Target:
    """Read a photo (and mask) from disk and prepare it; problems raise TargetError naming the file.
    `name` (default: the file stem) names the outputs."""
    image = read_image(path)
    mask = read_image(mask_path) if mask_path is not None else None
    name = name or os.path.splitext(os.path.basename(path))[0]
    try:
        return prepare_target(image, resolution, channels, mask=mask, name=name, **kwargs)
    except ValueError as e:
        raise TargetError(f'{mask_path or path}: {e}') from None


def list_targets(target: Union[str, os.PathLike], mask: Optional[Union[str, os.PathLike]] = None
                 ) -> list[tuple[str, Optional[str]]]:
    """(image, mask) path pairs for a file or a folder; a mask folder is matched to images by file stem."""
    target = os.fspath(target)
    if os.path.isdir(target):
        images = sorted(os.path.join(target, n) for n in os.listdir(target) if is_image_name(n))
        if not images:
            raise TargetError(f'{target}: folder holds no images')
    elif os.path.isfile(target):
        images = [target]
    else:
        raise TargetError(f'{target}: no such file or folder')
    if mask is None:
        return [(p, None) for p in images]
    mask = os.fspath(mask)
    if os.path.isfile(mask):
        if len(images) > 1:
            raise TargetError(f'{mask}: one mask file for a folder of {len(images)} images; pass a mask folder')
        return [(images[0], mask)]
    if not os.path.isdir(mask):
        raise TargetError(f'{mask}: no such file or folder')
    by_stem = {os.path.splitext(n)[0]: os.path.join(mask, n) for n in sorted(os.listdir(mask)) if is_image_name(n)}
    pairs = []
    for p in images:
        stem = os.path.splitext(os.path.basename(p))[0]
        if stem not in by_stem:
            raise TargetError(f'{mask}: no mask named {stem}.* for {p}')
        pairs.append((p, by_stem[stem]))
    return pairs
