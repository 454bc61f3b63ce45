"""Counting the SASS instructions one CUDA thread executes, without a GPU (used by benchmarks/kernel_cost.py).

A compiled kernel (`nvdisasm -c` of a cubin) is run one thread at a time by a small interpreter of the
sm_90 instructions such kernels use: integer and predicate arithmetic exactly (so every loop bound,
index decode and branch is the GPU's), floating-point values approximately (IEEE single precision in
Python: no branch of these kernels depends on them), shared and global memory as sparse maps that
return a fixed pseudo-random word where nothing was written. Every instruction the thread steps through
counts, predicated-off ones included, as the GPU issues them.

Each thread runs from start to EXIT on its own: barriers are no-ops and a shuffle returns the thread's own
value. That is exact for kernels whose control flow depends only on the thread's and block's indices and
the launch parameters (both sides' resampling kernels); a branch on another thread's data would take the
path the pseudo-random word gives.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from typing import Callable, Optional

MASK = 0xFFFFFFFF
RZ, URZ, PT, UPT = 255, 63, 7, 7
_F = struct.Struct('<f')
_I = struct.Struct('<I')
_H = struct.Struct('<e')
_D = struct.Struct('<d')
_Q = struct.Struct('<Q')


def f2b(v: float) -> int:
    try:
        return _I.unpack(_F.pack(v))[0]
    except OverflowError:
        return 0x7F800000 if v > 0 else 0xFF800000


def b2f(b: int) -> float:
    return _F.unpack(_I.pack(b & MASK))[0]


def h2f(b: int) -> float:
    return _H.unpack(struct.pack('<H', b & 0xFFFF))[0]


def f2h(v: float) -> int:
    try:
        return struct.unpack('<H', _H.pack(v))[0]
    except (OverflowError, struct.error):
        return 0x7C00 if v > 0 else 0xFC00


def s32(v: int) -> int:
    v &= MASK
    return v - (1 << 32) if v & 0x80000000 else v


def noise(address: int) -> int:
    """The word memory holds where nothing was written: fixed, pseudo-random."""
    x = (address * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    return (x >> 29) & MASK


class Exit(Exception):
    pass


@dataclass
class Thread:
    """One thread's state: registers, predicates, its indices, and the launch's constant banks."""
    const: dict                     # bank -> bytes
    tid: tuple = (0, 0, 0)
    ctaid: tuple = (0, 0, 0)
    r: list = field(default_factory=lambda: [0] * 256)
    ur: list = field(default_factory=lambda: [0] * 64)
    p: list = field(default_factory=lambda: [False] * 7 + [True])
    up: list = field(default_factory=lambda: [False] * 7 + [True])
    shared: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    count: int = 0
    stores: dict = field(default_factory=dict)   # global stores by width in bytes (a check of the trace)

    def const_word(self, bank: int, offset: int) -> int:
        data = self.const.get(bank)
        if data is None or offset + 4 > len(data) or offset < 0:
            return noise(bank * 1000003 + offset)
        return int.from_bytes(data[offset:offset + 4], 'little')


# ------------------------------------------------------------------ operands

_REG = re.compile(r'^(-|~|!)?(\|)?(U?R(?:Z|\d+)|U?P(?:T|\d+)|SR_\w+|SRZ)(\|)?((?:\.\w+)*)$')
_CONST = re.compile(r'^(-|~)?(\|)?c\[(0x[0-9a-f]+)\]\[(.+)\](\|)?$')
_FLOAT_WORDS = {'+INF': math.inf, '-INF': -math.inf, 'INF': math.inf, '+QNAN': math.nan, '-QNAN': math.nan,
                'QNAN': math.nan}


def _int_literal(text: str) -> Optional[int]:
    try:
        return int(text, 0) & MASK if text.lstrip('-').startswith('0x') else None
    except ValueError:
        return None


def _literal(text: str, floating: bool) -> Optional[int]:
    """An immediate as a 32-bit pattern: hex as bits, decimal as float (float ops) or integer."""
    if text in _FLOAT_WORDS:
        return f2b(_FLOAT_WORDS[text])
    value = _int_literal(text)
    if value is not None:
        return value
    try:
        if floating or any(ch in text for ch in '.eE'):
            return f2b(float(text))
        return int(text) & MASK
    except ValueError:
        return None


@dataclass
class Operand:
    kind: str            # 'r', 'ur', 'p', 'up', 'imm', 'const', 'sr', 'mem', 'label'
    index: int = 0
    neg: bool = False
    invert: bool = False
    absolute: bool = False
    suffix: str = ''
    value: int = 0
    bank: int = 0
    base: Optional['Operand'] = None
    parts: tuple = ()
    text: str = ''


def _register(name: str) -> tuple[str, int]:
    if name in ('RZ', 'URZ', 'PT', 'UPT'):
        return {'RZ': ('r', RZ), 'URZ': ('ur', URZ), 'PT': ('p', PT), 'UPT': ('up', UPT)}[name]
    for prefix, kind in (('UR', 'ur'), ('UP', 'up'), ('R', 'r'), ('P', 'p')):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return kind, int(name[len(prefix):])
    raise ValueError(name)


def parse_operand(text: str, floating: bool = False) -> Operand:
    text = text.strip().replace('.reuse', '')
    if text.startswith('`(') or text.startswith('('):
        return Operand('label', text=text.strip('`()'))
    if text.startswith('desc['):
        inner = text[text.index('][') + 2:-1]
        return Operand('mem', parts=_address_parts(inner))
    if text.startswith('['):
        return Operand('mem', parts=_address_parts(text[1:-1]))
    m = _CONST.match(text)
    if m:
        where = m.group(4)
        base, offset = None, 0
        for piece in where.split('+'):
            piece = piece.strip()
            if not piece:
                continue
            lit = _int_literal(piece)
            if lit is not None:
                offset += s32(lit)
            else:
                base = parse_operand(piece)
        return Operand('const', bank=int(m.group(3), 16), value=offset, base=base, neg=m.group(1) == '-',
                       invert=m.group(1) == '~', absolute=bool(m.group(2)))
    m = _REG.match(text)
    if m and not m.group(3).startswith('SR'):
        kind, index = _register(m.group(3))
        return Operand(kind, index, neg=m.group(1) == '-', invert=m.group(1) in ('~', '!'), absolute=bool(m.group(2)),
                       suffix=m.group(5) or '')
    if m:
        return Operand('sr', text=m.group(3) + (m.group(5) or ''))
    if text.isidentifier():   # other special registers (PR, barrier registers)
        return Operand('sr', text=text)
    value = _literal(text.strip('|'), floating)
    if value is None:
        raise ValueError(f'operand {text!r}')
    return Operand('imm', value=value, absolute=text.startswith('|'))


def _address_parts(inner: str) -> tuple:
    parts = []
    for piece in inner.replace('+-', '+-').split('+'):
        piece = piece.strip()
        if not piece:
            continue
        lit = _int_literal(piece)
        if lit is not None:
            parts.append(('imm', s32(lit), 1))
            continue
        scale = 4 if piece.endswith('.X4') else 8 if piece.endswith('.X8') else 16 if piece.endswith('.X16') else 1
        wide = piece.endswith('.64')
        name = piece.split('.')[0]
        kind, index = _register(name)
        parts.append((kind + ('64' if wide else ''), index, scale))
    return tuple(parts)


# ------------------------------------------------------------------ reading values

def read(t: Thread, o: Operand) -> int:
    """32-bit value (pattern) of a source operand, before float modifiers."""
    k = o.kind
    if k == 'r':
        v = 0 if o.index == RZ else t.r[o.index]
    elif k == 'ur':
        v = 0 if o.index == URZ else t.ur[o.index]
    elif k == 'imm':
        return o.value
    elif k == 'const':
        off = o.value + (s32(read(t, o.base)) if o.base is not None else 0)
        v = t.const_word(o.bank, off)
    elif k == 'sr':
        v = special(t, o.text)
    elif k in ('p', 'up'):
        v = int(pred(t, o))
    else:
        raise ValueError(f'cannot read {o}')
    if o.suffix:
        v = _swizzle(v, o.suffix)
    return v


def read_int(t: Thread, o: Operand) -> int:
    v = read(t, o)
    if o.invert:
        v = ~v & MASK
    if o.absolute:
        v = abs(s32(v)) & MASK
    if o.neg:
        v = -v & MASK
    return v


def read_float(t: Thread, o: Operand) -> float:
    v = b2f(read(t, o))
    if o.absolute:
        v = abs(v)
    if o.neg:
        v = -v
    return v


def read64(t: Thread, o: Operand) -> int:
    if o.kind == 'r':
        return 0 if o.index == RZ else t.r[o.index] | (t.r[o.index + 1] << 32)
    if o.kind == 'ur':
        return 0 if o.index == URZ else t.ur[o.index] | (t.ur[o.index + 1] << 32)
    if o.kind == 'const':
        off = o.value + (s32(read(t, o.base)) if o.base is not None else 0)
        return t.const_word(o.bank, off) | (t.const_word(o.bank, off + 4) << 32)
    return read(t, o)


def pred(t: Thread, o: Operand) -> bool:
    v = t.p[o.index] if o.kind == 'p' else t.up[o.index]
    return (not v) if o.invert else v


def special(t: Thread, name: str) -> int:
    table = {'SR_TID.X': t.tid[0], 'SR_TID.Y': t.tid[1], 'SR_TID.Z': t.tid[2], 'SR_CTAID.X': t.ctaid[0],
             'SR_CTAID.Y': t.ctaid[1], 'SR_CTAID.Z': t.ctaid[2], 'SR_LANEID': t.tid[0] & 31, 'SRZ': 0,
             'SR_CLOCKLO': t.count, 'SR_CLOCKHI': 0, 'SR_LEMASK': (1 << (t.tid[0] & 31)) - 1}
    return table.get(name, 0)


def _swizzle(v: int, suffix: str) -> int:
    """Half-word selectors of half2 operands (.H0_H0, .H1_H1, .H1), byte and sign-extension suffixes."""
    if suffix.startswith('.H0_H0'):
        return (v & 0xFFFF) * 0x10001
    if suffix.startswith('.H1_H1') or suffix == '.H1':
        return (v >> 16) * 0x10001
    if suffix == '.H0':
        return v & 0xFFFF
    if suffix == '.F32':
        return v
    return v


def write(t: Thread, o: Operand, v: int) -> None:
    if o.kind == 'r':
        if o.index != RZ:
            t.r[o.index] = v & MASK
    elif o.kind == 'ur':
        if o.index != URZ:
            t.ur[o.index] = v & MASK
    elif o.kind == 'p':
        if o.index != PT:
            t.p[o.index] = bool(v)
    elif o.kind == 'up':
        if o.index != UPT:
            t.up[o.index] = bool(v)
    else:
        raise ValueError(f'cannot write {o}')


def write64(t: Thread, o: Operand, v: int) -> None:
    write(t, o, v & MASK)
    if o.index != (RZ if o.kind == 'r' else URZ):
        write(t, Operand(o.kind, o.index + 1), (v >> 32) & MASK)


def address(t: Thread, o: Operand) -> int:
    total = 0
    for kind, index, scale in o.parts:
        if kind == 'imm':
            total += index
        elif kind in ('r64', 'ur64'):
            total += read64(t, Operand(kind[:-2], index))
        else:
            total += read(t, Operand(kind, index)) * scale
    return total


# ------------------------------------------------------------------ instruction semantics

_CMP = {'LT': lambda a, b: a < b, 'LE': lambda a, b: a <= b, 'GT': lambda a, b: a > b, 'GE': lambda a, b: a >= b,
        'EQ': lambda a, b: a == b, 'NE': lambda a, b: a != b, 'F': lambda a, b: False, 'T': lambda a, b: True}
_STRICT = {'LE': 'LT', 'GE': 'GT', 'LT': 'LT', 'GT': 'GT', 'EQ': 'EQ', 'NE': 'NE'}
_BOOL = {'AND': lambda a, b: a and b, 'OR': lambda a, b: a or b, 'XOR': lambda a, b: a != b}


def _mods(opcode: str) -> set:
    return set(opcode.split('.')[1:])


def _find(mods: set, table: dict, default: str) -> str:
    return next((m for m in mods if m in table), default)


def _fcmp(name: str, a: float, b: float) -> bool:
    unordered = math.isnan(a) or math.isnan(b)
    if name in ('NAN',):
        return unordered
    if name in ('NUM',):
        return not unordered
    if name.endswith('U') and name not in ('EQU',) and len(name) == 3 or name == 'EQU':
        return unordered or _CMP[name[:2]](a, b)
    return (not unordered) and _CMP[name](a, b)


def _lut(lut: int, a: int, b: int, c: int) -> int:
    out = 0
    for i in range(8):
        if lut >> i & 1:
            ta = a if i & 4 else ~a
            tb = b if i & 2 else ~b
            tc = c if i & 1 else ~c
            out |= ta & tb & tc
    return out & MASK


def _minmax(a: int, b: int, is_min: bool, unsigned: bool) -> int:
    x, y = (a, b) if unsigned else (s32(a), s32(b))
    return (min(x, y) if is_min else max(x, y)) & MASK


def _shf(mods: set, lo: int, shift: int, hi: int) -> int:
    wide = 'U64' in mods or 'S64' in mods
    signed = 'S32' in mods or 'S64' in mods
    shift = min(shift & (0x3F if wide else 0xFFFFFFFF), 64 if wide else 32)
    if 'W' in mods:
        shift &= 31
    value = (hi << 32) | lo
    if 'L' in mods:
        res = value << shift
        return (res >> 32) & MASK if 'HI' in mods else res & MASK
    if signed:
        value = (s32(hi) << 32) | lo
    res = value >> shift
    return (res >> 32) & MASK if 'HI' in mods else res & MASK


def _prmt(a: int, sel: int, b: int) -> int:
    data = a | (b << 32)
    out = 0
    for i in range(4):
        nib = (sel >> (4 * i)) & 0xF
        byte = (data >> (8 * (nib & 7))) & 0xFF
        if nib & 8:
            byte = 0xFF if byte & 0x80 else 0
        out |= byte << (8 * i)
    return out


def _i2f(mods: set, v: int) -> float:
    if 'U32' in mods:
        x = v
    elif 'U16' in mods:
        x = v & 0xFFFF
    elif 'S16' in mods:
        x = s32(v << 16) >> 16
    else:
        x = s32(v)
    f = b2f(f2b(float(x)))
    if 'RP' in mods and f < x:
        f = math.nextafter(f, math.inf)
        f = b2f(f2b(f))
    return f


def _f2i(mods: set, f: float) -> int:
    if math.isnan(f):
        return 0
    if 'FLOOR' in mods:
        x = math.floor(f)
    elif 'CEIL' in mods:
        x = math.ceil(f)
    elif 'TRUNC' in mods or True:
        x = math.trunc(f) if math.isfinite(f) else (1 << 40 if f > 0 else -(1 << 40))
    if 'U32' in mods:
        return max(0, min(x, MASK))
    return max(-(1 << 31), min(x, (1 << 31) - 1)) & MASK


def _mufu(kind: str, x: float) -> float:
    try:
        if kind == 'RCP':
            return math.copysign(math.inf, x) if x == 0 else 1.0 / x
        if kind == 'RSQ':
            return math.inf if x == 0 else (math.nan if x < 0 else 1.0 / math.sqrt(x))
        if kind == 'SQRT':
            return math.sqrt(x) if x >= 0 else math.nan
        if kind == 'EX2':
            return 2.0 ** x
        if kind == 'LG2':
            return math.log2(x) if x > 0 else (-math.inf if x == 0 else math.nan)
        if kind in ('SIN', 'COS'):
            return (math.sin if kind == 'SIN' else math.cos)(x) if math.isfinite(x) else math.nan
    except OverflowError:
        return math.inf
    return 0.0


def _half2(t: Thread, o: Operand) -> tuple[float, float]:
    if o.kind == 'imm':
        return b2f(o.value), b2f(o.value)
    v = read(t, o)
    lo, hi = h2f(v), h2f(v >> 16)
    if o.absolute:
        lo, hi = abs(lo), abs(hi)
    if o.neg:
        lo, hi = -lo, -hi
    return lo, hi


def _int_ops(name: str, mods: set, o: list) -> Optional[Callable]:
    """Integer, logic and move instructions (also their uniform-datapath twins, U-prefixed)."""
    unsigned = 'U32' in mods
    if name == 'IMAD':
        if 'WIDE' in mods:
            def f(t):
                a, b = read_int(t, o[1]), read_int(t, o[2])
                if not unsigned:
                    a, b = s32(a), s32(b)
                write64(t, o[0], a * b + read64(t, o[3]))
        elif 'HI' in mods:
            def f(t):
                a, b = read_int(t, o[1]), read_int(t, o[2])
                if not unsigned:
                    a, b = s32(a), s32(b)
                # (the addend is the 64-bit register pair {c + 1, c}: the reciprocal step of a division
                # zeroes c and keeps its estimate in c + 1)
                carry = int(pred(t, o[4])) if len(o) > 4 and 'X' in mods else 0
                write(t, o[0], ((a * b + read64(t, o[3])) >> 32) + carry)
        elif 'X' in mods:
            def f(t):
                write(t, o[0], read_int(t, o[1]) * read_int(t, o[2]) + read_int(t, o[3]) + int(pred(t, o[4])))
        else:
            def f(t):
                write(t, o[0], read_int(t, o[1]) * read_int(t, o[2]) + read_int(t, o[3]))
        return f
    if name == 'IADD3':
        rest = o[1:]
        lead = 0
        while lead < len(rest) and rest[lead].kind in ('p', 'up'):
            lead += 1
        carry_out = rest[:lead]
        srcs = [x for x in rest[lead:] if x.kind not in ('p', 'up')]
        carry_in = [x for x in rest[lead:] if x.kind in ('p', 'up')]

        def f(t):
            total = sum(read_int(t, s) for s in srcs) + sum(int(pred(t, c)) for c in carry_in)
            write(t, o[0], total)
            for i, c in enumerate(carry_out):
                write(t, c, (total >> (32 + i)) & 1)
        return f
    if name in ('VIADD', 'IADD', 'IADD32I'):
        return lambda t: write(t, o[0], read_int(t, o[1]) + read_int(t, o[2]))
    if name == 'LEA':
        return _lea(mods, o)
    if name in ('LOP3', 'LOP'):
        if o[0].kind in ('p', 'up'):   # LOP3.LUT P, R, a, b, c, lut, p: also P = (result != 0)
            pd, dst, rest = o[0], o[1], o[2:]
        else:
            pd, dst, rest = None, o[0], o[1:]
        lut = rest[3].value

        def f(t):
            v = _lut(lut, read_int(t, rest[0]), read_int(t, rest[1]), read_int(t, rest[2]))
            write(t, dst, v)
            if pd is not None:
                write(t, pd, v != 0)
        return f
    if name == 'PLOP3':
        def f(t):
            a, b, c = (pred(t, x) for x in o[2:5])
            write(t, o[0], _lut(o[5].value, -int(a), -int(b), -int(c)) & 1)
            write(t, o[1], _lut(o[6].value, -int(a), -int(b), -int(c)) & 1)
        return f
    if name in ('MOV', 'MOV32I'):
        return lambda t: write(t, o[0], read_int(t, o[1]))
    if name == 'SEL':
        return lambda t: write(t, o[0], read_int(t, o[1]) if pred(t, o[3]) else read_int(t, o[2]))
    if name == 'IABS':
        return lambda t: write(t, o[0], abs(s32(read_int(t, o[1]))))
    if name == 'VIMNMX' or name == 'IMNMX':
        return lambda t: write(t, o[0], _minmax(read_int(t, o[1]), read_int(t, o[2]), pred(t, o[3]), unsigned))
    if name == 'VIADDMNMX':
        return lambda t: write(t, o[0], _minmax((read_int(t, o[1]) + read_int(t, o[2])) & MASK, read_int(t, o[3]),
                                                pred(t, o[4]), unsigned))
    if name == 'SHF':
        return lambda t: write(t, o[0], _shf(mods, read_int(t, o[1]), read_int(t, o[2]), read_int(t, o[3])))
    if name in ('SHL', 'SHR'):
        return lambda t: write(t, o[0], (read_int(t, o[1]) << read_int(t, o[2])) if name == 'SHL' else
                               ((s32(read_int(t, o[1])) if 'S32' in mods else read_int(t, o[1])) >> read_int(t, o[2])))
    if name == 'PRMT':
        return lambda t: write(t, o[0], _prmt(read_int(t, o[1]), read_int(t, o[2]), read_int(t, o[3])))
    if name == 'ISETP':
        return _isetp(mods, o)
    if name == 'POPC':
        return lambda t: write(t, o[0], bin(read_int(t, o[1])).count('1'))
    if name == 'FLO':
        return lambda t: write(t, o[0], (read_int(t, o[1]).bit_length() - 1) & MASK)
    if name == 'BREV':
        return lambda t: write(t, o[0], int(f'{read_int(t, o[1]):032b}'[::-1], 2))
    if name == 'BMSK':
        return lambda t: write(t, o[0], ((1 << min(read_int(t, o[2]), 32)) - 1) << read_int(t, o[1]))
    return None


def _lea(mods: set, o: list) -> Callable:
    """LEA d, [P,] a, b, s: (a << s) + b; .HI: b + high word of ({c, a} << s); .X adds a carry; .SX32
    takes c as a's sign."""
    srcs = [x for x in o[1:] if x.kind not in ('p', 'up')]
    preds = [x for x in o[1:] if x.kind in ('p', 'up')]
    if 'HI' not in mods:
        def f(t):
            a, b, s = read_int(t, srcs[0]), read_int(t, srcs[1]), read_int(t, srcs[-1])
            total = ((a << s) & MASK) + b + (int(pred(t, preds[-1])) if 'X' in mods else 0)
            write(t, o[0], total)
            if preds and 'X' not in mods:
                write(t, preds[0], total >> 32)
        return f

    def g(t):
        a, b = read_int(t, srcs[0]), read_int(t, srcs[1])
        s = read_int(t, srcs[-1])
        hi = (MASK if a & 0x80000000 else 0) if 'SX32' in mods else read_int(t, srcs[2])
        shifted = (((hi << 32) | a) << s) >> 32
        write(t, o[0], b + shifted + (int(pred(t, preds[-1])) if 'X' in mods and preds else 0))
    return g


