"""The one unpickler for files that may be hostile: snapshots, NVIDIA's pickles, `.pt` exports, CIFAR batches.

A pickle is a program for a small stack machine whose only dangerous instructions name a global and
call it. This unpickler resolves a global only through an allow-list, and the allow-list holds no
real NumPy or torch constructors: it holds our own functions, which rebuild

* NumPy dtypes from a type string of a plain number type (bool, int, uint, float, complex) and a byte
  order, refusing object, void, structured and sub-array dtypes and any other dtype state;
* NumPy arrays and scalars from such a dtype, a shape and raw bytes whose length must match exactly;
* torch storages from the nested `torch.save` payloads that tensors pickle into (parsed here, byte counts
  checked, never handed to torch.load), and tensors whose size, stride and offset fit inside their storage.

So no object can be built from raw pointers and no allocation is larger than the bytes that are
present in the file. Before the unpickler runs, a pre-scan runs the opcodes on shadows of the values (see
_Scanner): it refuses nesting deeper than MAX_DEPTH (CPython hashes nested tuples by recursing in C) and any
state set on, or item put into, an object the file did not make (an allow-listed global would otherwise be
changed for every later load in the process), and it charges every call that copies (`_codecs.encode`, `dict`,
`set`, `torch.Size`, the array and storage rebuilders) to a budget of a few times the file's own size, before
anything is called: a file cannot make the loader copy, hash or unfold much more than it holds. A `.pt` archive's
members may add up to no more than the archive (zip members can overlap). Every tensor owns its storage exactly: no stride-0, overlapping
or shared views. Every failure, whatever its cause, is an `UnsafePickleError` with a one-line
message. torch is imported only when tensors are asked for, so dataset tools stay light (import torch: 0.75 s).
"""
from __future__ import annotations

import _compat_pickle
import gc
import io
import math
import os
import pickle
import pickletools
import re
import struct
import zipfile
from collections import OrderedDict
from typing import Any, Callable, Mapping, Optional

import numpy as np

from torch_utils.cli import UserError

Globals = Mapping[tuple, Any]
MAX_NDIM = 32
MAX_DIM = 1 << 40      # one entry of an array or tensor shape, checked before any product is taken
_TYPESTR = re.compile(r'[biufc]\d{1,2}')
_BYTE_ORDERS = ('<', '>', '|', '=')
_LATIN1 = ('latin1', 'latin-1', 'iso-8859-1', 'iso8859-1', 'l1')


class UnsafePickleError(pickle.UnpicklingError, UserError):
    """A pickle that was refused or could not be read; the message is one line."""


def one_line(text: str, limit: int = 300) -> str:
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


# ---------------------------------------------------------------------------------------------
# NumPy: dtypes, arrays and scalars rebuilt from validated parts.

class _NdarrayMarker:
    """Stands for `numpy.ndarray` where a pickle names it as an argument; it cannot be instantiated."""


_NDARRAY = _NdarrayMarker()


class _Pending:
    """A value whose pickled state arrives in a later BUILD; replaced by `value` once the load ends."""
    value: Any = None

    def resolved(self) -> Any:
        if self.value is None:
            raise UnsafePickleError(f'{type(self).__name__.strip("_")} without its state')
        return self.value


class _DType(_Pending):
    def __init__(self, typestr: Any, align: Any = False, copy: Any = True):
        if not isinstance(typestr, str) or not _TYPESTR.fullmatch(typestr):
            raise UnsafePickleError(f'refusing numpy dtype {typestr!r} (only plain bool/int/uint/float/complex '
                                    f'arrays are read)')
        if not all(isinstance(flag, (bool, int)) for flag in (align, copy)):
            raise UnsafePickleError('malformed numpy dtype arguments')
        try:
            dtype = np.dtype(typestr)
        except TypeError:
            raise UnsafePickleError(f'unknown numpy dtype {typestr!r}') from None
        if dtype.kind not in 'biufc' or dtype.fields is not None or dtype.subdtype is not None:
            raise UnsafePickleError(f'refusing numpy dtype {typestr!r}')
        self.value = dtype   # native order until a BUILD says otherwise

    def __setstate__(self, state: Any) -> None:
        # (3, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]): a plain number type
        # has no sub-array, names or fields, no explicit sizes and no flags; anything else is refused.
        ok = isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4) \
            and state[1] in _BYTE_ORDERS and state[2:8] == (None, None, None, -1, -1, 0) \
            and (len(state) == 8 or state[8] in (None, {}))
        if not ok:
            raise UnsafePickleError(f'refusing numpy dtype state {one_line(repr(state), 80)}')
        if state[1] in '<>':
            self.value = self.value.newbyteorder(state[1])


def _dtype_of(spec: Any) -> np.dtype:
    if not isinstance(spec, _DType):
        raise UnsafePickleError(f'expected a numpy dtype, got {type(spec).__name__}')
    return spec.resolved()


def _raw_bytes(data: Any) -> bytes:
    if isinstance(data, str):   # Python 2 pickles read with encoding='latin1'
        return data.encode('latin1')
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, pickle.PickleBuffer):
        return bytes(data.raw())
    raise UnsafePickleError(f'expected raw bytes, got {type(data).__name__}')


