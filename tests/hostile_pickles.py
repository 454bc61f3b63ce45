"""Building hostile files for the safe-loading tests: a tiny pickle assembler (for pickles no Python object
would produce), a reader/writer of a snapshot's raw tree (for structural mutations of real files), and a
worker that loads many files in one subprocess and reports each outcome.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
from typing import Any, Optional

from torch_utils import safe_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------
# Assembler: each function returns the opcodes that push one value.

def glob(module: str, name: str) -> bytes:
    return b'c' + f'{module}\n{name}\n'.encode()


def text(s: str) -> bytes:
    raw = s.encode()
    return b'X' + struct.pack('<I', len(raw)) + raw


def raw(b: bytes) -> bytes:
    return b'B' + struct.pack('<I', len(b)) + b


def integer(n: int) -> bytes:
    return b'J' + struct.pack('<i', n)


NONE, FALSE, TRUE = b'N', b'\x89', b'\x88'


def tup(*items: bytes) -> bytes:
    return b'(' + b''.join(items) + b't'


def call(func: bytes, *args: bytes) -> bytes:
    return func + tup(*args) + b'R'


def build(obj: bytes, state: bytes) -> bytes:
    return obj + state + b'b'


def dictionary(**items: bytes) -> bytes:
    return b'}(' + b''.join(text(k) + v for k, v in items.items()) + b'u'


def program(value: bytes) -> bytes:
    return b'\x80\x03' + value + b'.'


def np_dtype(typestr: str, state: bytes) -> bytes:
    return build(call(glob('numpy', 'dtype'), text(typestr), FALSE, TRUE), state)


def np_array(dtype: bytes, shape: tuple, data: bytes) -> bytes:
    arr = call(glob('numpy.core.multiarray', '_reconstruct'), glob('numpy', 'ndarray'), tup(integer(0)), raw(b'b'))
    return build(arr, tup(integer(1), tup(*map(integer, shape)), dtype, FALSE, raw(data)))


def segfault_pickle() -> bytes:
    """Issue 12 item 1: a copy of dtype('O') whose flags are cleared, so that ndarray.__setstate__ takes raw
    bytes as object pointers; `set(...)` iterates the array and so dereferences 0x4141414141414141."""
    dtype = np_dtype('O', tup(integer(3), text('|'), NONE, NONE, NONE, integer(-1), integer(-1), integer(0)))
    array = np_array(dtype, (1,), b'A' * 8)
    return program(dictionary(G=call(glob('builtins', 'set'), array), D=NONE, G_ema=NONE))


# ---------------------------------------------------------------------------------------------
# Raw trees of real snapshots: read with the safe unpickler, persistent objects and our records kept as
# stand-ins that write themselves back under the same global.

class Stub:
    """A call of `module.name(*args)` found in a file; pickled back as the same call."""

    def __init__(self, module: str, name: str, args: tuple):
        self.module, self.name, self.args = module, name, list(args)


class _GlobalRef:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self):   # save_reduce wants a callable
        raise AssertionError


def read_tree(path: str) -> Any:
    """The unpickled tree of a snapshot pickle, networks as Stubs (tensors and arrays real)."""
    allowed = dict(safe_pickle.tensor_globals())
    allowed.update({
        ('dnnlib.util', 'EasyDict'): dict,
        ('torch_utils.persistence', '_reconstruct_persistent_obj'):
            lambda *a: Stub('torch_utils.persistence', '_reconstruct_persistent_obj', a),
        ('networks.snapshot', '_NetworkRecord'): lambda *a: Stub('networks.snapshot', '_NetworkRecord', a),
    })
    with open(path, 'rb') as f:
        return safe_pickle.loads(f.read(), allowed, walk=(Stub,))


class _TreePickler(pickle._Pickler):   # the pure-Python pickler lets a type write its own opcodes
    dispatch = dict(pickle._Pickler.dispatch)

    def save_ref(self, ref: _GlobalRef) -> None:
        self.write(glob(ref.module, ref.name))
        self.memoize(ref)
    dispatch[_GlobalRef] = save_ref

    def reducer_override(self, obj: Any):
        if isinstance(obj, Stub):
            return _GlobalRef(obj.module, obj.name), tuple(obj.args)
        return NotImplemented


def write_tree(tree: Any, protocol: int = 4) -> bytes:
    """`tree` pickled back (protocol 3 writes no frames, so opcodes can be spliced into it)."""
    buffer = io.BytesIO()
    _TreePickler(buffer, protocol=protocol).dump(tree)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Loading many files in one subprocess.

def run_worker(paths: list, mode: str = 'snapshot', warm_up: str = '', memory_limit: int = 3 << 29,
               timeout: float = 600, good: Optional[dict] = None) -> dict:
    """Load each file (`paths`: paths read as `mode`, or (mode, path) pairs) in one fresh Python process under
    RLIMIT_AS and return its report: {'cases': [{'mode', 'path', 'outcome', 'type', 'message', 'rss_mb'[, 'good']}],
    'max_rss_mb', 'canary', 'rc', 'stderr'}. A crash (a signal) shows as a negative rc and missing cases.
    `good`: {mode: path of a good file}, read again after every case of that mode ('good': 'same' when it
    still reads as before the hostile files)."""
    cases = [[p[0], str(p[1])] if isinstance(p, (tuple, list)) else [mode, str(p)] for p in paths]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    command = [sys.executable, os.path.join(REPO, 'tests', 'load_worker.py'), str(memory_limit)]
    request = dict(cases=cases, good={k: str(v) for k, v in (good or {}).items()})
    proc = subprocess.run(command + ([str(warm_up)] if warm_up else []), input=json.dumps(request),
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    summary = next((line for line in lines if 'summary' in line), {})
    return dict(cases=[line for line in lines if 'path' in line], max_rss_mb=summary.get('max_rss_mb'),
                canary=summary.get('canary'), rc=proc.returncode, stderr=proc.stderr[-3000:])
