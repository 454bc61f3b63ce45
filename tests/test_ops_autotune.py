"""SG3C_OPS=auto's choice between kernel and reference per op and shape class (torch_utils/ops/autotune.py),
on the CPU: real timing of slow and fast stand-ins, the remembered table, capture, and the dispatch."""
import json
import time
import types

import pytest
import torch

from torch_utils.ops import autotune, cuda_kernels, dispatch
from torch_utils.ops.upfirdn2d import upfirdn2d


def fixed_timer(fn):
    """A timer for candidates that return their own duration."""
    return fn()


def test_chooser_keeps_the_faster_and_remembers_it_per_gpu_model(tmp_path):
    path = str(tmp_path / 'autotune.json')
    chooser = autotune.Chooser(path, 'NVIDIA H200', timer=fixed_timer)
    assert chooser.choice('a') is None
    assert chooser.decide('a', lambda: 0.002, lambda: 0.001) == autotune.REFERENCE
    assert chooser.decide('b', lambda: 0.001, lambda: 0.003) == autotune.KERNEL

    def no_timing(fn):
        raise AssertionError('a remembered choice was timed again')

    again = autotune.Chooser(path, 'NVIDIA H200', timer=no_timing)
    assert again.choice('a') == autotune.REFERENCE and again.choice('b') == autotune.KERNEL
    assert autotune.Chooser(path, 'NVIDIA A100', timer=no_timing).choice('a') is None
    # Two processes deciding different classes: both tables survive in the file.
    other = autotune.Chooser(path, 'NVIDIA H200', timer=fixed_timer)
    chooser.decide('c', lambda: 0.001, lambda: 0.002)
    other.decide('d', lambda: 0.005, lambda: 0.002)
    table = json.load(open(path))['NVIDIA H200']
    assert {k: v['choice'] for k, v in table.items()} == {'a': 'ref', 'b': 'kernel', 'c': 'kernel', 'd': 'ref'}
    assert table['a']['kernel_s'] == 0.002 and table['a']['ref_s'] == 0.001


def test_unreadable_table_means_timing_again(tmp_path):
    path = tmp_path / 'autotune.json'
    path.write_text('{"NVIDIA H200": {"a": {"choi')
    chooser = autotune.Chooser(str(path), 'NVIDIA H200', timer=fixed_timer)
    assert chooser.choice('a') is None
    assert chooser.decide('a', lambda: 0.001, lambda: 0.002) == autotune.KERNEL
    assert json.load(open(path))['NVIDIA H200']['a']['choice'] == 'kernel'


def test_shape_class_separates_what_changes_the_speed():
    x = torch.zeros([4, 6, 32, 32])
    key = autotune.shape_class('upfirdn2d', (x, None), dict(up=(2, 2), padding=(1, 1, 1, 1)))
    same = autotune.shape_class('upfirdn2d', (torch.zeros([1, 32, 32, 32]), None), dict(up=(2, 2), padding=(1, 1, 1, 1)))
    assert key == same   # batch x channels 24 and 32: the same power of two
    for other in [(x.half(), None), (torch.zeros([4, 6, 33, 32]), None), (torch.zeros([40, 6, 32, 32]), None),
                  (x.contiguous(memory_format=torch.channels_last), None), (x.clone().requires_grad_(), None),
                  (x, torch.zeros([4]))]:
        assert autotune.shape_class('upfirdn2d', other, dict(up=(2, 2), padding=(1, 1, 1, 1))) != key
    assert autotune.shape_class('upfirdn2d', (x, None), dict(up=(1, 2), padding=(1, 1, 1, 1))) != key
    with torch.no_grad():
        assert autotune.shape_class('upfirdn2d', (x, None), dict(up=(2, 2), padding=(1, 1, 1, 1))) != key