def _shape(shape: Any) -> tuple:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_NDIM or \
            not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_DIM for n in shape):
        raise UnsafePickleError(f'malformed array shape {one_line(repr(shape), 80)} (at most {MAX_NDIM} dimensions '
                                f'of at most {MAX_DIM} each)')
    return tuple(shape)


def _array(dtype: np.dtype, shape: tuple, data: bytes, fortran: bool = False) -> np.ndarray:
    count = math.prod(shape)
    if count * dtype.itemsize != len(data):
        raise UnsafePickleError(f'array of shape {list(shape)} and dtype {dtype.str} needs '
                                f'{count * dtype.itemsize} bytes, the file holds {len(data)}')
    if count == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(data, dtype=dtype).reshape(shape, order='F' if fortran else 'C').copy(order='K')


class _Array(_Pending):
    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
            raise UnsafePickleError('malformed numpy array state')
        shape, dtype, fortran, data = state[-4:]
        if not isinstance(fortran, (bool, int)):
            raise UnsafePickleError('malformed numpy array state')
        self.value = _array(_dtype_of(dtype), _shape(shape), _raw_bytes(data), bool(fortran))


def _reconstruct(cls: Any, shape: Any = (0,), typecode: Any = b'b') -> _Array:
    if cls is not _NDARRAY:
        raise UnsafePickleError('only plain numpy arrays can be rebuilt')
    return _Array()


def _scalar(dtype: Any, data: Any = b'') -> Any:
    return _array(_dtype_of(dtype), (), _raw_bytes(data))[()]


def _frombuffer(data: Any, dtype: Any, shape: Any, order: Any = 'C') -> np.ndarray:
    return _array(_dtype_of(dtype), _shape(shape), _raw_bytes(data), order == 'F')


def _encode(text: Any, encoding: Any = 'utf-8') -> bytes:
    # protocol-2 pickles write bytes as _codecs.encode(str, 'latin1'); no other codec is needed or allowed
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
        raise UnsafePickleError('refusing _codecs.encode other than latin1 text')
    return text.encode('latin1')


def _bytes(*args: Any) -> bytes:
    # protocol-2 pickles write b'' as bytes(); bytes(n) would allocate n bytes, so nothing else is accepted
    if args:
        raise UnsafePickleError('refusing bytes() with arguments')
    return b''


NUMPY_GLOBALS: dict[tuple, Any] = {
    ('numpy', 'dtype'): _DType,
    ('numpy', 'ndarray'): _NDARRAY,
    ('_codecs', 'encode'): _encode,
    ('builtins', 'bytes'): _bytes,
    **{(module, '_reconstruct'): _reconstruct for module in ('numpy.core.multiarray', 'numpy._core.multiarray')},
    **{(module, 'scalar'): _scalar for module in ('numpy.core.multiarray', 'numpy._core.multiarray')},
    **{(module, '_frombuffer'): _frombuffer for module in ('numpy.core.numeric', 'numpy._core.numeric')},
}
PLAIN_GLOBALS: dict[tuple, Any] = {
    ('collections', 'OrderedDict'): OrderedDict,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    **NUMPY_GLOBALS,
}


# ---------------------------------------------------------------------------------------------
# The unpickler.

class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, allowed: Globals, persistent: Optional[Callable[[Any], Any]],
                 where: str, encoding: str):
        super().__init__(file, encoding=encoding)
        self._allowed = allowed
        self._persistent = persistent
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        return _allowed_global(self._allowed, _global_key(module, name), self._where)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafePickleError(f'unexpected persistent id{self._where}')
        return self._persistent(pid)


def _resolve(value: Any, memo: dict, walk: tuple) -> Any:
    """Replace pending arrays/dtypes by their values throughout the loaded tree (shared parts once)."""
    if isinstance(value, (str, bytes, int, float, complex, type(None))):
        return value
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, _Pending):
        memo[key] = out = value.resolved()
    elif isinstance(value, list):
        memo[key] = value
        value[:] = [_resolve(v, memo, walk) for v in value]
        out = value
    elif isinstance(value, dict):
        memo[key] = value
        items = [(_resolve(k, memo, walk), _resolve(v, memo, walk)) for k, v in value.items()]
        value.clear()
        value.update(items)
        out = value
    elif isinstance(value, (tuple, set, frozenset)) and type(value) in (tuple, set, frozenset):
        memo[key] = out = type(value)(_resolve(v, memo, walk) for v in value)
    elif isinstance(value, walk):
        memo[key] = value
        for attr, v in list(vars(value).items()):
            setattr(value, attr, _resolve(v, memo, walk))
        out = value
    else:
        out = value
    return out


