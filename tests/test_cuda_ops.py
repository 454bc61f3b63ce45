"""The CUDA ops' machinery, tested without a GPU: the adjoint geometry their gradients use, the backend
choice and its fallbacks, the build cache key and lock, the self-test and the op-comparison harness of
the GPU acceptance (benchmarks/op_compare.py), the compile check in a side environment (slow, where
SG3C_CUDA_PYTHON names a Python with a CUDA build of torch), and the GPU-only parts (marked gpu).
The kernels themselves run on the CPU in tests/test_cuda_kernels_on_cpu.py."""
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import types

import numpy as np
import pytest
import torch

from torch_utils.cli import UserError
from torch_utils.ops import cuda_build, cuda_kernels, dispatch
from torch_utils.ops.selftest import agree_with_reference, backend_ops
from torch_utils.ops.bias_act import bias_act
from torch_utils.ops.filtered_lrelu import _composed, filtered_lrelu
from torch_utils.ops.upfirdn2d import setup_filter, upfirdn2d

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(REPO, 'benchmarks'))   # last: its inversion.py and metrics.py would shadow the packages
import op_compare  # noqa: E402

from helpers.cuda_kernels import check_kernels_twice_differentiable  # noqa: E402


@pytest.mark.parametrize('seed', range(12))
def test_adjoint_geometry_transposes_upfirdn2d(seed):
    """<upfirdn(x), y> == <x, upfirdn_adjoint(y)>: the backward kernels' geometry, checked with the reference op
    (correlating with the taps = convolving with the flipped taps, hence flip_filter=True for the adjoint)."""
    rng = np.random.RandomState(seed)
    while True:
        up, down = rng.choice([1, 2, 3, 4], size=2)
        h, w, kh, kw = rng.randint(1, 12), rng.randint(1, 12), rng.randint(1, 7), rng.randint(1, 7)
        pad = [int(p) for p in rng.randint(-3, 8, size=4)]
        oh = h * up + pad[2] + pad[3] - kh + 1
        ow = w * up + pad[0] + pad[1] - kw + 1
        if oh > 0 and ow > 0:
            break
    f = torch.from_numpy(rng.rand(kh, kw)).double()
    x = torch.randn([2, 3, h, w], dtype=torch.float64)
    y = upfirdn2d(x, f, up=int(up), down=int(down), padding=pad)
    dy = torch.randn(y.shape, dtype=torch.float64)
    taps = f.flip([0, 1])   # what the kernel correlates with
    (aux, auy), (adx, ady), apad = cuda_kernels._adjoint(x.shape, y.shape, taps.shape, (int(up), int(up)),
                                                         (int(down), int(down)), pad)
    dx = upfirdn2d(dy, taps.flip([0, 1]), up=(aux, auy), down=(adx, ady), padding=apad, flip_filter=True)
    assert dx.shape == x.shape
    assert torch.allclose((y * dy).sum(), (x * dx).sum(), rtol=1e-10)
    y = upfirdn2d(x.requires_grad_(True), f, up=int(up), down=int(down), padding=pad)
    # (when no input sample reaches the output, the reference returns constant zeros)
    want = torch.autograd.grad(y, [x], dy)[0] if y.requires_grad else torch.zeros_like(x)
    assert torch.allclose(dx, want, rtol=1e-10, atol=1e-12)


def test_kernels_cover_only_what_their_derivative_trick_allows():
    """The 2-bit derivative record needs gain > 0 and a non-negative slope; other activations use the reference."""
    assert cuda_kernels._epilogue('lrelu', 0.2, 1.4, None) == cuda_kernels.Epilogue(True, 0.2, 1.4, -1.0)
    assert cuda_kernels._epilogue('relu', 0.7, 2.0, 3.0) == cuda_kernels.Epilogue(True, 0.0, 2.0, 3.0)
    assert not cuda_kernels._epilogue('linear', 0.2, 1.0, None).leaky
    for args in [('tanh', 0, 1, None), ('lrelu', -0.1, 1, None), ('lrelu', 0.2, -1, None), ('linear', 0, 0, None)]:
        assert cuda_kernels._epilogue(*args) is None