class SlowBackward(torch.autograd.Function):
    """x * 2, whose backward takes 40 ms."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, dy):
        time.sleep(0.04)
        return dy * 2


def test_tuned_kernel_times_for_real_and_steps_aside_where_the_reference_is_faster():
    calls = {'kernel': 0, 'reference': 0}

    def slow_kernel(x, scale=1.0):   # 30 ms against the reference's 10
        calls['kernel'] += 1
        time.sleep(0.03)
        return x * 2 * scale

    def fast_kernel(x, scale=1.0):
        calls['kernel'] += 1
        return x * 2 * scale

    def reference(x, scale=1.0, impl=None):
        assert impl == 'ref'
        calls['reference'] += 1
        time.sleep(0.01)
        return x * 2 * scale

    x = torch.ones([1, 2, 8, 8])
    slow = autotune.Tuned('op', slow_kernel, reference, autotune.Chooser(None, 'cpu', autotune.wall_timer),
                          capturing=lambda: False)
    assert slow(x, scale=3.0) is None   # the reference runs instead
    timed = dict(calls)
    assert timed['kernel'] == timed['reference'] == 2 + autotune.REPEATS   # the check, a warm-up, the timed runs
    assert slow(x, scale=3.0) is None and calls == timed   # remembered: no more timing, no kernel call
    fast = autotune.Tuned('op', fast_kernel, reference, autotune.Chooser(None, 'cpu', autotune.wall_timer),
                          capturing=lambda: False)
    assert torch.equal(fast(x, scale=3.0), x * 6)


def test_timing_includes_the_backward_when_the_call_needs_gradients():
    """A kernel with a slow backward is kept for inference and set aside for training, against a reference
    whose forward takes 10 ms."""
    def reference(x, impl=None):
        time.sleep(0.01)
        return x * 2

    tuned = autotune.Tuned('op', SlowBackward.apply, reference, autotune.Chooser(None, 'cpu', autotune.wall_timer),
                           capturing=lambda: False)
    x = torch.ones([1, 1, 4, 4])
    with torch.no_grad():
        assert tuned(x) is not None
    assert tuned(x.clone().requires_grad_(True)) is None


def no_timing(fn):
    raise AssertionError('timed')


def reference_double(x, dim=1, impl=None):
    return x * 2


def test_a_kernel_that_disagrees_is_set_aside_with_one_warning_line(capfd):
    chooser = autotune.Chooser(None, 'cpu', no_timing)
    wrong = autotune.Tuned('op', lambda x, dim=1: x * 2 + 1e-2, reference_double, chooser, capturing=lambda: False)
    x = torch.ones([8, 3, 4, 4])
    assert wrong(x) is None and wrong(x) is None   # the reference runs; decided once
    err = capfd.readouterr().err
    assert err.count('\n') == 1 and 'disagrees with the reference' in err and 'output off by' in err
    (entry,) = chooser.choices.values()
    assert entry['choice'] == autotune.REFERENCE and 'output' in entry['disagrees']
    # Within float32's tolerance: adopted (timed, and the faster kept).
    close = autotune.Tuned('op', lambda x, dim=1: x * 2 + 1e-5, reference_double,
                           autotune.Chooser(None, 'cpu', fixed_timer_or_zero), capturing=lambda: False)
    assert close(x) is not None


def fixed_timer_or_zero(fn):
    fn()
    return 0.0


class WrongBackward(torch.autograd.Function):
    """x * 2 with the gradient of x * 3."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, dy):
        return dy * 3


def test_a_kernel_with_a_wrong_gradient_is_set_aside_where_gradients_are_needed(capfd):
    chooser = autotune.Chooser(None, 'cpu', fixed_timer_or_zero)
    tuned = autotune.Tuned('op', lambda x, dim=1: WrongBackward.apply(x), reference_double, chooser,
                           capturing=lambda: False)
    x = torch.ones([2, 3, 4, 4])
    with torch.no_grad():
        assert tuned(x) is not None   # inference: the values agree
    assert tuned(x.clone().requires_grad_(True)) is None
    assert 'gradient 0 off by' in capfd.readouterr().err


