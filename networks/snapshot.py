"""Reading and writing network snapshots without executing anything stored in the file.

A snapshot is a dict with `G`, `D`, `G_ema`, `augment_pipe` and `training_set_kwargs` (plus, in ours,
optional training state). Three file kinds are read:

* NVIDIA's pickles (StyleGAN3 and stylegan2-ada-pytorch `network-snapshot-*.pkl`): each network is a
  "persistent object" carrying its class name, constructor kwargs, tensors and the *source code* of its
  module. We ignore the source and rebuild our own class of the same structure from the kwargs and tensors.
* Our pickles: the same dict layout; each network is stored as (family, kwargs, state dict).
* `.pt` exports: the same records, loadable with `torch.load(weights_only=True)`.

All three are read by the one allow-listed unpickler of torch_utils.safe_pickle: any global outside its
allow-list stops the load with an error naming it, before anything runs; every tensor owns its storage
(no stride-0 or shared views). Networks are then built on the meta device and their tensor shapes and
element count compared with the file's before any memory is committed, so a file cannot make the loader
allocate much more than the tensor bytes it holds. Non-finite weights are refused. Every problem with a
file is a SnapshotError whose message is one line naming the file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import math
import os
import pickle
import re
import resource
import threading
import warnings
from collections import OrderedDict
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from torch_utils import safe_json, safe_pickle
from torch_utils.atomic import atomic_write
from torch_utils.cli import UserError, describe, did_you_mean
from torch_utils.download import download_cached, is_url
from torch_utils.safe_pickle import one_line

from . import discriminator, stylegan2, stylegan3
from .persistence import plain

PathLike = Union[str, os.PathLike]
PT_FORMAT = 'stylegan3-clothing/snapshot'
SNAPSHOT_GLOB = 'network-snapshot-*.pkl'
BEST_FILE = 'best.json'      # in a run directory: the best snapshot by its first metric (metrics.best)
BEST_LIMIT = 16 << 20        # bytes of best.json read
BEST_SUFFIX = ':best'
LATEST = 'latest'            # train.py --resume=latest: the newest run of --outdir
PT_VERSION = 1
NETWORK_KEYS = ('G', 'D', 'G_ema', 'augment_pipe')
# The models trained here and shipped in pretrained/, by short name (--network=garments): the table sits beside the
# loader, below every package that reads a snapshot; the files and the tooling that makes and measures them stay
# in pretrained/ (its README says how each was trained), found from this checkout's layout, not imported.
PRETRAINED_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'pretrained')
SHIPPED_MODELS = {   # short name -> file in PRETRAINED_FOLDER
    'garments': 'stylegan2-garments-64x64.pt',
}
NOT_A_SNAPSHOT = ('not a network snapshot (expected a .pkl from train.py or NVIDIA, a .pt export, '
                  'a run directory or a URL)')


class SnapshotError(UserError):
    """A snapshot that cannot be read; the message names the file and the reason."""


# ---------------------------------------------------------------------------------------------
# Network families: what we can build. Code outside networks/ adds its own (training.augment registers
# the AugmentPipe), so that generating never needs the training code.

FAMILIES: dict[str, type] = {}
# Families whose module may not be loaded: their networks load as None there (nothing that does not
# import them needs them, e.g. gen_images.py and the augment pipe).
OPTIONAL_FAMILIES = {'AugmentPipe': 'training.augment'}


def register_family(name: str, cls: type) -> None:
    """Let snapshots hold networks of class `cls` under `name` (NVIDIA's class name where there is one)."""
    FAMILIES[name] = cls


register_family('stylegan2.Generator', stylegan2.Generator)
register_family('stylegan3.Generator', stylegan3.Generator)
register_family('Discriminator', discriminator.Discriminator)


def family_of(module: nn.Module) -> str:
    for name, cls in FAMILIES.items():
        if type(module) is cls:
            return name
    raise TypeError(f'cannot snapshot a {type(module).__name__}: not a registered network family')


# ---------------------------------------------------------------------------------------------
# What the unpickler may build besides plain data and tensors.

class _PersistentObject:
    """Stand-in for one of NVIDIA's persistent objects: holds its metadata, never its code."""

    def __init__(self, meta: Any):
        if not isinstance(meta, dict) or meta.get('type') != 'class' or not isinstance(meta.get('state'), dict) \
                or not isinstance(meta.get('class_name'), str):
            raise SnapshotError('malformed NVIDIA persistent object')
        self.class_name = meta['class_name']
        self.state = meta['state']


class _NetworkRecord:
    """One network of our own snapshots: family, constructor kwargs and state dict."""

    def __init__(self, record: Any):
        self.record = record

    def __reduce__(self):
        return _NetworkRecord, (self.record,)


_SNAPSHOT_GLOBALS = {
    **safe_pickle.tensor_globals(),
    ('dnnlib.util', 'EasyDict'): dict,
    ('dnnlib', 'EasyDict'): dict,
    # functions, not the classes: a pickle may call them but not create bare instances (NEWOBJ)
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): lambda meta: _PersistentObject(meta),
    ('networks.snapshot', '_NetworkRecord'): lambda record: _NetworkRecord(record),
}
_WALK = (_PersistentObject, _NetworkRecord)


