"""Reading and writing network snapshots without executing anything stored in the file.

A snapshot is a dict with `G`, `D`, `G_ema`, `augment_pipe` and `training_set_kwargs` (plus, in ours,
optional training state). Three file kinds are read:

* NVIDIA's pickles (StyleGAN3 and stylegan2-ada-pytorch `network-snapshot-*.pkl`): each network is a
  "persistent object" carrying its class name, constructor kwargs, tensors and the *source code* of its
  module. We read them with an allow-listed unpickler, ignore the source, and rebuild our own class of the
  same structure from the kwargs and tensors.
* Our pickles: the same dict layout; each network is stored as (family, kwargs, state dict).
* `.pt` exports: the same records, loadable with `torch.load(weights_only=True)`.

Any global outside the allow-list stops the load with an error naming it, before anything runs.
"""
from __future__ import annotations

import glob
import io
import os
import pickle
import re
from collections import OrderedDict
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from torch_utils.atomic import atomic_write
from torch_utils.cli import UserError

from . import discriminator, stylegan2, stylegan3
from .persistence import plain

PathLike = Union[str, os.PathLike]
PT_FORMAT = 'stylegan3-clothing/snapshot'
SNAPSHOT_GLOB = 'network-snapshot-*.pkl'
PT_VERSION = 1


class SnapshotError(UserError):
    """A snapshot that cannot be read; the message names the file and the reason."""


# ---------------------------------------------------------------------------------------------
# Network families: what we can build, and how to tell them apart in a file.

def _augment_pipe_class():
    from training.augment import AugmentPipe   # imported on demand: training code is not needed to generate
    return AugmentPipe


FAMILIES: dict[str, Callable[[], type]] = {
    'stylegan2.Generator': lambda: stylegan2.Generator,
    'stylegan3.Generator': lambda: stylegan3.Generator,
    'Discriminator': lambda: discriminator.Discriminator,
    'AugmentPipe': _augment_pipe_class,
}


def family_of(module: nn.Module) -> str:
    for name, get_class in FAMILIES.items():
        if type(module) is get_class():
            return name
    raise TypeError(f'cannot snapshot a {type(module).__name__}: not a network family of this toolkit')


# ---------------------------------------------------------------------------------------------
# The allow-listed unpickler.

class _PersistentObject:
    """Stand-in for one of NVIDIA's persistent objects: holds its metadata, never its code."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get('type') != 'class' or 'state' not in meta:
            raise pickle.UnpicklingError('malformed persistent object')
        self.class_name = str(meta.get('class_name'))
        self.state = meta['state']


class _NetworkRecord:
    """One network of our own snapshots: family, constructor kwargs and state dict."""

    def __init__(self, record: dict):
        self.record = record

    def __reduce__(self):
        return _NetworkRecord, (self.record,)


def _storage_from_bytes(data: bytes):
    # torch pickles storages as nested torch.save() blobs; read them with torch's own weights-only loader.
    return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_parameter(data, requires_grad, backward_hooks, *state):
    return nn.Parameter(data, requires_grad=requires_grad)


_NUMPY_CORE = getattr(np, '_core', None) or np.core
_ALLOWED: dict[tuple[str, str], Any] = {
    ('collections', 'OrderedDict'): OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
    ('torch._utils', '_rebuild_tensor'): torch._utils._rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch.storage', '_load_from_bytes'): _storage_from_bytes,
    ('torch', 'Size'): torch.Size,
    ('numpy', 'dtype'): np.dtype,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy._core.multiarray', '_reconstruct'): _NUMPY_CORE.multiarray._reconstruct,
    ('numpy.core.multiarray', '_reconstruct'): _NUMPY_CORE.multiarray._reconstruct,
    ('numpy._core.multiarray', 'scalar'): _NUMPY_CORE.multiarray.scalar,
    ('numpy.core.multiarray', 'scalar'): _NUMPY_CORE.multiarray.scalar,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('dnnlib.util', 'EasyDict'): dict,
    ('dnnlib', 'EasyDict'): dict,
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _PersistentObject,
    ('networks.snapshot', '_NetworkRecord'): _NetworkRecord,
}
_ALLOWED.update({('torch', name): getattr(torch, name) for name in dir(torch) if isinstance(getattr(torch, name), torch.dtype)})
_ALLOWED.update({('torch', f'{k}Storage'): getattr(torch, f'{k}Storage') for k in
                 ('Float', 'Double', 'Half', 'BFloat16', 'Long', 'Int', 'Short', 'Char', 'Byte', 'Bool')})


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals on the allow-list above."""

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module.startswith('dnnlib.tflib'):
            raise pickle.UnpicklingError('this is a TensorFlow StyleGAN/StyleGAN2 pickle, which is not supported; '
                                         'convert it with NVIDIA\'s legacy.py to a PyTorch pickle first')
        raise pickle.UnpicklingError(f'refusing to load global {module}.{name} (not on the allow-list of safe types)')


