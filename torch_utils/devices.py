"""The device an option names: 'auto' means CUDA when this torch sees a GPU, else the CPU; the one place
every script, the app and the metrics resolve it."""
from __future__ import annotations

from typing import Union

import torch

from .cli import UserError


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def device_from_option(spec: Union[str, torch.device, None], option: str = '--device') -> torch.device:
    """The device a --device option names ('auto': CUDA when available), checked: a device this torch
    cannot use (CUDA on a CPU build, a GPU index that is not there) is one line naming the option."""
    if spec in (None, '', 'auto'):
        return default_device()
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f'{option}={spec}: not a device (auto, cpu, cuda, cuda:1, ...)') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        why = 'this torch is built without CUDA' if torch.version.cuda is None else 'no CUDA device is visible'
        raise UserError(f'{option}={spec}: {why} (torch {torch.__version__}); use --device=cpu or auto')
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f'{option}={spec}: there are {torch.cuda.device_count()} CUDA device(s), 0-{torch.cuda.device_count() - 1}')
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise UserError(f'{option}={spec}: not usable here ({str(e).splitlines()[0] if str(e) else type(e).__name__})') from None
    return device