# ---------------------------------------------------------------------------------------------
# NVIDIA's persistent objects -> records.

def _module_parts(state: dict, where: str) -> tuple:
    parts = tuple(state.get(key) or {} for key in ('_parameters', '_buffers', '_modules'))
    skip = state.get('_non_persistent_buffers_set') or ()
    if not all(isinstance(part, dict) for part in parts) or not isinstance(skip, (set, frozenset, list, tuple)):
        raise SnapshotError(f'{where}: malformed module state')
    return parts + (skip,)


def _persistent_tensors(state: dict, prefix: str = '') -> OrderedDict:
    """Flatten a pickled nn.Module __dict__ (and its children) into a state dict."""
    parameters, buffers, modules, skip = _module_parts(state, prefix.rstrip('.') or 'network')
    tensors = OrderedDict()
    for name, value in list(parameters.items()) + list(buffers.items()):
        if value is not None and name not in skip:
            tensors[f'{prefix}{name}'] = value
    for name, child in modules.items():
        if isinstance(child, _PersistentObject):
            tensors.update(_persistent_tensors(child.state, f'{prefix}{name}.'))
        elif child is not None:
            raise SnapshotError(f'unexpected child module {prefix}{name} of type {type(child).__name__}')
    return tensors


def _nvidia_family(obj: _PersistentObject) -> str:
    if obj.class_name == 'Generator':
        synthesis = _module_parts(obj.state, 'Generator')[2].get('synthesis')
        children = _module_parts(synthesis.state, 'synthesis')[2] if isinstance(synthesis, _PersistentObject) else {}
        # Told apart by structure: StyleGAN3 synthesis starts from Fourier features, StyleGAN2 from a 4x4 block.
        if 'input' in children:
            return 'stylegan3.Generator'
        if 'b4' in children:
            return 'stylegan2.Generator'
        raise SnapshotError('Generator with an unknown synthesis network')
    if obj.class_name in ('Discriminator', 'AugmentPipe'):
        return obj.class_name
    raise SnapshotError(f'unsupported network class {obj.class_name!r}')


def _nvidia_record(obj: _PersistentObject) -> dict:
    family = _nvidia_family(obj)
    if obj.state.get('_init_args'):
        raise SnapshotError(f'{obj.class_name} was built with positional arguments, which are not supported')
    kwargs = obj.state.get('_init_kwargs') or {}
    if not isinstance(kwargs, dict):
        raise SnapshotError(f'{obj.class_name}: constructor arguments are a {type(kwargs).__name__}, not a dict')
    kwargs = plain(dict(kwargs))
    if family.endswith('Generator'):
        # stylegan2-ada-pytorch nests the synthesis kwargs; the StyleGAN3 repo passes them flat.
        nested = kwargs.pop('synthesis_kwargs', None) or {}
        if not isinstance(nested, dict):
            raise SnapshotError(f'{obj.class_name}: synthesis_kwargs is a {type(nested).__name__}, not a dict')
        kwargs.update(nested)
    return dict(family=family, init_kwargs=kwargs, state_dict=_persistent_tensors(obj.state),
                training=obj.state.get('training', False))


# ---------------------------------------------------------------------------------------------
# Building networks from records: checked on the meta device before any memory is committed.

# Constructor arguments also steer how many modules a constructor makes and how much filter design it
# does in NumPy (which the meta device does not cover); real models stay far inside these bounds.
_MAX_NUMBER = 1 << 20
_KWARG_LIMITS = {'img_resolution': 8192, 'num_layers': 64, 'num_critical': 64, 'filter_size': 64,
                 'lrelu_upsampling': 16, 'conv_kernel': 31, 'img_channels': 64}