def _isetp(mods: set, o: list) -> Callable:
    cmp = _find(mods, _CMP, 'EQ')
    comb = _BOOL[_find(mods, _BOOL, 'AND')]
    unsigned = 'U32' in mods
    ex = 'EX' in mods

    def f(t):
        a, b = read_int(t, o[2]), read_int(t, o[3])
        if not unsigned:
            a, b = s32(a), s32(b)
        if ex:   # the high words of a 64-bit compare, o[5] holding the low words' result
            low = pred(t, o[5])
            r = _CMP[_STRICT[cmp]](a, b) or (a == b and low) if cmp not in ('EQ', 'NE') else \
                (a == b and low if cmp == 'EQ' else a != b or low)
        else:
            r = _CMP[cmp](a, b)
        c = pred(t, o[4])
        write(t, o[0], comb(r, c))
        write(t, o[1], comb(not r, c))
    return f


def _float_ops(name: str, mods: set, o: list, types: list) -> Optional[Callable]:
    if name in ('FFMA', 'FFMA32I'):
        return lambda t: write(t, o[0], f2b(read_float(t, o[1]) * read_float(t, o[2]) + read_float(t, o[3])))
    if name in ('FMUL', 'FMUL32I'):
        return lambda t: write(t, o[0], f2b(read_float(t, o[1]) * read_float(t, o[2])))
    if name in ('FADD', 'FADD32I'):
        return lambda t: write(t, o[0], f2b(read_float(t, o[1]) + read_float(t, o[2])))
    if name == 'FMNMX':
        def f(t):
            a, b = read_float(t, o[1]), read_float(t, o[2])
            write(t, o[0], f2b(min(a, b) if pred(t, o[3]) else max(a, b)))
        return f
    if name == 'FSEL':
        return lambda t: write(t, o[0], read(t, o[1]) if pred(t, o[3]) else read(t, o[2]))
    if name in ('FSETP', 'DSETP'):
        cmp = next((m for m in mods if m in _CMP or m in ('LTU', 'LEU', 'GTU', 'GEU', 'EQU', 'NEU', 'NAN', 'NUM')), 'EQ')
        comb = _BOOL[_find(mods, _BOOL, 'AND')]
        getter = read_float if name == 'FSETP' else _read_double

        def f(t):
            r = _fcmp(cmp, getter(t, o[2]), getter(t, o[3]))
            c = pred(t, o[4])
            write(t, o[0], comb(r, c))
            write(t, o[1], comb(not r, c))
        return f
    if name == 'MUFU':
        kind = next(iter(mods), 'RCP')
        return lambda t: write(t, o[0], f2b(_mufu(kind, read_float(t, o[1]))))
    if name in ('I2F', 'I2FP'):
        if 'F64' in mods:
            return lambda t: write64(t, o[0], _Q.unpack(_D.pack(_i2f(mods, read_int(t, o[1]))))[0])
        if 'F16' in mods:
            return lambda t: write(t, o[0], f2h(_i2f(mods, read_int(t, o[1]))))
        return lambda t: write(t, o[0], f2b(_i2f(mods, read_int(t, o[1]))))
    if name in ('F2I', 'F2IP'):
        src = read_float if 'F64' not in mods else _read_double
        return lambda t: write(t, o[0], _f2i(mods, src(t, o[1])))
    if name == 'F2F':
        return _f2f([m for m in types if m in ('F16', 'F32', 'F64')], o)
    if name in ('FRND',):
        return lambda t: write(t, o[0], f2b(float(round(read_float(t, o[1])))))
    if name == 'F2FP':
        return lambda t: write(t, o[0], f2h(read_float(t, o[2])) | (f2h(read_float(t, o[1])) << 16))
    if name in ('HADD2', 'HMUL2', 'HFMA2'):
        return _half_ops(name, mods, o)
    if name in ('DMUL', 'DADD', 'DFMA'):
        def f(t):
            a, b = _read_double(t, o[1]), _read_double(t, o[2])
            v = a * b if name == 'DMUL' else a + b if name == 'DADD' else a * b + _read_double(t, o[3])
            write64(t, o[0], _Q.unpack(_D.pack(v))[0])
        return f
    return None