MAX_DEPTH = 200        # levels of nesting; real snapshots need a few dozen at most
INT_BITS = 80          # integers of real files fit in 80 bits (torch's legacy magic number has 77); longer ones
KEY_BITS = 64          # only cost time, and only integers of 64 bits may be dict keys (see _Scanner)
# The budget of one load (see _Scanner): what the calls of a file may copy, and how large any value may be when it
# is walked as a tree, in nodes and in bytes of text, at most these multiples of the pickle's own length (plus a
# little for tiny files). A real file copies each of its byte strings once or twice and holds about one node per
# opcode; a file that calls a copying function a thousand times on one memoized value does not.
NODES_PER_BYTE, BYTES_PER_BYTE = 2, 4
MAX_CALL_ARGS = 8      # a tuple this long or shorter keeps its items' shadows: what a call's arguments are
NODE_SLACK, BYTE_SLACK = 1 << 16, 1 << 20


class _Shadow:
    """What the pre-scan knows of one value the pickle builds: how deeply nested it is, where it came from (a
    global, a call of one, a container, a plain value), for strings the text (STACK_GLOBAL), its size unfolded as
    a tree (`nodes`, and `nbytes` of the text and bytes in it), whether it may be a dict key or set member (a
    string, bytes or an integer: their hashes cannot be made to collide in bulk), and whether another value or a
    call already holds it (`used`: then it may no longer be filled, so the sizes stay exact)."""
    __slots__ = ('depth', 'origin', 'key', 'text', 'nodes', 'nbytes', 'hashable', 'keyed', 'used', 'items')

    def __init__(self, depth: int, origin: str, key: Any = None, text: Any = None, nodes: int = 1, nbytes: int = 0,
                 hashable: bool = False):
        self.depth, self.origin, self.key, self.text = depth, origin, key, text
        self.nodes, self.nbytes, self.hashable, self.used = nodes, nbytes, hashable, False
        self.keyed = False   # a list, tuple or set of hashable values only, or a dict: what set() and dict() may copy
        self.items: Optional[list] = None   # a tuple's items (the arguments of a call)