_CONSTRUCTION_BUDGET = 1 << 30   # bytes of address space a constructor's own NumPy work may take


def _check_kwargs(value: Any, where: str = '', depth: int = 0) -> None:
    if value is None or isinstance(value, bool) or (isinstance(value, str) and len(value) <= 256):
        return
    if isinstance(value, (int, float)):
        limit = _KWARG_LIMITS.get(where.rsplit('.', 1)[-1], _MAX_NUMBER)
        if not math.isfinite(value) or abs(value) > limit:
            raise SnapshotError(f'constructor argument {where}={value} is out of range (at most {limit})')
        return
    if isinstance(value, (list, tuple, dict)) and len(value) <= 64 and depth < 4:
        for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
            if not isinstance(key, (str, int)):
                raise SnapshotError(f'constructor argument {where} has a key of type {type(key).__name__}')
            _check_kwargs(item, f'{where}.{key}' if where else str(key), depth + 1)
        return
    raise SnapshotError(f'constructor argument {where or "kwargs"} is a {type(value).__name__} that no network takes')


@contextlib.contextmanager
def _address_space_budget(nbytes: int) -> Iterator[None]:
    """Lower RLIMIT_AS to what the process maps now plus `nbytes`, so that a constructor asked by a file for
    absurd filter sizes fails with MemoryError instead of exhausting the machine. Only where /proc exists and
    no other Python thread runs (the limit is process-wide); elsewhere the kwargs bounds above must do."""
    try:
        with open('/proc/self/statm') as f:
            mapped = int(f.read().split()[0]) * os.sysconf('SC_PAGE_SIZE')
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        yield
        return
    limit = mapped + nbytes
    if (soft != resource.RLIM_INFINITY and soft <= limit) or (hard != resource.RLIM_INFINITY and hard < limit) \
            or threading.active_count() > 1:
        yield   # already bounded at least as tightly, or other threads might be refused memory meanwhile
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _construct(cls: type, kwargs: dict, family: str, meta: bool) -> nn.Module:
    """cls(**kwargs) from a file's kwargs. NumPy's overflow and division warnings of the filter design are
    silenced: for a file's absurd numbers they would be printed before the one line that refuses the file, and
    a file that loads takes its filters from its own tensors."""
    try:
        with warnings.catch_warnings(), np.errstate(all='ignore'):
            warnings.simplefilter('ignore', RuntimeWarning)
            if not meta:
                return cls(**kwargs)
            with _address_space_budget(_CONSTRUCTION_BUDGET), torch.device('meta'):
                return cls(**kwargs)
    except Exception as e:   # noqa: BLE001 - the kwargs come from the file: any failure is the file's
        raise SnapshotError(one_line(f'{family}: constructor arguments not understood ({type(e).__name__}: {e})')) \
            from None


def _check_tensors(expected: dict, state: Any, family: str) -> None:
    if not isinstance(state, dict):
        raise SnapshotError(f'{family}: state dict is a {type(state).__name__}, not a dict')
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise SnapshotError(f'{family}: {name} is a {type(value).__name__}, not a tensor')
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(str(k) for k in set(state) - set(expected))
    if missing or unexpected:
        raise SnapshotError(f'{family}: tensors do not match the architecture '
                            f'(missing {missing[:3]}, unexpected {unexpected[:3]})')
    for name, value in state.items():
        want = expected[name]
        if tuple(value.shape) != tuple(want.shape):
            raise SnapshotError(f'{family}: {name} has shape {list(value.shape)}, expected {list(want.shape)}')
        if value.dtype != want.dtype and not (value.is_floating_point() and want.is_floating_point()):
            raise SnapshotError(f'{family}: {name} has dtype {value.dtype}, expected {want.dtype}')
        # Refused rather than warned about: no tool here can use such a network (images would be black, metrics
        # and resumed training meaningless), and the file stays readable with torch for a post-mortem.
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise SnapshotError(f'{family}: {name} holds NaN or infinite values (a diverged run? use an earlier '
                                f'snapshot)')