FAKE_CUDA = types.SimpleNamespace(device=torch.device('cuda'))   # constructing a device needs no GPU


@pytest.fixture
def fresh_loader(monkeypatch):
    """cuda_kernels as if no load had been tried yet in this process, with CUDA 'available'."""
    monkeypatch.setattr(cuda_kernels, '_module', None)
    monkeypatch.setattr(cuda_kernels, '_failure', None)
    monkeypatch.setattr(cuda_kernels, '_state', 'new')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    monkeypatch.setattr(dispatch, '_backend', None)
    return monkeypatch


def test_failed_build_warns_once_in_one_line_and_uses_reference(fresh_loader, capfd):
    def broken_build():
        raise RuntimeError('Error building extension\nninja: build stopped\nmore noise')
    fresh_loader.setattr(cuda_build, 'build', broken_build)
    fresh_loader.setenv('SG3C_OPS', 'auto')
    assert dispatch.kernel_for('upfirdn2d', FAKE_CUDA) is None
    assert dispatch.kernel_for('bias_act', FAKE_CUDA) is None
    err = capfd.readouterr().err
    assert err.count('\n') == 1 and 'using the reference ops' in err and 'Error building extension' in err


def test_cuda_backend_fails_loudly_and_ref_never_builds(fresh_loader, capfd):
    calls = []
    fresh_loader.setattr(cuda_build, 'build', lambda: calls.append(1) or (_ for _ in ()).throw(OSError('no nvcc')))
    dispatch.set_backend('ref')
    assert dispatch.kernel_for('filtered_lrelu', FAKE_CUDA) is None and not calls
    dispatch.set_backend('cuda')
    with pytest.raises(UserError, match='no nvcc'):
        dispatch.kernel_for('filtered_lrelu', FAKE_CUDA)
    assert dispatch.kernel_for('filtered_lrelu', torch.zeros(1)) is None   # CPU tensors: always the reference
    assert len(calls) == 1
    with pytest.raises(UserError, match='impl'):
        dispatch.kernel_for('upfirdn2d', FAKE_CUDA, impl='fast')


def test_kernels_disagreeing_with_reference_are_not_used(fresh_loader, capfd):
    fresh_loader.setattr(cuda_build, 'build', lambda: types.SimpleNamespace())
    fresh_loader.setattr(cuda_kernels, '_self_test', lambda device: 'upfirdn2d forward disagrees with the reference')
    assert cuda_kernels.get('upfirdn2d') is None
    assert 'disagrees' in capfd.readouterr().err


def test_environment_variable_is_validated(monkeypatch):
    monkeypatch.setattr(dispatch, '_backend', None)
    monkeypatch.setenv('SG3C_OPS', 'fast')
    with pytest.raises(UserError, match='SG3C_OPS'):
        dispatch.get_backend()
    monkeypatch.setenv('SG3C_OPS', 'REF')
    assert dispatch.get_backend() == 'ref'


def test_self_test_catches_a_wrong_kernel():
    """The first-use self-test, run with reference ops standing in for kernels: silent when they agree,
    and naming the op when one is off (here: correlating instead of convolving)."""
    ref = backend_ops('ref')
    cpu = torch.device('cpu')
    assert agree_with_reference(cpu, candidate=ref, reference=ref) is None
    wrong = dict(ref, upfirdn2d=lambda x, f, **k: upfirdn2d(x, f, **dict(k, flip_filter=not k.get('flip_filter')),
                                                            impl='ref'))
    assert 'upfirdn2d' in agree_with_reference(cpu, candidate=wrong, reference=ref)
    assert cuda_kernels._self_test is agree_with_reference   # the check that load() runs