# ---------------------------------------------------------------------------------------------
# Rebuilding networks from records.

def _persistent_tensors(state: dict, prefix: str = '') -> OrderedDict:
    """Flatten a pickled nn.Module __dict__ (and its children) into a state dict."""
    tensors = OrderedDict()
    skip = set(state.get('_non_persistent_buffers_set', ()))
    for name, value in list(state.get('_parameters', {}).items()) + list(state.get('_buffers', {}).items()):
        if value is not None and name not in skip:
            tensors[prefix + name] = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    for name, child in state.get('_modules', {}).items():
        if isinstance(child, _PersistentObject):
            tensors.update(_persistent_tensors(child.state, f'{prefix}{name}.'))
        elif child is not None:
            raise pickle.UnpicklingError(f'unexpected child module {name!r} of type {type(child).__name__}')
    return tensors


def _nvidia_family(obj: _PersistentObject) -> str:
    if obj.class_name == 'Generator':
        synthesis = obj.state.get('_modules', {}).get('synthesis')
        children = synthesis.state.get('_modules', {}) if isinstance(synthesis, _PersistentObject) else {}
        # Told apart by structure: StyleGAN3 synthesis starts from Fourier features, StyleGAN2 from a 4x4 block.
        if 'input' in children:
            return 'stylegan3.Generator'
        if 'b4' in children:
            return 'stylegan2.Generator'
        raise pickle.UnpicklingError('Generator with an unknown synthesis network')
    if obj.class_name in ('Discriminator', 'AugmentPipe'):
        return obj.class_name
    raise pickle.UnpicklingError(f'unsupported network class {obj.class_name!r}')


def _nvidia_record(obj: _PersistentObject) -> dict:
    family = _nvidia_family(obj)
    if obj.state.get('_init_args'):
        raise pickle.UnpicklingError(f'{obj.class_name} was built with positional arguments, which are not supported')
    kwargs = plain(dict(obj.state.get('_init_kwargs') or {}))
    if family.endswith('Generator'):
        # stylegan2-ada-pytorch nests the synthesis kwargs; the StyleGAN3 repo passes them flat.
        kwargs.update(kwargs.pop('synthesis_kwargs', None) or {})
    return dict(family=family, init_kwargs=kwargs, state_dict=_persistent_tensors(obj.state),
                training=bool(obj.state.get('training', False)))


def build_network(record: dict) -> nn.Module:
    """Instantiate a network from a record (family, init_kwargs, state_dict) and load its tensors exactly."""
    family = record['family']
    if family not in FAMILIES:
        raise pickle.UnpicklingError(f'unknown network family {family!r}')
    cls = FAMILIES[family]()
    try:
        module = cls(**record['init_kwargs'])
    except TypeError as e:
        raise pickle.UnpicklingError(f'{family}: constructor arguments not understood ({e})') from e
    expected = module.state_dict()
    state = record['state_dict']
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise pickle.UnpicklingError(f'{family}: tensors do not match the architecture '
                                     f'(missing {missing[:3]}, unexpected {unexpected[:3]})')
    for name, value in state.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise pickle.UnpicklingError(f'{family}: {name} has shape {list(value.shape)}, '
                                         f'expected {list(expected[name].shape)}')
    module.load_state_dict(state, strict=True)
    module.train(bool(record.get('training', False)))
    return module.requires_grad_(False)


def network_record(module: nn.Module) -> dict:
    """The record that `build_network` turns back into `module`."""
    return dict(family=family_of(module), init_kwargs=plain(module.init_kwargs),
                state_dict=OrderedDict((k, v.detach().cpu().clone()) for k, v in module.state_dict().items()),
                training=False)


def _materialise(value: Any) -> Any:
    """Replace records inside a loaded snapshot dict with built networks."""
    if isinstance(value, _PersistentObject):
        return build_network(_nvidia_record(value))
    if isinstance(value, _NetworkRecord):
        return build_network(value.record)
    return value


# ---------------------------------------------------------------------------------------------
# Public API.