def _check_size(meta_module: nn.Module, state: dict, family: str) -> None:
    """The network may need no more elements than the file's tensors hold, each storage counted once: a file
    naming one tensor under many keys would otherwise fill many layers from the bytes of one. (safe_pickle
    already makes every tensor own exactly its storage.) Buffers the state dict does not carry count too, so
    that no constructor can grow past the file."""
    needed = sum(t.numel() for t in list(meta_module.parameters()) + list(meta_module.buffers()))
    filled = [t for t in state.values() if t.numel()]
    storages = {t.untyped_storage().data_ptr(): t.numel() for t in filled}
    held = sum(storages.values())
    if needed != held:
        raise SnapshotError(f'{family}: the network needs {needed} tensor elements, the file holds {held}'
                            + (' (one tensor stands for several)' if len(storages) < len(filled) else ''))


def build_network(record: Any) -> nn.Module:
    """Instantiate a network from a record (family, init_kwargs, state_dict, training) and load its tensors
    exactly. The architecture is first built on the meta device and every tensor's shape and dtype compared
    with the record's, so that a file cannot make us allocate more than the tensors it holds; non-finite
    weights are refused."""
    if not isinstance(record, dict) or not isinstance(record.get('family'), str):
        raise SnapshotError(f'network record is a {type(record).__name__} without a family')
    family, kwargs, state = record['family'], record.get('init_kwargs'), record.get('state_dict')
    if family not in FAMILIES:
        raise SnapshotError(f'unknown network family {family!r}')
    if not isinstance(kwargs, dict):
        raise SnapshotError(f'{family}: constructor arguments are a {type(kwargs).__name__}, not a dict')
    _check_kwargs(kwargs)
    cls = FAMILIES[family]
    meta_module = _construct(cls, kwargs, family, meta=True)
    _check_tensors(meta_module.state_dict(), state, family)
    _check_size(meta_module, state, family)
    module = _construct(cls, kwargs, family, meta=False)
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as e:
        raise SnapshotError(one_line(f'{family}: tensors not accepted ({e})')) from None
    module.train(record.get('training') is True)
    return module.requires_grad_(False)


def network_record(module: nn.Module) -> dict:
    """The record that `build_network` turns back into `module`."""
    return dict(family=family_of(module), init_kwargs=plain(module.init_kwargs),
                state_dict=OrderedDict((k, v.detach().cpu().clone()) for k, v in module.state_dict().items()),
                training=False)


# ---------------------------------------------------------------------------------------------
# Reading.

def _record(key: str, value: Any) -> Optional[dict]:
    """The record of the network stored under `key` (None stays None), checked for its form but not built."""
    if value is None:
        return None
    if isinstance(value, _PersistentObject):
        return _nvidia_record(value)
    if isinstance(value, _NetworkRecord):
        return value.record
    if isinstance(value, dict) and 'family' in value:   # .pt exports hold plain records
        return value
    raise SnapshotError(f'{key} is a {type(value).__name__}, not a network')


def _network(key: str, record: Optional[dict], asked: bool) -> Optional[nn.Module]:
    """The network of a record. An optional family (the augment pipe) whose module is not loaded gives None,
    unless the key was asked for by name."""
    if record is None:
        return None
    family = record.get('family') if isinstance(record, dict) else None
    if isinstance(family, str) and family in OPTIONAL_FAMILIES and family not in FAMILIES:
        if asked:
            raise SnapshotError(f'{key}: building a {family} needs {OPTIONAL_FAMILIES[family]} imported first')
        return None
    try:
        return build_network(record)
    except SnapshotError as e:
        raise SnapshotError(f'{key}: {e}') from None


def _snapshot_dict(data: dict, networks: Any, keys: Optional[Sequence[str]]) -> dict:
    """Check the layout of a loaded file and build its networks (those of `keys`; None: all)."""
    # Exports may hold G_ema alone (pretrained/, PTI results); a file with none of G, D, G_ema is no snapshot.
    if not isinstance(networks, dict) or not all(isinstance(k, str) for k in networks) \
            or not {'G', 'D', 'G_ema'} & set(networks) or not set(networks) <= set(NETWORK_KEYS):
        raise SnapshotError(NOT_A_SNAPSHOT)
    if all(networks.get(key) is None for key in NETWORK_KEYS):
        raise SnapshotError('the snapshot holds no network (G, D and G_ema are all empty)')
    out = {key: value for key, value in data.items() if key not in NETWORK_KEYS}
    for key in ('training_set_kwargs', 'training_state'):
        if out.get(key) is not None and not isinstance(out[key], dict):
            raise SnapshotError(f'{key} is a {type(out[key]).__name__}, not a dict')
    out.update({key: None for key in NETWORK_KEYS})
    for key, value in networks.items():
        record = _record(key, value)   # every network's form is checked; only those asked for are built
        if keys is None or key in keys:
            out[key] = _network(key, record, asked=keys is not None)
    return out