def test_comparisons_switch_tf32_off_and_back():
    from torch_utils.ops.selftest import exact_float32
    # Saved and restored by hand: torch.backends.cuda.matmul answers allow_tf32 through __getattr__, which
    # pytest 9.2's monkeypatch takes for a missing attribute and then fails to delete on undo.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with exact_float32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_kernel_declining_a_call_leaves_it_to_the_reference(monkeypatch):
    """A kernel returns None for calls it does not cover (here: every call); the op still answers."""
    monkeypatch.setattr(dispatch, 'kernel_for', lambda op, x, impl=None: (lambda *a, **k: None))
    x = torch.randn(1, 2, 5, 5)
    f = setup_filter([1, 2, 1])
    assert torch.equal(upfirdn2d(x, f, up=2), upfirdn2d(x, f, up=2, impl='ref'))
    assert torch.equal(bias_act(x, act='tanh'), torch.tanh(x))
    assert filtered_lrelu(x, f, f, up=2, down=2, padding=2).shape == (1, 2, 5, 5)


# ------------------------------------------------------------------ build cache

def test_build_key_follows_sources_torch_and_architecture(tmp_path, monkeypatch):
    key = cuda_build.build_key('9.0')
    assert key == cuda_build.build_key('9.0') and key != cuda_build.build_key('8.0;9.0')
    src = tmp_path / 'src'
    src.mkdir()
    for name in cuda_build.SOURCES + cuda_build.HEADERS:
        (src / name).write_bytes(open(os.path.join(cuda_build.SOURCE_DIR, name), 'rb').read())
    monkeypatch.setattr(cuda_build, 'SOURCE_DIR', str(src))
    assert cuda_build.build_key('9.0') == key
    with open(src / 'tile.h', 'a') as f:
        f.write('// changed\n')
    assert cuda_build.build_key('9.0') != key
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    assert cuda_build.build_dir(key).startswith(str(tmp_path / 'cache'))


def test_file_lock_serialises_builders(tmp_path):
    events = []

    def builder(name):
        with cuda_build.file_lock(str(tmp_path / 'build.lock')):
            events.append(f'{name} in')
            time.sleep(0.2)
            events.append(f'{name} out')

    threads = [threading.Thread(target=builder, args=(n,)) for n in 'ab']
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.split()[1] for e in events] == ['in', 'out', 'in', 'out']


def test_cuda_home_is_found_through_a_wrapper_script(tmp_path, monkeypatch):
    """A PATH nvcc that is a script calling the real toolkit: its dry run names the toolkit root."""
    wrapper = tmp_path / 'bin' / 'nvcc'
    wrapper.parent.mkdir()
    wrapper.write_text('#!/bin/sh\necho "#\\$ _HERE_=/opt/cuda-x/bin"\necho "#\\$ TOP=/opt/cuda-x/bin/.."\n')
    wrapper.chmod(0o755)
    monkeypatch.delenv('CUDA_HOME', raising=False)
    monkeypatch.delenv('CUDA_PATH', raising=False)
    monkeypatch.setenv('PATH', str(wrapper.parent))
    assert cuda_build.locate_cuda_home() == '/opt/cuda-x'
    monkeypatch.setenv('CUDA_HOME', str(tmp_path))
    assert cuda_build.locate_cuda_home() == str(tmp_path)


# ------------------------------------------------------------------ the acceptance harness

def test_harness_reports_zero_error_for_identical_ops():
    cases = op_compare.random_cases(4, seed=1)
    rows = op_compare.compare(backend_ops('ref'), backend_ops('ref'), cases, torch.device('cpu'))
    assert {r['op'] for r in rows} == set(op_compare.OPS)
    for r in rows:
        assert r['cases'] == 4 and r['ok'] and r['forward'] == r['grad'] == r['grad2'] == 0


