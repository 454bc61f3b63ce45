"""Subprocess side of hostile_pickles.run_worker (beside this file): loads every file named on stdin and prints one
JSON line per file, then a summary. Memory is capped with RLIMIT_AS; an audit hook is the canary that reports any attempt
to run a program, load native code, open a socket or exec code while files load.

    python tests/helpers/load_worker.py MEMORY_LIMIT_BYTES [WARM_UP_SNAPSHOT] < cases.json

cases.json: a list of [mode, path], or {"cases": [[mode, path], ...], "good": {mode: path}}. A mode is a
reader (see `readers` in main) and its arguments, separated by spaces ('ws 8 16': latents for num_ws=8, w_dim=16).
For a mode with a good file, that file is read once before the canary is armed and again after every case of
the mode; the case's "good" field says whether it still reads the same ('same'), differently ('changed') or
not at all ('failed: ...'): a hostile file must not change what later loads in the same process see.

The warm-up file (a good one) is loaded before the canary is armed, so that modules torch imports lazily
on first use are not mistaken for something a file did.
"""
import hashlib
import json
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

_CANARY_EVENTS = ('os.system', 'os.exec', 'os.posix_spawn', 'os.spawn', 'os.fork', 'os.forkpty',
                  'subprocess.Popen', 'ctypes.dlopen', 'ctypes.dlsym', 'socket.connect', 'exec', 'compile',
                  'import', 'os.remove', 'os.rename', 'shutil.rmtree', 'urllib.Request')
_armed = False
_canary: list = []
_current = ''   # the file being read, named in the canary's lines


def _audit(event: str, args) -> None:
    if _armed and event.startswith(_CANARY_EVENTS):
        if event == 'import' and args and args[0] in sys.modules:
            return
        if len(_canary) < 20:
            _canary.append(f'{os.path.basename(_current)}: {event} {str(args)[:120]}')


def _rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def _peak_rss_mb() -> float:
    # VmHWM belongs to this process's own memory map; ru_maxrss would also count the RSS of the parent
    # (pytest, gigabytes late in the suite) that this worker was forked from before exec.
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM:')) / 1024


def _digest(value, seen=None) -> str:
    """A fingerprint of what a reader returned: tensors and arrays by dtype, shape and bytes."""
    import numpy as np
    import torch
    if isinstance(value, torch.nn.Module):
        value = value.state_dict()
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return f'{value.dtype.str}{list(value.shape)}:{hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()}'
    if isinstance(value, dict):
        return '{' + ','.join(f'{k!r}:{_digest(v)}' for k, v in value.items()) + '}'
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(_digest(v) for v in value) + ']'
    if hasattr(value, '__dict__') and not isinstance(value, type):
        return type(value).__name__ + _digest(vars(value))
    return repr(value)


def main() -> None:
    global _armed, _current
    limit = int(sys.argv[1])
    request = json.load(sys.stdin)
    cases, good = (request, {}) if isinstance(request, list) else (request['cases'], request.get('good', {}))
    # everything the loaders need is imported before the canary is armed, codecs that old pickle opcodes use too
    import encodings.ascii, encodings.latin_1, encodings.raw_unicode_escape, encodings.unicode_escape  # noqa: F401,E401
    from data import DatasetError
    from data.dataset import ImageFolderDataset
    from data.sources import open_cifar10, open_source
    from editing import EditingError
    from editing.directions import load_directions
    from editing.latents import load_ws_file
    from app.studio import StudioError, read_upload
    from inversion.preprocess import TargetError, load_target, read_image
    from networks.snapshot import SnapshotError, load_snapshot
    import training.augment   # noqa: F401 - registers the AugmentPipe family, as the training code does
    from training import resume
    from metrics import MetricError
    from metrics.garment_classifier import ClassifierFileError, load_garment_classifier
    from inversion.hyperstyle import InverterError, load_inverter
    from metrics.runner import snapshot_dataset

    def read_dataset(path):
        dataset = ImageFolderDataset(path, use_labels=True)
        return [dataset[i][0].shape for i in range(len(dataset))], dataset.skipped, dataset.label_shape

    def read_source(path):   # the items a conversion would skip, and how many it would write
        source = open_source(path)
        try:
            items = list(source.items)
        finally:
            source.close()
        return [(item.name, item.error) for item in items if item.error], sum(item.error is None for item in items)

    def check_resume(path):
        data = load_snapshot(path)
        return resume.check_training_state(data.get('training_state'), path, data)

    readers = {
        'snapshot': lambda path: load_snapshot(path),
        'cifar': lambda path: open_cifar10(path).count,
        'source': read_source,
        'dataset': read_dataset,
        'ws': lambda path, num_ws, w_dim: load_ws_file(path, int(num_ws), int(w_dim)),
        'directions': load_directions,
        'image': read_image,
        'target': lambda path, resolution: load_target(path, int(resolution), 3),
        'upload': read_upload,
        'resume': check_resume,
        'metrics_data': lambda path: snapshot_dataset(load_snapshot(path), path),
        'classifier': load_garment_classifier,
        'hyperstyle': load_inverter,
    }
    refusals = (SnapshotError, DatasetError, EditingError, StudioError, TargetError, MetricError,
                resume.ResumeStateError, ClassifierFileError, InverterError)

    def read(mode, path):
        name, *args = mode.split()
        return readers[name](path, *args)

    if len(sys.argv) > 2:
        load_snapshot(sys.argv[2])
    reference = {mode: _digest(read(mode, path)) for mode, path in good.items()}
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    sys.addaudithook(_audit)
    for mode, path in cases:
        _armed, _current = True, path
        try:
            case = dict(outcome='loaded', type=None, message=_summary(read(mode, path)))
        except refusals as e:
            case = dict(outcome='refused', type=type(e).__name__, message=str(e))
        except BaseException as e:   # noqa: BLE001 - reported, the test decides
            case = dict(outcome='unexpected', type=type(e).__name__, message=str(e)[:2000])
        if mode in good:
            try:
                case['good'] = 'same' if _digest(read(mode, good[mode])) == reference[mode] else 'changed'
            except BaseException as e:   # noqa: BLE001
                case['good'] = f'failed: {type(e).__name__}: {str(e)[:300]}'
        _armed = False
        case.update(mode=mode, path=path, rss_mb=round(_rss_mb(), 1))
        print(json.dumps(case), flush=True)
    print(json.dumps(dict(summary=True, canary=_canary,
                          max_rss_mb=round(_peak_rss_mb(), 1))))


def _summary(value) -> str:
    """A short description of what a reader returned (tensors by shape: torch's own printing imports modules
    lazily, which the canary would report)."""
    if isinstance(value, dict):   # a snapshot: which entries it holds
        return repr(sorted(value))
    if hasattr(value, 'shape') and not isinstance(value, tuple):
        return f'{type(value).__name__}{list(value.shape)}'
    if isinstance(value, (list, tuple)):
        return '(' + ', '.join(_summary(v) for v in value) + ')'
    if hasattr(value, '__dict__') and not isinstance(value, type):
        return f'{type(value).__name__}({", ".join(sorted(vars(value)))})'
    return repr(value)[:300]


if __name__ == '__main__':
    main()