def _read_snapshot(path: str, keys: Optional[Sequence[str]]) -> dict:
    with open(path, 'rb') as f:
        head = f.read(4)
        if head == b'PK\x03\x04':   # a torch.save archive: our .pt exports
            data = safe_pickle.load_torch_zip(path, _SNAPSHOT_GLOBALS, walk=_WALK)
            if not isinstance(data, dict) or data.get('format') != PT_FORMAT:
                raise SnapshotError(NOT_A_SNAPSHOT)
            return _snapshot_dict({'training_set_kwargs': data.get('training_set_kwargs')}, data.get('networks'), keys)
        if head[:1] != b'\x80':   # every pickle of protocol 2 or later starts with PROTO
            raise SnapshotError(NOT_A_SNAPSHOT)
        data = safe_pickle.loads(head + f.read(), _SNAPSHOT_GLOBALS, walk=_WALK)
    if not isinstance(data, dict):
        raise SnapshotError(NOT_A_SNAPSHOT)
    return _snapshot_dict(data, {key: value for key, value in data.items() if key in NETWORK_KEYS}, keys)


@dataclasses.dataclass(frozen=True)
class Source:
    """A snapshot as `resolve_source` found it. `path` is the snapshot file for kinds 'file', 'pretrained'
    (a model shipped in pretrained/) and 'best' (the one RUN_DIR/best.json names); the URL for 'url'; the
    directory for 'run' (a run directory, or a folder of runs) and 'latest' (the folder of runs whose newest
    run is meant). `snapshot_file` turns any of them into the local file to read."""
    path: str
    kind: str

    def command_name(self, given: str) -> str:
        """How shell commands should name this network: a URL or a short name of pretrained/ as given (it works
        from any folder), else the snapshot file, relative to the current folder where it lies below it."""
        if self.kind == 'pretrained':
            return given
        if self.kind == 'url':
            return self.path
        relative = os.path.relpath(self.path)
        return self.path if relative.startswith('..') else relative


def shipped_models() -> dict[str, str]:
    """Short name -> path of each model shipped in pretrained/."""
    return {name: os.path.join(PRETRAINED_FOLDER, filename) for name, filename in SHIPPED_MODELS.items()}


def resolve_source(text: Union[PathLike, Source], outdir: Optional[PathLike] = None) -> Source:
    """What `--network` (every script, the app) or `--resume` (train.py) names: a URL, RUN_DIR:best, a
    directory, a file, or the short name of a model shipped in pretrained/ (SHIPPED_MODELS), each also
    found by its file name with or without the suffix; an existing path wins over a name. With `outdir`,
    'latest' names the newest run there (train.py --resume=latest)."""
    if isinstance(text, Source):
        return text
    text = os.fspath(text)
    if is_url(text):
        return Source(text, 'url')
    if text == LATEST and outdir is not None:
        return Source(os.fspath(outdir), 'latest')
    if text.endswith(BEST_SUFFIX) and not os.path.exists(text):
        return Source(best_snapshot(text[:-len(BEST_SUFFIX)]), 'best')
    if os.path.isdir(text):
        return Source(text, 'run')
    if os.path.isfile(text):
        return Source(text, 'file')
    models = shipped_models()
    for name, path in models.items():
        if text in (name, os.path.basename(path), os.path.splitext(os.path.basename(path))[0]):
            if not os.path.isfile(path):
                raise SnapshotError(f'{path}: the {name!r} model is missing from this checkout')
            return Source(path, 'pretrained')
    if os.path.exists(text):
        raise SnapshotError(f'{text}: not a regular file or directory')
    raise SnapshotError(f'{text}: no such file, and not the name of a model in pretrained/ ({", ".join(models)})'
                        f'{did_you_mean(text, [*models, *_siblings(text)])}')