def _resolve(source: PathLike) -> str:
    source = str(source)
    if re.match(r'^https?://', source):
        from torch_utils.download import download_cached
        return str(download_cached(source))
    if os.path.isdir(source):
        latest = find_latest_snapshot(source)
        if latest is None:
            raise SnapshotError(f'{source}: directory holds no {SNAPSHOT_GLOB}')
        return latest
    if not os.path.exists(source):   # a short name of a model shipped in pretrained/ ('garments')
        from pretrained import resolve_pretrained
        source = resolve_pretrained(source) or source
    if not os.path.isfile(source):
        raise SnapshotError(f'{source}: no such file')
    return source


def _read_pickle(path: str) -> dict:
    with open(path, 'rb') as f:
        data = SafeUnpickler(f).load()
    if not isinstance(data, dict) or not {'G', 'D', 'G_ema'} <= set(data):
        raise pickle.UnpicklingError('not a network snapshot (expected a dict with G, D and G_ema)')
    return {key: _materialise(value) for key, value in data.items()}


def _read_pt(path: str) -> dict:
    data = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(data, dict) or data.get('format') != PT_FORMAT:
        raise pickle.UnpicklingError(f'not a {PT_FORMAT} export')
    out = {'augment_pipe': None, 'training_set_kwargs': data.get('training_set_kwargs')}
    for key, record in data['networks'].items():
        out[key] = build_network(record)
    return out


def load_snapshot(source: PathLike) -> dict:
    """Read a snapshot (.pkl of ours or NVIDIA's, .pt export, or http(s) URL) into a dict of our networks."""
    path = _resolve(source)
    try:
        if zipfile_like(path):
            data = _read_pt(path)
        else:
            data = _read_pickle(path)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, RuntimeError, KeyError) as e:
        raise SnapshotError(f'{source}: {e}') from None
    data.setdefault('augment_pipe', None)
    data.setdefault('training_set_kwargs', None)
    return data


def zipfile_like(path: str) -> bool:
    """torch.save writes zip archives; pickles start with the PROTO opcode."""
    with open(path, 'rb') as f:
        return f.read(4) == b'PK\x03\x04'


def load_generator(source: PathLike, device: Union[str, torch.device] = 'cpu', key: str = 'G_ema') -> nn.Module:
    """The generator of a snapshot (`G_ema` by default), in eval mode without gradients, on `device`."""
    data = load_snapshot(source)
    if data.get(key) is None:
        raise SnapshotError(f'{source}: snapshot has no {key}')
    return data[key].eval().requires_grad_(False).to(device)


def _encode(value: Any) -> Any:
    return _NetworkRecord(network_record(value)) if isinstance(value, nn.Module) else value


def save_snapshot(path: PathLike, data: dict) -> None:
    """Write a snapshot dict (networks as nn.Modules, anything else plain data or tensors) atomically."""
    payload = {key: _encode(value) for key, value in data.items()}
    atomic_write(path, lambda f: pickle.dump(payload, f, protocol=4))


def export_pt(data: dict, path: PathLike) -> None:
    """Write the networks of a snapshot dict as a weights-only `.pt` file (atomic)."""
    networks = {key: network_record(value) for key, value in data.items() if isinstance(value, nn.Module)}
    payload = dict(format=PT_FORMAT, version=PT_VERSION, networks=networks,
                   training_set_kwargs=plain(data.get('training_set_kwargs')))
    atomic_write(path, lambda f: torch.save(payload, f))


def find_latest_snapshot(path: str) -> Optional[str]:
    """Newest snapshot of a run dir, or of the newest run in an outdir that holds run dirs."""
    if os.path.isfile(path):
        return path
    candidates = glob.glob(os.path.join(path, SNAPSHOT_GLOB)) or glob.glob(os.path.join(path, '*', SNAPSHOT_GLOB))
    if not candidates:
        return None
    return max(candidates, key=lambda p: (os.path.basename(os.path.dirname(p)), snapshot_nimg(p)))


def snapshot_name(nimg: int) -> str:
    """'000432' at whole kimg as NVIDIA names them, '000000.500' in between (tiny --tick values)."""
    return f'{nimg // 1000:06d}' + (f'.{nimg % 1000:03d}' if nimg % 1000 else '')


def snapshot_nimg(path: str) -> int:
    m = re.search(r'network-snapshot-(\d+)(?:\.(\d+))?\.pkl$', path)
    return int(m.group(1)) * 1000 + int(m.group(2) or 0) if m else -1