_MARK = object()
_ATOMS = ('INT', 'BININT', 'BININT1', 'BININT2', 'LONG', 'LONG1', 'LONG4', 'STRING', 'BINSTRING', 'SHORT_BINSTRING',
          'BINBYTES', 'SHORT_BINBYTES', 'BINBYTES8', 'BYTEARRAY8', 'NEXT_BUFFER', 'NONE', 'NEWTRUE', 'NEWFALSE',
          'UNICODE', 'SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'FLOAT', 'BINFLOAT', 'EMPTY_TUPLE')
_KEY_ATOMS = {name for name in _ATOMS if 'FLOAT' not in name and name not in ('EMPTY_TUPLE', 'BYTEARRAY8', 'NEXT_BUFFER')}
_MEMO_PUTS = ('PUT', 'BINPUT', 'LONG_BINPUT')
_MEMO_GETS = ('GET', 'BINGET', 'LONG_BINGET')
_FILLS = {'APPEND': 'list', 'APPENDS': 'list', 'SETITEM': 'dict', 'SETITEMS': 'dict', 'ADDITEMS': 'set'}
_CALLS = ('REDUCE', 'NEWOBJ', 'NEWOBJ_EX', 'OBJ', 'INST')
# What the pre-scan needs to know of an allow-listed callable, by the object itself: 'dict' and 'set' make
# containers a pickle may fill (and copy their argument), 'items' copies the items of its argument, 'bytes' copies
# the bytes of its arguments, 'key' does too and makes bytes, which may be dict keys (protocol-2 pickles of
# bytes). Every other allow-listed callable must only keep its arguments (as our own rebuild functions do), and
# only the pending arrays and dtypes (_TAKE_STATE) take a BUILD, whose __setstate__ is ours and checks the state.
_ROLES: dict = {dict: 'dict', OrderedDict: 'dict', set: 'set', frozenset: 'items', _encode: 'key', _bytes: 'key',
                _frombuffer: 'bytes', _scalar: 'bytes'}   # + _storage_from_bytes and torch.Size, once defined
_COPY_ITEMS = ('dict', 'set', 'items')
_TAKE_STATE = {_DType, _reconstruct}


def _allowed_global(allowed: Globals, key: tuple, where: str) -> Any:
    found = allowed.get(key)
    if found is not None:
        return found
    module, name = key
    if module.startswith('dnnlib.tflib'):
        raise UnsafePickleError('this is a TensorFlow StyleGAN/StyleGAN2 pickle, which is not supported; '
                                "convert it with NVIDIA's legacy.py to a PyTorch pickle first")
    raise UnsafePickleError(f'refusing to load global {module}.{name}{where} (not on the allow-list '
                            f'of safe types: the file carries code or objects that are never run)')


def _global_key(module: str, name: str) -> tuple:
    # Protocol 0-2 pickles use Python 2 names (`__builtin__.set`): map them as fix_imports does.
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _takes_state(func: Any) -> bool:
    try:
        return func in _TAKE_STATE
    except TypeError:   # unhashable: not one of ours
        return False


def _role(func: Any) -> str:
    """The role of an allow-listed callable (see _ROLES); 'call' for anything else (whose call fails when run)."""
    if func is None:
        return 'call'
    try:
        return _ROLES.get(func, '')
    except TypeError:   # unhashable: not one of ours
        return 'call'


class _Scanner:
    """Runs a pickle's opcodes on shadows of its values, before the real unpickler runs them. It refuses:

    * nesting deeper than MAX_DEPTH: CPython hashes a nested tuple (a dict key, a set member) by recursing in C,
      and a few hundred thousand levels crash the interpreter where no exception can be caught;
    * BUILD (set state) on anything but the pending arrays and dtypes this load made (whose state our own
      code checks), and filling (SETITEM, APPEND, ADDITEMS) anything but a container this load made: a pickle
      could otherwise change an allow-listed global (`torch.FloatStorage`, one of our functions) and so every
      later load in the process; and filling or building a value after another value or a call holds it (a real
      pickle finishes a container before it uses it; a cycle or a late fill would make the sizes below wrong);
    * length-prefixed arguments that are not all present and memo indices far beyond the opcodes read (the C
      unpickler allocates both before reading them);
    * more work than the file's size allows (the budget): the calls of copying functions (`_codecs.encode`,
      `dict`, `set`, `torch.Size`, the array and storage rebuilders) are charged the size of their arguments
      before anything runs, in nodes and in bytes, and no value may be larger, unfolded as a tree, than the
      budget (code that walks a loaded value, or prints it, visits it as a tree); integers beyond INT_BITS, and
      dict keys or set members other than strings, bytes and integers of at most KEY_BITS, are refused (long
      integers make hashing and products slow, and tuples of floats can be made to share one hash, which makes
      a dict quadratic).

    The scan keeps the cyclic garbage collector off (shadows hold no cycles) and dispatches on a table, so that it
    costs no more than the unpickling it guards."""

    def __init__(self, allowed: Globals, where: str, size: int):
        self.allowed, self.where = allowed, where
        self.stack: list = []
        self.memo: dict = {}
        self.max_nodes = NODES_PER_BYTE * size + NODE_SLACK
        self.max_bytes = BYTES_PER_BYTE * size + BYTE_SLACK
        self.nodes = self.nbytes = 0   # charged so far

    def refuse(self, what: str) -> UnsafePickleError:
        return UnsafePickleError(f'{what}{self.where}')

    def pop(self) -> _Shadow:
        if not self.stack or self.stack[-1] is _MARK:
            raise self.refuse('malformed pickle (stack underflow)')
        return self.stack.pop()

    def pop_mark(self) -> list:
        items = []
        while self.stack and self.stack[-1] is not _MARK:
            items.append(self.stack.pop())
        if not self.stack:
            raise self.refuse('malformed pickle (no mark)')
        self.stack.pop()
        items.reverse()   # in the order they were pushed
        return items

    def top(self) -> _Shadow:
        if not self.stack or self.stack[-1] is _MARK:
            raise self.refuse('malformed pickle (stack underflow)')
        return self.stack[-1]

    def charge(self, nodes: int, nbytes: int, what: str) -> None:
        """Work a call is about to do, against the budget of the whole load."""
        self.nodes += nodes
        self.nbytes += nbytes
        if self.nodes > self.max_nodes or self.nbytes > self.max_bytes:
            raise self.refuse(f'refusing {what}: the calls of this file would copy more than its size allows '
                              f'({self.max_nodes} items, {self.max_bytes} bytes)')

    def check_size(self, shadow: _Shadow) -> _Shadow:
        if shadow.nodes > self.max_nodes or shadow.nbytes > self.max_bytes:
            raise self.refuse(f'a value of this file unfolds to more than its size allows ({self.max_nodes} items, '
                              f'{self.max_bytes} bytes; a shared part counts each time it is used)')
        return shadow

    def use(self, items: list) -> tuple[int, int, int]:
        """Mark `items` as held by another value: (depth of a value holding them, their nodes, their bytes)."""
        depth = nodes = nbytes = 0
        for item in items:
            item.used = True
            if item.depth > depth:
                depth = item.depth
            nodes += item.nodes
            nbytes += item.nbytes
        if depth >= MAX_DEPTH:
            raise self.refuse(f'data nested more than {MAX_DEPTH} levels deep')
        return depth + 1, nodes, nbytes

    def keys(self, keys: list, what: str) -> None:
        """Values about to be hashed as dict keys or set members."""
        for key in keys:
            if not key.hashable:
                raise self.refuse(f'refusing a {what} that is not a string, bytes or an integer')
        self.charge(len(keys), 0, what)

    def made(self, items: list, origin: str, key: Any = None, extra: int = 0, hashable: bool = False) -> _Shadow:
        depth, nodes, nbytes = self.use(items)
        shadow = self.check_size(_Shadow(depth, origin, key, nodes=1 + nodes + extra, nbytes=nbytes, hashable=hashable))
        self.stack.append(shadow)
        return shadow

    def grow(self, target: _Shadow, items: list, what: str) -> None:
        if target.used:
            raise self.refuse(f'refusing {what} on a value already held by another (a pickle finishes a container '
                              f'before it uses it; cycles are not read)')
        depth, nodes, nbytes = self.use(items)
        target.depth = max(target.depth, depth)
        target.nodes += nodes
        target.nbytes += nbytes
        target.keyed = target.keyed and (target.origin != 'list' or all(item.hashable for item in items))
        self.check_size(target)

    def fill(self, target: _Shadow, items: list, kind: str, op: str) -> None:
        made_by = self.allowed.get(target.key) if target.origin == 'call' else None
        own = target.origin == kind or (kind != 'list' and _role(made_by) == kind)
        if not own:
            raise self.refuse(f'refusing {op} on {self.describe(target)} (a pickle may only fill a {kind} it made)')
        if kind != 'list':
            self.keys(items[::2] if kind == 'dict' else items, 'dict key' if kind == 'dict' else 'set member')
        self.grow(target, items, op)

    def call(self, func: _Shadow, args: list, op: str) -> None:
        """A call of `func` (a global, else it fails when run) with `args` (REDUCE's and NEWOBJ's tuple, NEWOBJ_EX's
        tuple and dict, OBJ's and INST's items), charged to the budget if it copies them."""
        key = func.key if func.origin == 'global' else None
        role = _role(self.allowed.get(key) if key is not None else None)
        parts = args[0].items if op in ('REDUCE', 'NEWOBJ') and args[0].items is not None else args
        nodes = nbytes = 0
        for part in parts:
            nodes += part.nodes
            nbytes += part.nbytes
        items = role in _COPY_ITEMS or role == 'call'
        if role:   # bytes are copied once per call; items once each, and a string into characters
            self.charge(nodes + (nbytes if items else 0), nbytes, f'a call of {".".join(key) if key else "a value"}')
        if role in ('set', 'items') and not all(part.keyed for part in parts):
            raise self.refuse(f'refusing a call of {".".join(key)} on anything but a list of strings, bytes or '
                              f'integers')
        if role == 'dict' and not all(part.origin == 'dict' or part.keyed for part in parts):
            raise self.refuse(f'refusing a call of {".".join(key)} on anything but a dict')
        result = self.made([func] + args, 'call', key, extra=nbytes if items else 0, hashable=role == 'key')
        result.keyed = role in _COPY_ITEMS

    def step(self, name: str, arg: Any, count: int) -> None:
        handler = _HANDLERS.get(name)
        if handler is None:
            raise self.refuse(f'malformed pickle (unknown opcode {name})')
        handler(self, name, arg, count)

    def atom(self, name: str, arg: Any, count: int) -> None:
        nbytes, hashable = 0, name in _KEY_ATOMS
        if isinstance(arg, (str, bytes, bytearray)):
            nbytes = len(arg)
        elif isinstance(arg, int):
            bits = arg.bit_length()
            if bits > INT_BITS:
                raise self.refuse(f'refusing an integer of {bits} bits (at most {INT_BITS})')
            hashable = hashable and bits <= KEY_BITS
        shadow = _Shadow(0, 'atom', text=arg if isinstance(arg, str) else None, nbytes=nbytes, hashable=hashable)
        if name == 'EMPTY_TUPLE':
            shadow.depth, shadow.items, shadow.keyed = 1, [], True
        self.stack.append(shadow)

    def empty(self, name: str, arg: Any, count: int) -> None:
        shadow = _Shadow(1, name[6:].lower())
        shadow.keyed = True   # until something unhashable is appended
        self.stack.append(shadow)

    def collection(self, name: str, arg: Any, count: int) -> None:
        items = [self.pop() for _ in range(int(name[-1]))][::-1] if name[-1].isdigit() else self.pop_mark()
        origin = 'tuple' if name.startswith('TUPLE') else name.lower()
        if origin == 'dict':
            self.keys(items[::2], 'dict key')
        elif origin == 'frozenset':
            self.keys(items, 'set member')
        shadow = self.made(items, origin)
        shadow.keyed = origin == 'dict' or all(item.hashable for item in items)
        if origin == 'tuple' and len(items) <= MAX_CALL_ARGS:   # the arguments of a call (REDUCE)
            shadow.items = items

    def filling(self, name: str, arg: Any, count: int) -> None:
        items = self.pop_mark() if name.endswith('S') else \
            [self.pop() for _ in range(2 if name == 'SETITEM' else 1)][::-1]
        self.fill(self.top(), items, _FILLS[name], name)

    def build(self, name: str, arg: Any, count: int) -> None:
        state, target = self.pop(), self.top()
        made_by = self.allowed.get(target.key) if target.origin == 'call' else None
        if not _takes_state(made_by):
            raise self.refuse(f'refusing to set the state of {self.describe(target)} (only arrays and dtypes '
                              f'made by this file take state)')
        self.charge(state.nodes, state.nbytes, f'the state of {self.describe(target)}')   # arrays copy it
        self.grow(target, [state], 'BUILD')

    def calling(self, name: str, arg: Any, count: int) -> None:
        if name == 'INST':   # the class is named in the opcode, its arguments follow the mark
            key = _global_key(*str(arg).partition(' ')[::2])
            _allowed_global(self.allowed, key, self.where)
            func, args = _Shadow(0, 'global', key), self.pop_mark()
        elif name == 'OBJ':
            items = self.pop_mark()
            if not items:
                raise self.refuse('malformed pickle (OBJ without a class)')
            func, args = items[0], items[1:]
        else:
            args = [self.pop() for _ in range(2 if name == 'NEWOBJ_EX' else 1)][::-1]
            func = self.pop()
        self.call(func, args, name)

    def memo_get(self, name: str, arg: Any, count: int) -> None:
        shadow = self.memo.get(arg)
        if shadow is None:
            raise self.refuse(f'memo index {arg} read before it was written')
        self.stack.append(shadow)

    def memo_put(self, name: str, arg: Any, count: int) -> None:
        index = len(self.memo) if name == 'MEMOIZE' else arg
        if not isinstance(index, int) or not 0 <= index <= count:
            raise self.refuse(f'memo index {index} out of range')
        self.memo[index] = self.top()

    def stack_op(self, name: str, arg: Any, count: int) -> None:
        if name == 'MARK':
            self.stack.append(_MARK)
        elif name == 'DUP':
            self.stack.append(self.top())
        elif name == 'POP':
            if not self.stack:
                raise self.refuse('malformed pickle (stack underflow)')
            self.stack.pop()
        elif name == 'POP_MARK':
            self.pop_mark()
        elif name == 'READONLY_BUFFER':
            self.top()

    def global_(self, name: str, arg: Any, count: int) -> None:
        if name == 'GLOBAL':
            module, _, attr = str(arg).partition(' ')
        else:   # STACK_GLOBAL
            attr_shadow, module_shadow = self.pop(), self.pop()
            module, attr = module_shadow.text, attr_shadow.text
            if not isinstance(module, str) or not isinstance(attr, str):
                raise self.refuse('malformed pickle (STACK_GLOBAL without names)')
        key = _global_key(module, attr)
        _allowed_global(self.allowed, key, self.where)
        self.stack.append(_Shadow(0, 'global', key))

    def other(self, name: str, arg: Any, count: int) -> None:
        if name in ('EXT1', 'EXT2', 'EXT4'):
            raise self.refuse('refusing a global from the copyreg extension registry')
        if name in ('PERSID', 'BINPERSID'):
            self.made([self.pop()] if name == 'BINPERSID' else [], 'call', 'persistent')

    def describe(self, shadow: _Shadow) -> str:
        if shadow.origin in ('global', 'call') and isinstance(shadow.key, tuple):
            name = '.'.join(shadow.key)
            return name if shadow.origin == 'global' else f'the result of {name}'
        return f'a {shadow.origin}'


_HANDLERS = {
    **{name: _Scanner.atom for name in _ATOMS},
    **{name: _Scanner.empty for name in ('EMPTY_LIST', 'EMPTY_DICT', 'EMPTY_SET')},
    **{name: _Scanner.collection for name in ('LIST', 'TUPLE', 'DICT', 'FROZENSET', 'TUPLE1', 'TUPLE2', 'TUPLE3')},
    **{name: _Scanner.filling for name in _FILLS},
    **{name: _Scanner.calling for name in _CALLS},
    **{name: _Scanner.memo_get for name in _MEMO_GETS},
    **{name: _Scanner.memo_put for name in _MEMO_PUTS + ('MEMOIZE',)},
    **{name: _Scanner.stack_op for name in ('MARK', 'DUP', 'POP', 'POP_MARK', 'READONLY_BUFFER')},
    **{name: _Scanner.global_ for name in ('GLOBAL', 'STACK_GLOBAL')},
    **{name: _Scanner.other for name in ('EXT1', 'EXT2', 'EXT4', 'PERSID', 'BINPERSID', 'PROTO', 'FRAME', 'STOP')},
    'BUILD': _Scanner.build,
}


def _prescan(f: io.BytesIO, allowed: Globals, where: str = '') -> None:
    """Walk the opcodes once before unpickling (see _Scanner); leaves `f` where it was. The budget is set by the
    bytes from `f`'s position to its end."""
    start = f.tell()
    scanner = _Scanner(allowed, where, len(f.getbuffer()) - start)
    collecting = gc.isenabled()
    gc.disable()   # shadows hold no cycles, and the cyclic collector walking them all would double the scan's time
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(f), 1):
            scanner.step(op.name, arg, count)
    except UnsafePickleError:
        raise
    except Exception as e:   # noqa: BLE001 - genops reports truncation and unknown opcodes as ValueError
        raise UnsafePickleError(one_line(f'malformed pickle{where} ({e})')) from None
    finally:
        if collecting:
            gc.enable()
    f.seek(start)