def snapshot_file(source: Source) -> str:
    """The local file to read for `source`: a URL downloaded once into the cache, a run directory's newest
    snapshot, the newest snapshot of the newest run of a folder of runs."""
    if source.kind == 'url':
        return str(download_cached(source.path))
    if source.kind in ('run', 'latest'):
        latest = find_latest_snapshot(source.path)
        if latest is None:
            raise SnapshotError(f'{source.path}: directory holds no {SNAPSHOT_GLOB}')
        return latest
    return source.path


def _siblings(path: str) -> list[str]:
    """The entries of a missing path's folder, spelt as the user would give them (for a 'did you mean')."""
    folder = os.path.dirname(path)
    try:
        return [os.path.join(folder, name) for name in os.listdir(folder or '.')]
    except OSError:
        return []


def read_best(run_dir: str) -> Any:
    """RUN_DIR/best.json as JSON, through the depth- and size-limited reader (OSError, ValueError)."""
    return safe_json.load_file(os.path.join(run_dir, BEST_FILE), BEST_LIMIT)


def best_snapshot(run_dir: PathLike) -> str:
    """The snapshot that `RUN_DIR/best.json` names (written as metrics are computed: metrics.best); for a
    folder of runs, its newest run's (the run that --network=FOLDER reads)."""
    path = os.path.join(str(run_dir), BEST_FILE)
    if not os.path.isdir(str(run_dir)):
        raise SnapshotError(f'{run_dir}{BEST_SUFFIX}: {run_dir} is not a run directory')
    if not os.path.exists(path) and not glob.glob(os.path.join(str(run_dir), SNAPSHOT_GLOB)):
        newest = find_latest_snapshot(run_dir)
        if newest is not None:
            run_dir = os.path.dirname(newest)
            path = os.path.join(run_dir, BEST_FILE)
    try:
        best = read_best(str(run_dir))
        name = best['snapshot']
    except FileNotFoundError:
        raise SnapshotError(f'{path}: no such file; a run has a best snapshot once a metric was computed '
                            f'(train.py --metrics, or calc_metrics.py --network={run_dir})') from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise SnapshotError(one_line(f'{path}: not a best.json of this toolkit ({describe(e)})')) from None
    if not isinstance(name, str) or os.path.basename(name) != name or not name.endswith('.pkl'):
        raise SnapshotError(f'{path}: names no snapshot file of the run')
    snapshot = os.path.join(str(run_dir), name)
    if not os.path.isfile(snapshot):
        raise SnapshotError(f'{snapshot}: the best snapshot ({best.get("metric")} {best.get("value")}) is no longer there')
    return snapshot


def load_snapshot(source: Union[PathLike, Source], keys: Optional[Sequence[str]] = None) -> dict:
    """Read a snapshot (.pkl of ours or NVIDIA's, .pt export, run directory, RUN_DIR:best, http(s) URL, or a
    Source from `resolve_source`) into a dict of our networks. Only the networks named in `keys` (of G, D,
    G_ema, augment_pipe) are built, the others are None; without `keys` every one the file holds is built
    (an augment pipe only where training.augment is loaded). Every problem with the file raises
    SnapshotError with one line naming it."""
    path = snapshot_file(resolve_source(source))
    where = source.path if isinstance(source, Source) and source.kind == 'url' else \
        path if isinstance(source, Source) else source
    if keys is not None and not set(keys) <= set(NETWORK_KEYS):
        raise ValueError(f'keys must be among {NETWORK_KEYS}, got {list(keys)}')
    try:
        data = _read_snapshot(path, keys)
    except (SnapshotError, safe_pickle.UnsafePickleError) as e:
        raise SnapshotError(one_line(f'{where}: {e}')) from None
    except OSError as e:
        raise SnapshotError(f'{where}: {e.strerror or e}') from None
    except Exception as e:   # noqa: BLE001 - a layout the checks above did not foresee is still the file's fault
        raise SnapshotError(one_line(f'{where}: malformed snapshot ({type(e).__name__}: {e})')) from None
    data.setdefault('training_set_kwargs', None)
    return data


def zipfile_like(path: str) -> bool:
    """torch.save writes zip archives; pickles start with the PROTO opcode."""
    with open(path, 'rb') as f:
        return f.read(4) == b'PK\x03\x04'


def load_generator(source: Union[PathLike, Source], device: Union[str, torch.device] = 'cpu',
                   key: str = 'G_ema') -> nn.Module:
    """The generator of a snapshot (`G_ema` by default; no other network is built), in eval mode without
    gradients, on `device`. `G.class_names` holds the names of its labels where the snapshot records them
    (else None)."""
    return _generator(load_snapshot(source, keys=(key,)), key, device, source)