def _read_double(t: Thread, o: Operand) -> float:
    if o.kind == 'imm':
        return b2f(o.value)
    v = _D.unpack(_Q.pack(read64(t, o) & 0xFFFFFFFFFFFFFFFF))[0]
    return -abs(v) if o.neg and o.absolute else (abs(v) if o.absolute else (-v if o.neg else v))


def _f2f(types: list, o: list) -> Callable:
    """F2F.<destination type>.<source type>."""
    dst_type, src_type = (types + types)[:2] if types else ('F32', 'F32')

    def f(t):
        src = o[1]
        v = h2f(read(t, src)) if src_type == 'F16' else _read_double(t, src) if src_type == 'F64' else read_float(t, src)
        if dst_type == 'F16':
            write(t, o[0], f2h(v))
        elif dst_type == 'F64':
            write64(t, o[0], _Q.unpack(_D.pack(v))[0])
        else:
            write(t, o[0], f2b(v))
    return f


def _half_ops(name: str, mods: set, o: list) -> Callable:
    """half2 arithmetic on (lo, hi); `.F32` results in single precision; two trailing immediates are the
    (H1, H0) halves of one constant."""
    srcs = list(o[1:])
    if len(srcs) >= 2 and srcs[-1].kind == 'imm' and srcs[-2].kind == 'imm':
        hi, lo = b2f(srcs[-2].value), b2f(srcs[-1].value)
        srcs = srcs[:-2] + [Operand('imm', value=f2h(lo) | (f2h(hi) << 16), text='half2')]

    def value(t, x):
        if x.kind == 'imm' and x.text == 'half2':
            return h2f(x.value), h2f(x.value >> 16)
        return _half2(t, x)

    def f(t):
        vals = [value(t, x) for x in srcs]
        if name == 'HADD2':
            res = [vals[0][i] + vals[1][i] for i in (0, 1)]
        elif name == 'HMUL2':
            res = [vals[0][i] * vals[1][i] for i in (0, 1)]
        else:
            res = [vals[0][i] * vals[1][i] + vals[2][i] for i in (0, 1)]
        if 'F32' in mods:
            write(t, o[0], f2b(res[0]))
        else:
            write(t, o[0], f2h(res[0]) | (f2h(res[1]) << 16))
    return f