def loads(data: bytes, allowed: Globals = PLAIN_GLOBALS, *, walk: tuple = (),
          persistent: Optional[Callable[[Any], Any]] = None, where: str = '', encoding: str = 'ASCII') -> Any:
    """Unpickle `data` with only the `allowed` globals ((module, name) -> object).

    `walk`: types (beyond the builtin containers) whose attributes may hold arrays to finish after the
    load. Any failure raises UnsafePickleError with one line."""
    try:
        f = io.BytesIO(data)
        _prescan(f, allowed, where)
        return _resolve(_Unpickler(f, allowed, persistent, where, encoding).load(), {}, walk)
    except UnsafePickleError:
        raise
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(one_line(f'{e}{where}')) from None
    except Exception as e:   # noqa: BLE001 - whatever a malformed file makes the machinery raise (RecursionError too)
        raise UnsafePickleError(one_line(f'malformed pickle{where} ({type(e).__name__}: {e})')) from None


# ---------------------------------------------------------------------------------------------
# torch: storages and tensors.

_TORCH_GLOBALS: Optional[dict] = None
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001


class _StorageType:
    """Stands for `torch.FloatStorage` & co. in a storage's persistent id; never called."""

    def __init__(self, dtype):
        self.dtype = dtype


class _Storage:
    """A tensor storage read from the file: its elements, as a flat tensor of the storage's dtype."""

    def __init__(self, kind: Any, data: bytes):
        import torch
        if not isinstance(kind, _StorageType):
            raise UnsafePickleError('malformed tensor storage type')
        if len(data) % kind.dtype.itemsize:
            raise UnsafePickleError('tensor storage size is not a whole number of elements')
        self.flat = torch.frombuffer(bytearray(data), dtype=kind.dtype) if data else torch.empty(0, dtype=kind.dtype)
        self.claimed = False   # by the one tensor that may view it