def _generator(data: dict, key: str, device: Union[str, torch.device], source: Union[PathLike, Source]) -> nn.Module:
    if data.get(key) is None:
        raise SnapshotError(f'{source.path if isinstance(source, Source) else source}: snapshot has no {key}')
    G = data[key].eval().requires_grad_(False).to(device)
    G.class_names = recorded_class_names(data, int(getattr(G, 'c_dim', 0) or 0))
    return G


@dataclasses.dataclass
class OpenNetwork:
    """A generator opened for a script or the app (open_network)."""
    G: nn.Module        # G_ema, in eval mode without gradients, on the device asked for; G.class_names set
    source: Source      # what was read: a run directory or RUN_DIR:best pinned to the snapshot file it picked
    name: str           # what messages and records call it: the text given, or the picked file
    data: dict          # the snapshot as read (the networks of `keys`, the dataset options)


def pin_source(source: Source, log: Optional[Callable[[str], None]] = None) -> Source:
    """A run directory or RUN_DIR:best as the snapshot file it stands for now (reported to `log`), so that
    what is loaded and what is named in records and commands are the same file; any other source as it is."""
    if source.kind not in ('run', 'best'):
        return source
    path = snapshot_file(source)
    if log is not None:
        log(f'using {path}')
    return Source(path, 'file')


def open_network(text: Union[PathLike, Source], device: Union[str, torch.device] = 'cpu',
                 keys: Optional[Sequence[str]] = ('G_ema',), log: Optional[Callable[[str], None]] = None) -> OpenNetwork:
    """What every script and the app call for --network: resolve `text` (resolve_source: a file, URL, run
    directory, RUN_DIR:best or shipped model's name), pin a run to its snapshot file (pin_source, reported
    to `log`), read the networks of `keys` (all of them with None) and make G_ema ready to generate."""
    source = resolve_source(text)
    pinned = pin_source(source, log)
    data = load_snapshot(pinned, keys=keys)
    name = pinned.path if pinned is not source else os.fspath(text.path if isinstance(text, Source) else text)
    return OpenNetwork(_generator(data, 'G_ema', device, pinned), pinned, name, data)


def recorded_class_names(data: dict, c_dim: int) -> Optional[list[str]]:
    """The dataset's class names in a snapshot's training_set_kwargs, when there is one short name per
    label; None otherwise (NVIDIA's pickles and our older snapshots record none)."""
    kwargs = data.get('training_set_kwargs')
    names = kwargs.get('class_names') if isinstance(kwargs, dict) else None
    if (isinstance(names, (list, tuple)) and len(names) == c_dim > 0
            and all(isinstance(n, str) and 0 < len(n) <= 100 for n in names) and len(set(names)) == c_dim):
        return list(names)
    return None


# ---------------------------------------------------------------------------------------------
# Writing.

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


def find_latest_snapshot(path: PathLike) -> Optional[str]:
    """Newest snapshot of a run dir, or of the newest run in an outdir that holds run dirs; None where a
    directory holds none. A path that does not exist raises SnapshotError ("no such file or directory")."""
    path = str(path)
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise SnapshotError(f'{path}: no such file or directory')
    candidates = _regular(glob.glob(os.path.join(glob.escape(path), SNAPSHOT_GLOB))) or \
        _regular(glob.glob(os.path.join(glob.escape(path), '*', SNAPSHOT_GLOB)))
    if not candidates:
        return None
    return max(candidates, key=lambda p: (os.path.basename(os.path.dirname(p)), snapshot_nimg(p)))


def _regular(paths: list[str]) -> list[str]:
    """The regular files among `paths` (a FIFO named like a snapshot would make open() wait forever)."""
    return [p for p in paths if os.path.isfile(p)]


def snapshot_name(nimg: int) -> str:
    """'000432' at whole kimg as NVIDIA names them, '000000.500' in between (tiny --tick values)."""
    return f'{nimg // 1000:06d}' + (f'.{nimg % 1000:03d}' if nimg % 1000 else '')


def snapshot_nimg(path: str) -> int:
    m = re.search(r'network-snapshot-(\d+)(?:\.(\d+))?\.pkl$', path)
    return int(m.group(1)) * 1000 + int(m.group(2) or 0) if m else -1
