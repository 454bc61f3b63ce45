"""benchmarks/sass_trace.py, the SASS interpreter behind benchmarks/kernel_cost.py: the integer semantics
that decide every loop bound and branch (checked on hand-written sm_90 SASS in nvdisasm's format), and the
whole count in a side environment with nvcc and nvdisasm (slow)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(REPO, 'benchmarks'))   # last: its inversion.py and metrics.py would shadow the packages
import sass_trace  # noqa: E402


def program(*lines: str) -> sass_trace.Program:
    text = []
    for i, line in enumerate(lines):
        if line.endswith(':'):
            text.append(line)
        else:
            text.append(f'        /*{16 * sum(1 for x in lines[:i] if not x.endswith(":")):04x}*/   {line} ;')
    return sass_trace.Program('test', text)


def run(prog: sass_trace.Program, tid: int = 0, **regs) -> sass_trace.Thread:
    t = sass_trace.Thread({0: bytes(0x300)}, tid=(tid, 0, 0))
    for name, value in regs.items():
        t.r[int(name[1:])] = value & sass_trace.MASK
    prog.run(t)
    return t


# nvcc's unsigned 32-bit division for sm_90: a float reciprocal, one refinement whose addend is the register
# pair {R3, R2} (R2 zeroed), then at most two corrections.
DIVISION = ('I2F.U32.RP R0, R4', 'MUFU.RCP R0, R0', 'VIADD R2, R0, 0xffffffe', 'F2I.FTZ.U32.TRUNC.NTZ R3, R2',
            'IMAD.MOV.U32 R2, RZ, RZ, RZ', 'IMAD.MOV R5, RZ, RZ, -R3', 'IMAD R5, R5, R4, RZ',
            'IMAD.HI.U32 R3, R3, R5, R2', 'IMAD.HI.U32 R2, R3, R6, RZ', 'IMAD.MOV R7, RZ, RZ, -R2',
            'IMAD R7, R4, R7, R6', 'ISETP.GE.U32.AND P0, PT, R7, R4, PT', '@P0 IADD3 R7, R7, -R4, RZ',
            '@P0 VIADD R2, R2, 0x1', 'ISETP.GE.U32.AND P1, PT, R7, R4, PT', '@P1 VIADD R2, R2, 0x1', 'EXIT')


@pytest.mark.parametrize('n,d', [(0, 1), (1023, 32), (409599, 5), (2 ** 31 + 7, 3), (2 ** 32 - 1, 2 ** 32 - 1),
                                 (123456789, 1000), (77, 78)])
def test_division_by_the_reciprocal_sequence_is_exact(n, d):
    t = run(program(*DIVISION), R4=d, R6=n)
    assert t.r[2] == n // d and t.r[7] == n % d


def test_a_thread_loop_counts_every_instruction_it_steps_through():
    """for (i = tid; i < 10; i += 4) sum += i: 2 setup + 4 per iteration + 1 exit; predicated-off count too."""
    prog = program('S2R R0, SR_TID.X', 'IMAD.MOV.U32 R1, RZ, RZ, RZ', '.L_x_0:', 'IMAD.IADD R1, R1, 0x1, R0',
                   'VIADD R0, R0, 0x4', 'ISETP.GE.AND P0, PT, R0, 0xa, PT', '@!P0 BRA `(.L_x_0)', 'EXIT')
    for tid, iterations, total in ((0, 3, 0 + 4 + 8), (1, 3, 1 + 5 + 9), (3, 2, 3 + 7)):
        t = run(prog, tid=tid)
        assert t.r[1] == total and t.count == 2 + 4 * iterations + 1


def test_64_bit_compares_carries_and_logic():
    prog = program('ISETP.GE.U32.AND P0, PT, R2, R4, PT', 'ISETP.GE.AND.EX P0, PT, R3, R5, PT, P0',   # {3,2} >= {5,4}
                   'IADD3 R6, P1, R2, R4, RZ', 'IADD3.X R7, R3, R5, RZ, P1, !PT',                    # 64-bit add
                   'LOP3.LUT P2, RZ, R2, 0xff00, RZ, 0xc0, !PT',                                      # (R2 & 0xff00) != 0
                   'LEA.HI.X.SX32 R8, R9, RZ, 0x1, P1', 'SHF.R.S32.HI R10, RZ, 0x1f, R9', 'EXIT')
    t = run(prog, R2=0xFFFFFFF0, R3=1, R4=0x20, R5=1, R9=-8)
    assert t.p[0] is True                              # 0x1_FFFFFFF0 >= 0x1_00000020
    assert (t.r[7] << 32 | t.r[6]) == 0x1_FFFFFFF0 + 0x1_00000020
    assert t.p[2] is True and t.r[10] == 0xFFFFFFFF
    t = run(prog, R2=0x10, R3=1, R4=0x20, R5=1, R9=8)
    assert t.p[0] is False and t.p[2] is False and t.r[10] == 0


@pytest.mark.slow
def test_kernel_cost_counts_our_kernels_at_a_real_shape(tmp_path):
    """benchmarks/kernel_cost.py end to end on StyleGAN2's resampling (ours only), where nvcc, nvdisasm and
    cuobjdump are at hand (SG3C_CUDA_PYTHON names a Python whose triton wheel carries the last two)."""
    if not os.environ.get('SG3C_CUDA_PYTHON') or subprocess.run(['which', 'nvcc'], capture_output=True).returncode:
        pytest.skip('needs nvcc and SG3C_CUDA_PYTHON (a Python with triton, for nvdisasm)')
    out = tmp_path / 'cost.json'
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', 'kernel_cost.py'), '--cases=sg2',
                           '--blocks=2', '--thread-step=32', f'--json={out}'], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    rows = json.load(open(out))['rows']
    assert len(rows) == 3 and all(10 < r['ours']['per_output'] < 10_000 and r['ours']['registers'] > 0 for r in rows)