def _storage_pid(pid: Any) -> tuple:
    """('storage', type, key, location, numel[, view]) -> (type, key, numel), checked."""
    if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != 'storage' \
            or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str) or not isinstance(pid[3], str) \
            or not isinstance(pid[4], int) or not 0 <= pid[4] <= MAX_DIM or (len(pid) == 6 and pid[5] is not None):
        raise UnsafePickleError(f'malformed tensor storage reference {one_line(repr(pid), 80)}')
    return pid[1], pid[2], pid[4]


def _storage_from_bytes(payload: Any):
    """A storage pickled inside a pickle (`torch.storage._load_from_bytes`): torch's legacy format, read here:
    three header pickles, a pickle naming the storage, a pickle listing its key, then count + raw bytes."""
    where = ' in a nested tensor storage'
    if not isinstance(payload, bytes):
        raise UnsafePickleError('malformed nested tensor storage')
    f = io.BytesIO(payload)
    magic, protocol, info = (_next_pickle(f, where) for _ in range(3))
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(info, dict) \
            or info.get('little_endian') is not True:
        raise UnsafePickleError('nested tensor storage has an unknown header')
    ref = {}
    storage = _next_pickle(f, where, persistent=lambda pid: ref.setdefault('pid', _storage_pid(pid)))
    keys = _next_pickle(f, where)
    if 'pid' not in ref or storage is not ref['pid'] or keys != [ref['pid'][1]]:
        raise UnsafePickleError('nested tensor storage must hold exactly one storage')
    kind, _, numel = ref['pid']
    header = f.read(8)
    nbytes = numel * kind.dtype.itemsize
    if len(header) != 8 or struct.unpack('<q', header)[0] != numel or len(payload) - f.tell() != nbytes:
        raise UnsafePickleError(f'nested tensor storage of {numel} elements does not match its bytes')
    return _Storage(kind, payload[f.tell():])