def test_check_and_timing_run_on_a_slice_of_the_batch():
    seen = []

    def kernel(x, dim=1):
        seen.append(('kernel', x.shape[0]))
        return x * 2

    def reference(x, dim=1, impl=None):
        seen.append(('ref', x.shape[0]))
        return x * 2

    tuned = autotune.Tuned('op', kernel, reference, autotune.Chooser(None, 'cpu', fixed_timer_or_zero),
                           capturing=lambda: False)
    assert tuned(torch.ones([32, 3, 4, 4])).shape[0] == 32
    assert seen[-1] == ('kernel', 32) and {n for _, n in seen[:-1]} == {autotune.SLICE}
    # Along the bias dimension nothing is cut; a batch no larger than the slice is taken whole.
    x = torch.ones([32, 3])
    assert autotune.batch_slice((x,), {'dim': 0})[0] is x
    assert autotune.batch_slice((x[:3],), {})[0].shape[0] == 3
    assert autotune.batch_slice((x,), {'dim': 1})[0].shape[0] == autotune.SLICE


def test_the_reference_running_out_of_memory_means_the_kernel_wins():
    """At StyleGAN3-R 256 px, batch 32, one intermediate of the reference is ~10 GB: an out-of-memory error
    while checking or timing it must not stop the run."""
    for failing_call in (1, 2):   # the check, then the timing's warm-up
        calls = []

        def reference(x, dim=1, impl=None):
            calls.append(1)
            if len(calls) == failing_call:
                raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 10.00 GiB')
            time.sleep(0.005)   # (slower than the kernel, where it runs)
            return x * 2

        chooser = autotune.Chooser(None, 'cpu', autotune.wall_timer)
        tuned = autotune.Tuned('op', lambda x, dim=1: x * 2, reference, chooser, capturing=lambda: False)
        assert tuned(torch.ones([8, 3, 4, 4])) is not None
        (entry,) = chooser.choices.values()
        assert entry['choice'] == autotune.KERNEL
        assert entry['ref_s'] == ('out of memory' if failing_call == 2 else entry['ref_s'])


def test_a_call_during_graph_capture_takes_the_kernel_without_timing():
    def no_timing(fn):
        raise AssertionError('timed during capture')

    chooser = autotune.Chooser(None, 'cpu', no_timing)
    tuned = autotune.Tuned('op', lambda x: x + 1, lambda x, impl=None: x - 1, chooser, capturing=lambda: True)
    assert torch.equal(tuned(torch.zeros(2)), torch.ones(2)) and chooser.choices == {}


def test_auto_backend_hands_out_the_tuned_kernel_and_cuda_the_plain_one(monkeypatch, tmp_path):
    kernel = lambda *a, **k: None   # noqa: E731
    monkeypatch.setattr(cuda_kernels, 'get', lambda op: kernel)
    monkeypatch.setattr(cuda_kernels, 'autotune_path', lambda: str(tmp_path / 'autotune.json'))
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'NVIDIA H200')
    monkeypatch.setattr(dispatch, '_tuned', {})
    fake_cuda = types.SimpleNamespace(device=torch.device('cuda'))
    dispatch.set_backend('auto')
    try:
        tuned = dispatch.kernel_for('upfirdn2d', fake_cuda)
        assert isinstance(tuned, autotune.Tuned) and tuned.kernel is kernel and tuned.reference is upfirdn2d
        assert tuned.chooser.path == str(tmp_path / 'autotune.json')
        assert dispatch.kernel_for('upfirdn2d', fake_cuda) is tuned
        assert dispatch.kernel_for('upfirdn2d', fake_cuda, impl='cuda') is kernel
        assert dispatch.kernel_for('upfirdn2d', torch.zeros(1)) is None
    finally:
        dispatch.set_backend('auto')


@pytest.mark.gpu
def test_auto_choices_are_remembered_beside_the_build():
    assert cuda_kernels.load() is None, cuda_kernels.failure()
    dispatch.set_backend('auto')
    x = torch.randn([2, 4, 32, 32], device='cuda')
    f = torch.ones([4], device='cuda') / 4
    upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1])
    table = json.load(open(cuda_kernels.autotune_path()))[torch.cuda.get_device_name(x.device)]
    assert any(key.startswith('upfirdn2d ') for key in table)
