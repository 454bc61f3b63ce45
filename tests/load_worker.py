"""Subprocess side of tests.hostile_pickles.run_worker: loads every file named on stdin (a JSON list) and prints
one JSON line per file, then a summary. Memory is capped with RLIMIT_AS; an audit hook is the canary that
reports any attempt to run a program, load native code, open a socket or exec code while files load.

    python tests/load_worker.py MEMORY_LIMIT_BYTES [WARM_UP_SNAPSHOT] < cases.json

cases.json: a list of [mode, path], mode one of snapshot, cifar, source (dataset_tool's readers) and dataset
(the training set class).

The warm-up file (a good one) is loaded before the canary is armed, so that modules torch imports lazily
on first use are not mistaken for something a file did.
"""
import json
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CANARY_EVENTS = ('os.system', 'os.exec', 'os.posix_spawn', 'os.spawn', 'os.fork', 'os.forkpty',
                  'subprocess.Popen', 'ctypes.dlopen', 'ctypes.dlsym', 'socket.connect', 'exec', 'compile',
                  'import', 'os.remove', 'os.rename', 'shutil.rmtree', 'urllib.Request')
_armed = False
_canary: list = []


def _audit(event: str, args) -> None:
    if _armed and event.startswith(_CANARY_EVENTS):
        if event == 'import' and args and args[0] in sys.modules:
            return
        if len(_canary) < 20:
            _canary.append(f'{event} {str(args)[:120]}')


def _rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def _peak_rss_mb() -> float:
    # VmHWM belongs to this process's own memory map; ru_maxrss would also count the RSS of the parent
    # (pytest, gigabytes late in the suite) that this worker was forked from before exec.
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM:')) / 1024


def main() -> None:
    global _armed
    limit = int(sys.argv[1])
    cases = json.load(sys.stdin)
    # everything the loaders need is imported before the canary is armed, codecs that old pickle opcodes use too
    import encodings.ascii, encodings.latin_1, encodings.raw_unicode_escape, encodings.unicode_escape  # noqa: F401,E401
    from networks.snapshot import SnapshotError, load_snapshot
    import training.augment   # noqa: F401 - registers the AugmentPipe family, as the training code does
    from training.dataset import ImageFolderDataset
    from training.dataset_errors import DatasetError
    from training.dataset_sources import open_cifar10, open_source

    def read_dataset(path):
        dataset = ImageFolderDataset(path)
        return [dataset[i][0].shape for i in range(len(dataset))], dataset.skipped
    readers = {
        'snapshot': lambda path: sorted(load_snapshot(path)),
        'cifar': lambda path: open_cifar10(path).count,
        'source': lambda path: [(item.name, item.error) for item in open_source(path).items if item.error],
        'dataset': read_dataset,
    }
    if len(sys.argv) > 2:
        load_snapshot(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    sys.addaudithook(_audit)
    for mode, path in cases:
        _armed = True
        try:
            case = dict(outcome='loaded', type=None, message=repr(readers[mode](path))[:300])
        except (SnapshotError, DatasetError) as e:
            case = dict(outcome='refused', type=type(e).__name__, message=str(e))
        except BaseException as e:   # noqa: BLE001 - reported, the test decides
            case = dict(outcome='unexpected', type=type(e).__name__, message=str(e)[:2000])
        _armed = False
        case.update(mode=mode, path=path, rss_mb=round(_rss_mb(), 1))
        print(json.dumps(case), flush=True)
    print(json.dumps(dict(summary=True, canary=_canary,
                          max_rss_mb=round(_peak_rss_mb(), 1))))


if __name__ == '__main__':
    main()