_ROLES[_storage_from_bytes] = 'bytes'


def _next_pickle(f: io.BytesIO, where: str, persistent: Optional[Callable] = None) -> Any:
    """One pickle from a stream of several (protocol 2, plain data and storage types only)."""
    start = f.tell()
    allowed = _torch_globals()['storage_types']
    _prescan(f, allowed, where)
    unpickler = _Unpickler(f, allowed, persistent, where, 'ASCII')
    try:
        return unpickler.load()
    except UnsafePickleError:
        raise
    except Exception as e:   # noqa: BLE001
        raise UnsafePickleError(one_line(f'malformed pickle at byte {start}{where} ({type(e).__name__}: {e})')) \
            from None


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None):
    """A tensor that owns its storage: no other tensor of the file views it, and its elements cover it exactly
    once (offset 0, no stride-0 or overlapping dimensions). A file can then never describe more tensor bytes
    than it holds: a one-element storage expanded to a 12000x12000 weight is refused, not loaded."""
    if not isinstance(storage, _Storage):
        raise UnsafePickleError('tensor without a storage')
    size, stride = _shape(size), _shape(stride)
    if len(size) != len(stride) or not isinstance(offset, int) or offset < 0 \
            or not isinstance(requires_grad, bool) or backward_hooks or metadata:
        raise UnsafePickleError('malformed tensor (size, stride, offset or extra state)')
    numel, held = math.prod(size), storage.flat.numel()
    if numel != held or offset != 0 or not _dense(size, stride):
        raise UnsafePickleError(f'tensor of size {list(size)} and stride {list(stride)} at offset {offset} does not '
                                f'cover its storage of {held} elements exactly once (views, stride-0 and '
                                f'overlapping tensors are refused)')
    if storage.claimed:
        raise UnsafePickleError(f'two tensors share one storage (of {held} elements); each must own its bytes')
    storage.claimed = True
    return storage.flat.as_strided(size, stride, offset)