_WIDTH = {'U8': 1, 'S8': 1, 'U16': 2, 'S16': 2, '64': 8, '128': 16}


def _memory_ops(name: str, mods: set, o: list) -> Optional[Callable]:
    width = next((w for m, w in _WIDTH.items() if m in mods), 4)
    if name in ('LDS', 'LDG', 'LD', 'LDL'):
        where = 'shared' if name == 'LDS' else 'memory'

        def f(t):
            base = address(t, o[1])
            space = getattr(t, where)
            for i in range(max(1, width // 4)):
                word = space.get(base + 4 * i)
                if word is None:
                    word = noise(base + 4 * i)
                if width < 4:
                    word &= (1 << (8 * width)) - 1
                write(t, Operand(o[0].kind, o[0].index + i if o[0].index != RZ else RZ), word)
        return f
    if name in ('STS', 'STG', 'ST', 'STL'):
        where = 'shared' if name == 'STS' else 'memory'

        def g(t):
            base = address(t, o[0])
            space = getattr(t, where)
            for i in range(max(1, width // 4)):
                space[base + 4 * i] = 0 if o[1].index == RZ else t.r[o[1].index + i]
            if name == 'STG':
                t.stores[width] = t.stores.get(width, 0) + 1
        return g
    if name in ('LDC', 'ULDC'):
        def h(t):
            c = o[1]
            off = c.value + (s32(read(t, c.base)) if c.base is not None else 0)
            for i in range(max(1, width // 4)):
                word = t.const_word(c.bank, off + 4 * i)
                if width < 4:
                    word = int.from_bytes(t.const.get(c.bank, b'')[off:off + width] or b'\0', 'little')
                dst = o[0].index + i if o[0].index not in (RZ, URZ) else o[0].index
                write(t, Operand(o[0].kind, dst), word)
        return h
    if name in ('ATOMS', 'ATOMG', 'RED', 'ATOM', 'REDG'):
        return lambda t: None
    return None


_NOPS = {'NOP', 'BAR', 'BSSY', 'BSYNC', 'WARPSYNC', 'ENDCOLLECTIVE', 'DEPBAR', 'MEMBAR', 'ERRBAR', 'CCTL', 'FENCE',
         'BMOV', 'YIELD', 'NANOSLEEP', 'CGAERRBAR', 'ACQBULK', 'UCGABAR_ARV', 'UCGABAR_WAIT', 'PMTRIG', 'LDGDEPBAR'}


def _warp_ops(name: str, mods: set, o: list) -> Optional[Callable]:
    """Warp-wide operations on one thread: the thread alone is the warp."""
    if name == 'SHFL':
        def f(t):
            if o[0].kind == 'p':
                write(t, o[0], True)
            write(t, o[1], read_int(t, o[2]))
        return f
    if name in ('VOTE', 'VOTEU'):
        def g(t):
            value = pred(t, o[-1])
            if 'ANY' in mods or 'ALL' in mods:
                write(t, o[0], int(value) if o[0].kind in ('r', 'ur') else value)
            else:
                write(t, o[0], int(value) << (t.tid[0] & 31))
        return g
    if name in ('REDUX', 'MATCH'):
        return lambda t: write(t, o[0], read_int(t, o[1]) if name == 'REDUX' else 1 << (t.tid[0] & 31))
    if name in ('S2R', 'S2UR', 'CS2R', 'CS2R.32'):
        wide = name == 'CS2R' and '32' not in mods
        return lambda t: (write64 if wide else write)(t, o[0], read(t, o[1]))
    if name == 'R2UR':
        return lambda t: write(t, o[0], read_int(t, o[1]))
    if name == 'P2R':
        def p2r(t):
            mask = read_int(t, o[2])
            v = sum(1 << i for i in range(7) if mask >> i & 1 and t.p[i])
            write(t, o[0], (read_int(t, o[1]) & ~mask) | v)
        return p2r
    if name == 'R2P':
        def r2p(t):
            v, mask = read_int(t, o[1]), read_int(t, o[2])
            for i in range(7):
                if mask >> i & 1:
                    t.p[i] = bool(v >> i & 1)
        return r2p
    return None


@dataclass
class Instruction:
    offset: int
    text: str
    opcode: str
    guard: Optional[Operand]
    run: Callable                 # t -> None, or for control flow: t -> next index (None: go on)


def _compile(text: str, labels: dict) -> tuple[str, Optional[Operand], Callable]:
    body = text.rstrip(' ;')
    guard = None
    if body.startswith('@'):
        head, body = body.split(None, 1)
        guard = parse_operand(head[1:])
    opcode, _, rest = body.partition(' ')
    rest = re.sub(r',?\s*`\(', ', `(', rest).lstrip(', ')   # (a branch target may follow an operand without a comma)
    args = [a for a in _split_operands(rest)] if rest.strip() else []
    parts = opcode.split('.')
    name, mods = parts[0], set(parts[1:])
    base = name[1:] if name.startswith('U') and name not in ('UMOV',) and name[1:] in _UNIFORM else name
    if name == 'UMOV':
        base = 'MOV'
    floating = base in ('FFMA', 'FMUL', 'FADD', 'FMNMX', 'FSETP', 'FSEL', 'MUFU', 'F2I', 'F2F', 'FRND', 'HADD2',
                        'HMUL2', 'HFMA2', 'F2FP', 'DSETP', 'DMUL', 'DADD', 'DFMA')
    if base.split('_')[0] in _NOPS or base in _NOPS:
        return opcode, guard, lambda t: None
    ops = [parse_operand(a, floating) for a in args]
    if base in ('BRA', 'JMP', 'CALL', 'RET', 'EXIT', 'BRX', 'JMX', 'KILL', 'BPT', 'RTT'):
        return opcode, guard, _control(base, mods, ops, labels)
    for family in (_int_ops, _memory_ops, _warp_ops):
        fn = family(base, mods, ops)
        if fn is not None:
            return opcode, guard, fn
    fn = _float_ops(base, mods, ops, parts[1:])
    if fn is None:
        raise NotImplementedError(f'SASS instruction not interpreted: {text.strip()}')
    return opcode, guard, fn


_UNIFORM = {'IMAD', 'IADD3', 'LOP3', 'SEL', 'LEA', 'ISETP', 'SHF', 'PRMT', 'FLO', 'POPC', 'BREV', 'BMSK', 'PLOP3',
            'MOV', 'LDC', 'SGXT', 'IABS', 'VIMNMX', 'VIADD', 'VIADDMNMX', 'IMNMX'}


def _split_operands(rest: str) -> list[str]:
    out, depth, cur = [], 0, ''
    for ch in rest:
        if ch in '[(':
            depth += 1
        elif ch in '])':
            depth -= 1
        if ch == ',' and depth == 0:
            out.append(cur.strip())
            cur = ''
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _control(name: str, mods: set, o: list, labels: dict) -> Callable:
    target = next((labels[x.text] for x in o if x.kind == 'label' and x.text in labels), None)
    if name == 'EXIT' or name == 'KILL':
        def stop(t):
            raise Exit()
        return stop
    if name == 'BRA':
        if 'DIV' in mods:   # taken only when the warp has diverged: one thread never has
            return lambda t: None
        return lambda t: target
    if name == 'CALL':
        return lambda t: target
    if name == 'RET':
        reg = next(x for x in o if x.kind == 'r')
        return lambda t: ('offset', t.r[reg.index])
    raise NotImplementedError(f'SASS control flow not interpreted: {name}')


def _unsupported(reason: str) -> Callable:
    def fail(t):
        raise NotImplementedError(reason)
    return fail


class Program:
    """One kernel's SASS, ready to run thread by thread."""

    def __init__(self, name: str, lines: list[str]):
        self.name = name
        raw, labels = [], {}
        for line in lines:
            s = line.strip()
            m = re.match(r'^/\*([0-9a-f]+)\*/\s+(.*)$', s)
            if m:
                raw.append((int(m.group(1), 16), m.group(2)))
            elif s.endswith(':') and not s.startswith('.') or s.startswith('.L_'):
                labels[s.rstrip(':')] = len(raw)
        self.by_offset = {off: i for i, (off, _) in enumerate(raw)}
        self.code: list[Instruction] = []
        for off, text in raw:
            try:
                opcode, guard, run = _compile(text, labels)
            except (NotImplementedError, ValueError, KeyError, IndexError) as e:   # fails only if reached
                opcode, guard, run = text.split()[0], None, _unsupported(f'{name}: {e}')
            self.code.append(Instruction(off, text, opcode, guard, run))
        self.profile: dict[str, int] = {}

    def run(self, t: Thread, limit: int = 50_000_000) -> int:
        """Execute one thread to its EXIT; returns the instructions it stepped through."""
        code, pc, n = self.code, 0, 0
        counts = self.profile
        try:
            while True:
                ins = code[pc]
                n += 1
                g = ins.guard
                if g is not None and not ((t.p[g.index] if g.kind == 'p' else t.up[g.index]) != g.invert):
                    counts[ins.opcode] = counts.get(ins.opcode, 0) + 1
                    pc += 1
                    continue
                counts[ins.opcode] = counts.get(ins.opcode, 0) + 1
                nxt = ins.run(t)
                if nxt is None:
                    pc += 1
                elif isinstance(nxt, tuple):
                    pc = self.by_offset[nxt[1]]
                else:
                    pc = nxt
                if n > limit:
                    raise RuntimeError(f'{self.name}: no EXIT after {limit} instructions (pc {ins.offset:#x})')
        except Exit:
            pass
        t.count = n
        return n


def programs(sass: str) -> dict[str, Program]:
    """The kernels (entry functions) of `nvdisasm -c` output, by mangled name."""
    out, name, lines = {}, None, []
    for line in sass.splitlines():
        m = re.match(r'^\s*\.text\.(\S+):$', line)
        if m:
            if name:
                out[name] = lines
            name, lines = m.group(1), []
            continue
        if name is not None:
            lines.append(line)
    if name:
        out[name] = lines
    return {n: Program(n, ls) for n, ls in out.items()}
