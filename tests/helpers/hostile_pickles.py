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

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


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


def put(index: int) -> bytes:
    return b'r' + struct.pack('<I', index)


def get(index: int) -> bytes:
    return b'j' + struct.pack('<I', index)


def long_int(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, 'little', signed=True)
    return b'\x8b' + struct.pack('<i', len(raw)) + raw


def float_(x: float) -> bytes:
    return b'G' + struct.pack('>d', x)


# Issue 32: allow-listed callables that copy their arguments, each called `calls` times on one memoized value of
# about `size` bytes or items (about 10 bytes of file per call). Each returns the opcodes of a list of the results.
def _repeat(func: bytes, value: bytes, call_args: bytes, calls: int, extra: bytes = b'', base: int = 0) -> bytes:
    """func -> memo base, value -> memo base + 1, extra -> memo base + 2; then `calls` times func(*call_args) into
    a list (`call_args` use get(base + 1) and so on)."""
    one = get(base) + b'(' + call_args + b't' + b'R'
    return func + put(base) + b'0' + value + put(base + 1) + b'0' + extra + (put(base + 2) + b'0' if extra else b'') + \
        b']' + b'(' + one * calls + b'e'


def _nested_storage(nbytes: int) -> bytes:
    """The payload `torch.storage._load_from_bytes` reads: torch's legacy format of one uint8 storage."""
    import pickle as pk
    meta = [pk.dumps(0x1950a86a20f9469cfc6c, protocol=2), pk.dumps(1001, protocol=2),
            pk.dumps(dict(protocol_version=1001, little_endian=True, type_sizes={}), protocol=2)]
    pid = b'\x80\x02(X\x07\x00\x00\x00storage' + glob('torch', 'ByteStorage') + text('k') + text('cpu') + \
        b'J' + struct.pack('<i', nbytes) + b'NtQ.'
    return b''.join(meta) + pid + pk.dumps(['k'], protocol=2) + struct.pack('<q', nbytes) + bytes(nbytes)


def copy_bomb(kind: str, size: int, calls: int, base: int = 0) -> bytes:
    """The opcodes of a list of `calls` results of one copying call on a memoized value of about `size` (memo
    entries from `base` on)."""
    if kind == 'encode':
        return _repeat(glob('_codecs', 'encode'), text('a' * size), get(base + 1) + get(base + 2), calls,
                       text('latin1'), base)
    if kind == 'frombuffer':
        dtype = np_dtype('u1', tup(integer(3), text('|'), NONE, NONE, NONE, integer(-1), integer(-1), integer(0)))
        return _repeat(glob('numpy.core.numeric', '_frombuffer'), raw(bytes(size)),
                       get(base + 1) + get(base + 2) + tup(integer(size)) + text('C'), calls, dtype, base)
    if kind == 'load_from_bytes':
        return _repeat(glob('torch.storage', '_load_from_bytes'), raw(_nested_storage(size)), get(base + 1), calls,
                       base=base)
    items = b'(' + b''.join(integer(i) for i in range(size)) + b'l'
    func = {'easydict': glob('dnnlib.util', 'EasyDict'), 'size': glob('torch', 'Size'), 'set': glob('builtins', 'set'),
            'frozenset': glob('builtins', 'frozenset')}[kind]
    if kind == 'easydict':
        items = b'}(' + b''.join(integer(i) + NONE for i in range(size)) + b'u'
    return _repeat(func, items, get(base + 1), calls, base=base)


def shape_bomb(digits_bytes: int, dims: int, base: int = 0) -> bytes:
    """_frombuffer with a shape of `dims` copies of one memoized integer of `digits_bytes` bytes (math.prod of
    them runs for hours)."""
    dtype = np_dtype('u1', tup(integer(3), text('|'), NONE, NONE, NONE, integer(-1), integer(-1), integer(0)))
    big = long_int(1 << (8 * digits_bytes - 2))
    return big + put(base) + b'0' + call(glob('numpy.core.numeric', '_frombuffer'), raw(b'x'), dtype,
                                           b'(' + get(base) * dims + b't', text('C'))


def unfolding_bomb(levels: int, width: int, base: int = 0) -> bytes:
    """Lists of `width` references to the list below, `levels` deep: tiny, but width**levels items as a tree."""
    out = NONE + put(base) + b'0'
    for level in range(base, base + levels):
        out += b'(' + get(level) * width + b'l' + put(level + 1) + b'0'
    return out + get(base + levels)


def colliding_keys(count: int) -> bytes:
    """A dict whose keys are `count` different tuples of floats with one hash (x and x * 2**61 hash alike)."""
    a, b = 1.5, 1.5 * 2.0 ** 61
    keys = [(a if i >> bit & 1 else b for bit in range(12)) for i in range(count)]
    return b'}(' + b''.join(b'(' + b''.join(float_(x) for x in key) + b't' + NONE for key in keys) + b'u'


def late_fill(width: int, base: int = 0) -> bytes:
    """A list used `width` times by another before it is filled with `width` items (sizes must be exact)."""
    return b']' + put(base) + b'0' + b'(' + get(base) * width + b'l' + b'0' + get(base) + b'(' + integer(7) * width + \
        b'e' + b'0' + b'(' + get(base) * width + b'l'


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
    command = [sys.executable, os.path.join(HERE, 'load_worker.py'), str(memory_limit)]
    request = dict(cases=cases, good={k: str(v) for k, v in (good or {}).items()})
    proc = subprocess.run(command + ([str(warm_up)] if warm_up else []), input=json.dumps(request),
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    summary = next((line for line in lines if 'summary' in line), {})
    return dict(cases=[line for line in lines if 'path' in line], max_rss_mb=summary.get('max_rss_mb'),
                canary=summary.get('canary'), rc=proc.returncode, stderr=proc.stderr[-3000:])


def storage_list(sizes: list) -> bytes:
    """A torch.save data.pkl: a list of uint8 tensors on the storages '0', '1', ... of the given sizes."""
    def tensor(key: str, numel: int) -> bytes:
        pid = tup(text('storage'), glob('torch', 'ByteStorage'), text(key), text('cpu'), integer(numel))
        return call(glob('torch._utils', '_rebuild_tensor_v2'), pid + b'Q', integer(0), tup(integer(numel)),
                    tup(integer(1)), FALSE, call(glob('collections', 'OrderedDict')))
    return b'\x80\x02(' + b''.join(tensor(str(i), n) for i, n in enumerate(sizes)) + b'l.'


def overlapping_pt(path, block: int, count: int) -> None:
    """A .pt whose `count` storages all resolve into one `block`-byte region (issue 32: 10.5 MB took 2.29 GB)."""
    from . import bombs
    names = [f'archive/data/{i}' for i in range(count)]
    headers = [len(bombs._local_header(name.encode(), b'')) for name in names]
    sizes = [block + sum(headers[i + 1:]) for i in range(count)]
    bombs.overlapping_zip(path, [('archive/data.pkl', storage_list(sizes)), ('archive/byteorder', b'little')],
                          names, bytes(block))