def _dense(size: tuple, stride: tuple) -> bool:
    """Whether the strides visit each of prod(size) consecutive elements once (in any dimension order)."""
    if 0 in size:
        return True
    expected = 1
    for n, s in sorted(((n, s) for n, s in zip(size, stride) if n != 1), key=lambda ns: ns[1]):
        if s != expected:
            return False
        expected *= n
    return True


def _rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None, *state: Any):
    import torch
    if not isinstance(data, torch.Tensor) or backward_hooks:
        raise UnsafePickleError('malformed parameter')
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad) and data.is_floating_point())


def _torch_globals() -> dict:
    global _TORCH_GLOBALS
    if _TORCH_GLOBALS is None:
        import torch
        kinds = dict(FloatStorage=torch.float32, DoubleStorage=torch.float64, HalfStorage=torch.float16,
                     BFloat16Storage=torch.bfloat16, LongStorage=torch.int64, IntStorage=torch.int32,
                     ShortStorage=torch.int16, CharStorage=torch.int8, ByteStorage=torch.uint8,
                     BoolStorage=torch.bool)
        storage_types = {('torch', name): _StorageType(dtype) for name, dtype in kinds.items()}
        storage_types[('torch.storage', 'UntypedStorage')] = _StorageType(torch.uint8)
        tensors = {
            ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
            ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
            ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
            ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
            ('torch.storage', '_load_from_bytes'): _storage_from_bytes,
            ('torch', 'Size'): torch.Size,
            **{('torch', name): getattr(torch, name) for name in dir(torch)
               if isinstance(getattr(torch, name), torch.dtype)},
            **storage_types,
        }
        _TORCH_GLOBALS = dict(storage_types=storage_types, tensors=tensors)
        _ROLES[torch.Size] = 'items'
    return _TORCH_GLOBALS


def tensor_globals() -> dict:
    """Plain data plus tensors and parameters (imports torch)."""
    return {**PLAIN_GLOBALS, **_torch_globals()['tensors']}


def load_torch_zip(path: str, allowed: Globals, walk: tuple = ()) -> Any:
    """A `torch.save` zip archive read with this unpickler: `*/data.pkl`, storages from `*/data/<key>`,
    each of exactly the size its reference declares (members must be stored, not compressed). The members read
    may add up to no more than the archive's own size: zip members may overlap (each member's data holding the
    next ones, with valid sizes and CRCs, which Python's zipfile does not notice), and two hundred storages read
    from one 10 MB block would otherwise take 2 GB."""
    try:
        archive = zipfile.ZipFile(path)
        infos = {info.filename: info for info in archive.infolist()}
        budget = [os.fstat(archive.fp.fileno()).st_size]   # bytes the members may still take
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise UnsafePickleError(one_line(f'not a readable torch zip archive ({e})')) from None
    with archive:
        roots = [name[:-len('data.pkl')] for name in infos if re.fullmatch(r'[^/]+/data\.pkl', name)]
        if len(roots) != 1:
            raise UnsafePickleError('not a torch.save archive (no single */data.pkl)')
        root = roots[0]
        if any(info.compress_type != zipfile.ZIP_STORED for info in infos.values()):
            raise UnsafePickleError('torch archive with compressed members (torch.save never writes them)')
        order = infos.get(root + 'byteorder')
        if order is not None and _read_member(archive, order, 16, budget) != b'little':
            raise UnsafePickleError('torch archive is not little-endian')
        storages = {}

        def storage(pid):
            kind, key, numel = _storage_pid(pid)
            if key not in storages:
                info = infos.get(f'{root}data/{key}')
                if not re.fullmatch(r'\w+', key) or info is None or info.file_size != numel * kind.dtype.itemsize:
                    raise UnsafePickleError(f'tensor storage {key!r} is missing or has the wrong size')
                storages[key] = _Storage(kind, _read_member(archive, info, info.file_size, budget))
            return storages[key]
        pkl = infos[root + 'data.pkl']
        return loads(_read_member(archive, pkl, pkl.file_size, budget), allowed, walk=walk, persistent=storage)


def load_tensor_file(path: str) -> Any:
    """A `torch.save` file of plain data and tensors (a weights-only .pt), read with this unpickler instead of
    torch.load(weights_only=True), whose own unpickler crashes the interpreter on deeply nested data."""
    return load_torch_zip(path, tensor_globals())


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, budget: list) -> bytes:
    """A member of at most `limit` bytes, taken from `budget[0]`, the bytes the archive's members may still hold."""
    if info.file_size > budget[0]:
        raise UnsafePickleError(f'{info.filename} declares {info.file_size} bytes, more than the archive holds '
                                f'besides the members read before it ({budget[0]}): overlapping or forged members')
    budget[0] -= info.file_size
    try:
        with archive.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as e:
        raise UnsafePickleError(one_line(f'cannot read {info.filename} ({type(e).__name__}: {e})')) from None
    if len(data) > limit:
        raise UnsafePickleError(f'{info.filename} is larger than declared')
    return data