def test_harness_accepts_an_equivalent_formulation_and_flags_a_wrong_one():
    """filtered_lrelu's op-by-op definition agrees with its fused reference path to rounding; a variant
    whose backward is wrong (a leaky slope of 0.2 where the forward used the case's own) is flagged in
    'grad', and one whose forward misses the bias in 'forward'."""
    cases = [c for c in op_compare.random_cases(6, seed=2, ops=('filtered_lrelu',))]
    ref = backend_ops('ref')

    def composed(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
        from torch_utils.ops.upfirdn2d import parse_padding
        return _composed(x, fu, fd, b, up, down, parse_padding(padding), gain, slope, clamp, flip_filter)

    def no_bias(x, fu, fd, b, **k):
        return filtered_lrelu(x, fu, fd, None, **k, impl='ref')

    good = op_compare.compare({'filtered_lrelu': composed}, ref, cases, torch.device('cpu'))[0]
    assert good['ok'] and 0 <= good['forward'] < 1e-5
    bad = op_compare.compare({'filtered_lrelu': no_bias}, ref, [c for c in cases if c.bias], torch.device('cpu'))[0]
    assert not bad['ok'] and bad['forward'] > 1e-3
    table = op_compare.format_table([good, bad])
    assert 'NO' in table and 'yes' in table


def test_harness_measures_float16_against_float32_reference():
    cases = op_compare.random_cases(3, seed=3, ops=('bias_act',))
    ref = backend_ops('ref')
    row = op_compare.compare(ref, ref, cases, torch.device('cpu'), dtypes=(torch.float16,))[0]
    # The reference in float16 against itself in float32: float16's own rounding, and accepted.
    assert row['ok'] and 0 < row['forward'] < 1e-2 and row['forward'] == row['ref_forward']


# ------------------------------------------------------------------ scripts

@pytest.mark.parametrize('run', ['1', '2'])
def test_gpu_check_refuses_a_machine_without_cuda(tmp_path, run):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    proc = subprocess.run(['bash', os.path.join(REPO, 'benchmarks', 'gpu_check.sh'), f'--run={run}', str(tmp_path / 'out'),
                           '--nvidia-repo=/nowhere'], capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and 'needs CUDA' in lines[0], lines


def test_gpu_check_step_runner_kills_what_overruns(tmp_path, monkeypatch):
    import gpu_check
    log = str(tmp_path / 'log')
    monkeypatch.setattr(gpu_check, 'MIN_STEP_S', 0.5)
    start = time.monotonic()
    slow = gpu_check.run(['bash', '-c', 'sleep 30 & wait'], log, timeout=1)   # the child sleep dies too
    assert slow['timed_out'] and time.monotonic() - start < 10
    assert gpu_check.run(['true'], log, timeout=0.1)['skipped']
    assert gpu_check.run(['bash', '-c', 'echo hi; exit 3'], log, timeout=5)['rc'] == 3
    assert gpu_check.tail(log, 1) == 'hi'


def test_gpu_check_runs_fit_their_lease_with_margin():
    """Runs 1 and 2 fit 4 and 6 minutes alone and 9 together (the device tool's 10-minute call, machine start
    aside); the rehearsal fits 5 minutes; each step's limit comes from the run's budget."""
    import gpu_check
    gpu, rehearsal = gpu_check.GPU.budgets, gpu_check.REHEARSAL.budgets
    assert gpu[1] <= 240 - 10 and gpu[2] <= 360 - 15 and gpu[(1, 2)][1] <= 540 - 15
    assert rehearsal[(1, 2)][1] <= 300 - 15
    first, whole = gpu_check.run_budgets(gpu_check.GPU, (1, 2), None)
    assert first < whole == gpu[(1, 2)][1] and gpu_check.run_budgets(gpu_check.GPU, (2,), 100) == [100]
    budget = gpu_check.Budget(100)
    assert budget.limit(300, keep=40) == pytest.approx(60, abs=1) and budget.limit(30) == pytest.approx(30, abs=1)
    assert budget.limit(300, keep=200) == 0
    assert gpu_check.RUNS[1][0] == gpu_check.RUNS[2][0] == 'build'   # (a fresh machine compiles again)
    both = gpu_check.run_steps((1, 2), None)
    assert [name for _, name in both].count('build') == 1   # (one command: one build)
    assert [name for _, name in both] == list(dict.fromkeys(gpu_check.RUNS[1] + gpu_check.RUNS[2]))
    assert gpu_check.run_steps((1, 2), 'racecheck,train') == [(1, 'racecheck'), (2, 'train')]


def test_gpu_check_keeps_half_of_what_is_left_for_nvidias_training_run(tmp_path, monkeypatch):
    """Our train.py may use at most half of the time left, NVIDIA's the rest (it ran under 30 s before)."""
    import gpu_check
    limits = []

    def fake_run(cmd, log, timeout, env=None, cwd=gpu_check.REPO):
        limits.append((os.path.basename(cmd[1]), timeout))
        return {'rc': 0, 'seconds': 0.0}
    monkeypatch.setattr(gpu_check, 'run', fake_run)
    nvidia = gpu_check.Nvidia.__new__(gpu_check.Nvidia)
    nvidia.repo, nvidia.python, nvidia.env, nvidia.build = '/nv', sys.executable, {}, None
    check = gpu_check.Check(gpu_check.GPU, str(tmp_path), {'SG3C_OPS': 'cuda'}, nvidia)
    res = gpu_check.step_train(check, gpu_check.Budget(200), ('stylegan3-t',))
    (_, data), (_, ours), (_, theirs) = limits
    assert ours <= 100 and theirs >= 95 and [n for n, _ in limits] == ['dataset_tool.py', 'train.py', 'train.py']
    assert res['rows'][0]['nvidia']['ops'] == "NVIDIA's reference path (no plugin set up)"


def test_gpu_check_says_which_of_nvidias_ops_its_training_run_used(tmp_path):
    import gpu_check
    log = tmp_path / 'log'
    log.write_text('Setting up PyTorch plugin "bias_act_plugin"... Done.\nSetting up PyTorch plugin "upfirdn2d_plugin"... Done.\n')
    assert gpu_check.nvidia_ops_in_log(str(log), False) == 'CUDA plugins (bias_act_plugin, upfirdn2d_plugin)'
    log.write_text('Setting up PyTorch plugin "bias_act_plugin"... Failed!\nModuleNotFoundError: bias_act_plugin\n')
    assert gpu_check.nvidia_ops_in_log(str(log), False).startswith('CUDA plugins failed to load')
    assert 'dry run' in gpu_check.nvidia_ops_in_log(str(tmp_path / 'none'), True)


def test_op_bench_puts_the_largest_stylegan3_t_layer_first_and_draws_on_the_device():
    import op_bench
    cases = op_bench.in_order(op_bench.layer_cases())
    t = [c for c in cases if c['name'].startswith('stylegan3-t')]
    assert cases[:len(t)] == t and op_bench.work(t[0]) == max(map(op_bench.work, cases[:len(t)]))
    tiny = op_bench.layer_cases(tiny=True)
    assert all(c['batch'] == 1 and c['channels'] == 1 and '1024px' not in c['name'] for c in tiny)
    assert {(c['op'], c['up'], c['down']) for c in tiny} == {(c['op'], c['up'], c['down']) for c in cases}
    a = op_bench.draw([2, 3], 0, torch.float16, torch.device('cpu'))
    assert a.dtype == torch.float16 and torch.equal(a, op_bench.draw([2, 3], 0, torch.float16, torch.device('cpu')))


def test_op_bench_asks_nvidias_worker_case_by_case(tmp_path):
    """The worker answers each case beside ours, past whatever NVIDIA's code prints, with which path ran."""
    import op_bench
    ops = tmp_path / 'torch_utils' / 'ops'
    ops.mkdir(parents=True)
    (tmp_path / 'torch_utils' / '__init__.py').write_text('')
    (ops / '__init__.py').write_text('')
    (ops / 'bias_act.py').write_text('')
    body = 'print("Setting up PyTorch plugin... noise")\ndef {0}(x, *a, impl="cuda", **k):\n    return x * 2\n'
    for name in ('upfirdn2d', 'filtered_lrelu'):
        (ops / f'{name}.py').write_text(body.format(name))
    worker = op_bench.NvidiaWorker(str(tmp_path), sys.executable, {'dtype': 'float32', 'device': 'cpu', 'repeats': 1,
                                                                   'warmup': 0}, str(tmp_path / 'log'))
    try:
        hello = worker.answer(60)
        assert hello['plugins']['filtered_lrelu'] == {'plugin': False, 'impl': 'ref', 'note': "cpu: NVIDIA's reference path"}
        case = dict(op_bench.layer_cases(tiny=True)[0], size=8)
        row = worker.ask(case, 60)
        assert row['impl'] == 'ref' and row['shape'] == [1, 1, 8, 8] and row['forward_ms'] >= 0
        x = op_bench.inputs(case, torch.float32, torch.device('cpu'))[0]
        assert row['checksum'] == pytest.approx(float(2 * x.double().abs().sum()))
    finally:
        worker.close()
    assert 'noise' in (tmp_path / 'log').read_text()


def _result(tick: dict) -> dict:
    return {'run': 2, 'environment': {'gpu': 'NVIDIA H200', 'capability': '9.0', 'torch': '2.11', 'cuda': '13.0',
                                      'date': '2026-12-02', 'nvidia_repo': 'nv'},
            'seconds': 300, 'ops_backend': 'cuda', 'steps': {
                'build': {'ok': True, 'rc': 0, 'summary': 'build+load+self-test 61.0 s: ok'},
                'ops': {'ok': True, 'rows': [{'op': 'upfirdn2d', 'dtype': 'float16', 'cases': 30, 'forward': 1e-3,
                                              'grad': 2e-3, 'grad2': 3e-3, 'ok': True}]},
                'opbench': {'ok': True, 'dtype': 'float16', 'table': '| case | ... |'},
                'generate': {'ok': True, 'rows': [
                    {'config': 'stylegan3-t', 'res': 256, 'batch': 1, 'precision': 'mixed', 'cuda_graph': True,
                     'ours_img_per_s': 300.0, 'nvidia_img_per_s': 150.0, 'speedup': 2.0, 'max_abs_diff': 1e-3,
                     'meets_speed_target': True, 'identical_to_1_level': True}]},
                'train': {'ok': True, 'rows': [{'config': 'stylegan3-r', 'ours': dict(tick, rc=0),
                                                'nvidia': {'sec_per_kimg': 20.0, 'peak_gpu_mem_gb': 9.0},
                                                'ratio': 1.5, 'meets_target': False}]},
                'pytest': {'ok': False, 'rc': 1, 'summary': '1 failed, 5 passed'},
                'e2e': {'skipped': 'no time left in the budget'}}}


def test_gpu_check_reads_the_last_tick_and_tabulates_against_targets(tmp_path):
    import gpu_check
    run_dir = tmp_path / '00000-run'
    run_dir.mkdir()
    ticks = [{'Timing/sec_per_kimg': {'mean': 90.0}, 'Resources/peak_gpu_mem_gb': {'mean': 5.0}},
             {'Timing/sec_per_kimg': {'mean': 30.0}, 'Resources/peak_gpu_mem_gb': {'mean': 6.5}}]
    (run_dir / 'stats.jsonl').write_text(''.join(json.dumps(t) + '\n' for t in ticks))
    tick = gpu_check.last_tick(str(tmp_path))
    assert tick == {'sec_per_kimg': 30.0, 'peak_gpu_mem_gb': 6.5, 'ticks': 2}
    text = gpu_check.table(_result(tick))
    rows = {line.split('|')[2].strip(): line for line in text.splitlines() if line.startswith('| ')}
    assert 'ok' in rows['upfirdn2d float16 vs reference, rel. error fwd / grad / grad2 (30 cases)']
    assert 'FAIL' in rows['-m gpu'] and '1 failed' in rows['-m gpu']
    assert '2.00x' in rows['stylegan3-t 256px batch 1 img/s (mixed, CUDA graph)']
    train = rows['stylegan3-r batch 32 s/kimg, peak memory']
    assert '30.00, 6.5 GB' in train and '1.50 (<= 1.0)' in train and train.rstrip(' |').endswith('below target')
    assert rows['train.py -> gen_images.py -> invert.py'].rstrip(' |').endswith('skipped')
    assert all(cell.strip() for row in rows.values() for cell in row.split('|')[1:-1])   # (every column filled)
    assert '## Op times' in text and '| case | ... |' in text


def test_gpu_check_writes_exactly_three_files(tmp_path):
    """The table, the JSON and one tar of the logs (the device lends back at most 8 files)."""
    import gpu_check
    work, out = tmp_path / 'work', tmp_path / 'out'
    (work / 'ours-stylegan3-t' / '00000-run').mkdir(parents=True)
    out.mkdir()
    (work / 'build.log').write_text('compiling\n')
    (work / 'op_bench.json').write_text('{}')
    (work / 'ours-stylegan3-t' / '00000-run' / 'log.txt').write_text('tick 1\n')
    result = _result({'sec_per_kimg': 30.0, 'peak_gpu_mem_gb': 6.5})
    gpu_check.write_outputs(str(out), str(work), result)
    assert sorted(os.listdir(out)) == ['gpu_check.json', 'gpu_check.md', 'gpu_check_logs.tar']
    with tarfile.open(out / 'gpu_check_logs.tar') as tar:
        names = tar.getnames()
        assert json.load(tar.extractfile('result.json'))['run'] == 2
    assert {'build.log', 'op_bench.json', 'ours-stylegan3-t/00000-run/log.txt', 'result.json'} <= set(names)
    assert json.load(open(out / 'gpu_check.json'))['steps']['build']['ok']


def test_nvidia_code_gets_stand_ins_for_what_the_interpreter_lacks(tmp_path):
    """NVIDIA's stylegan3 imports pkg_resources.parse_version and distutils.util.strtobool, which newer
    setuptools and Python lack: where the interpreter cannot import them, stand-ins go on its path."""
    import nvidia_env
    lacking = tmp_path / 'python'
    lacking.write_text(f'#!/bin/sh\ncase "$2" in "import "*) exit 1;; esac\nexec {sys.executable} "$@"\n')
    lacking.chmod(0o755)
    folder = nvidia_env.compat_path(str(lacking), str(tmp_path / 'compat'))
    assert folder == str(tmp_path / 'compat')
    check = ('import sys; sys.path.insert(0, sys.argv[1]); from pkg_resources import parse_version as v; '
             'from distutils.util import strtobool; assert v("1.10") > v("1.9") and strtobool("Yes") == 1; '
             'import pkg_resources, distutils.util; assert pkg_resources.__file__.startswith(sys.argv[1])')
    subprocess.run([sys.executable, '-c', check, folder], check=True)
    assert nvidia_env.compat_path(sys.executable, str(tmp_path / 'none')) in (None, str(tmp_path / 'none'))
    env = nvidia_env.nvidia_env(folder)
    assert env['PYTHONPATH'].split(os.pathsep)[-1] == folder


@pytest.mark.slow
def test_extension_compiles_and_loads_against_cuda_torch():
    """benchmarks/build_ops.py in a side environment whose torch is a CUDA build (no GPU needed)."""
    python = os.environ.get('SG3C_CUDA_PYTHON')
    if not python:
        pytest.skip('set SG3C_CUDA_PYTHON to a Python whose torch is a CUDA build')
    proc = subprocess.run([python, os.path.join(REPO, 'benchmarks', 'build_ops.py')], capture_output=True, text=True,
                          timeout=3000)
    print(proc.stdout[-6000:])   # (shown with -s: the compiler commands and the warning count)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '0 warning line(s)' in proc.stdout and 'loaded sg3c_ops_' in proc.stdout


# ------------------------------------------------------------------ on a GPU

@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_cuda_ops_match_reference_on_random_cases(dtype):
    assert cuda_kernels.load() is None, cuda_kernels.failure()
    rows = op_compare.compare(backend_ops('cuda'), backend_ops('ref'), op_compare.random_cases(12, seed=5),
                              torch.device('cuda'), dtypes=(dtype,))
    assert all(r['ok'] for r in rows), op_compare.format_table(rows)


@pytest.mark.gpu
def test_cuda_ops_are_twice_differentiable_in_float64():
    assert cuda_kernels.load() is None, cuda_kernels.failure()
    check_kernels_twice_differentiable('cuda')


@pytest.mark.gpu
def test_channels_last_and_float16_inputs_keep_their_layout_on_cuda():
    assert cuda_kernels.load() is None, cuda_kernels.failure()
    x = torch.randn([2, 8, 9, 9], device='cuda', dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    f = setup_filter([1, 3, 3, 1], device='cuda')
    y = upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], impl='cuda')
    assert y.dtype == torch.float16 and y.is_contiguous(memory_format=torch.channels_last)
    want = upfirdn2d(x.float(), f, up=2, padding=[2, 1, 2, 1], impl='ref')
    assert (y.float() - want).abs().max() < 1e-2 * want.abs().max()
    z = bias_act(x, torch.ones(8, device='cuda', dtype=torch.float16), act='lrelu', gain=1.0, impl='cuda')
    assert z.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(z.float(), bias_act(x.float() + 1, act='lrelu', gain=1.0, impl='ref'), atol=1e-2)


def _rehearse(out, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', os.path.join(REPO, 'benchmarks', 'gpu_check.sh'), '--rehearse', str(out), *extra],
                          capture_output=True, text=True, timeout=timeout)


def test_gpu_check_rehearses_its_first_steps_on_the_cpu(tmp_path):
    """A reduced rehearsal (the build and the racecheck command, each through the GPU run's own step function)
    writes the three files with every column filled."""
    proc = _rehearse(tmp_path / 'out', '--steps=build,racecheck', timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / 'out')) == ['gpu_check.json', 'gpu_check.md', 'gpu_check_logs.tar']
    result = json.load(open(tmp_path / 'out' / 'gpu_check.json'))
    assert result['environment']['profile'] == 'rehearsal' and result['ops_backend'] == 'ref'
    assert set(result['steps']) == {'build', 'racecheck'} and all(s['ok'] for s in result['steps'].values())
    rows = [r for r in (tmp_path / 'out' / 'gpu_check.md').read_text().splitlines() if r.startswith('| build')
            or r.startswith('| racecheck')]
    assert len(rows) == 2 and all(cell.strip() for r in rows for cell in r.split('|')[1:-1])


@pytest.mark.slow
def test_gpu_check_rehearsal_runs_every_step(tmp_path):
    """The whole rehearsal, both runs, beside NVIDIA's checkout when $SG3C_NVIDIA_REPO names one."""
    extra = []
    if os.environ.get('SG3C_NVIDIA_REPO'):
        extra = [f'--nvidia-repo={os.environ["SG3C_NVIDIA_REPO"]}',
                 f'--nvidia-python={os.environ.get("SG3C_NVIDIA_PYTHON", sys.executable)}']
    start = time.monotonic()
    proc = _rehearse(tmp_path / 'out', *extra, timeout=600)
    print(proc.stdout[-6000:], f'{time.monotonic() - start:.0f} s')
    result = json.load(open(tmp_path / 'out' / 'gpu_check.json'))
    assert list(result['steps']) == [name for _, name in __import__('gpu_check').run_steps((1, 2), None)]
    assert proc.returncode == 0, {k: s.get('ok') for k, s in result['steps'].items()}
