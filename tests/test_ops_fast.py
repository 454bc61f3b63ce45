"""The fast CPU paths of the reference ops (polyphase, chunked, in-place) against the plain compositions that define them."""
import math

import numpy as np
import pytest
import torch

import torch_utils.ops.filtered_lrelu as flr
from torch_utils.ops.bias_act import bias_act
from torch_utils.ops.upfirdn2d import ceil_div, upfirdn2d, upsample_window


def composed(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter=False):
    return flr._composed(x, fu, fd, b, up, down, list(padding), gain, slope, clamp, flip_filter)


def random_case(trial):
    rng = np.random.RandomState(trial)
    up, down = int(rng.choice([1, 2, 4])), int(rng.choice([1, 2]))
    ku = int(rng.choice([1, 2, 3, 6])) * up
    fu = None if ku == 1 and trial % 5 == 0 else torch.tensor(rng.rand(ku), dtype=torch.float32)
    kd = int(rng.randint(1, 9))
    fd = [None, torch.tensor(rng.rand(kd), dtype=torch.float32),
          torch.tensor(rng.rand(kd, kd), dtype=torch.float32)][trial % 3]
    n, c, h, w = int(rng.randint(1, 3)), int(rng.randint(1, 24)), int(rng.randint(5, 11)), int(rng.randint(5, 11))
    while True:   # paddings that leave a non-empty output (the composition cannot express empty ones)
        pad = [int(p) for p in rng.randint(-3, 9, size=4)]
        if min(w * up + pad[0] + pad[1], h * up + pad[2] + pad[3]) - ku + 1 >= kd:
            break
    x = torch.tensor(rng.randn(n, c, h, w) * rng.choice([0.1, 10]), dtype=torch.float32)
    b = torch.tensor(rng.randn(c), dtype=torch.float32) if trial % 4 else None
    kw = dict(up=up, down=down, padding=pad, gain=float(rng.choice([1, math.sqrt(2), 3])),
              slope=float(rng.choice([0, 0.2, 1])), clamp=[None, 0.5, 1e4][trial % 3], flip_filter=bool(trial % 2))
    return x, fu, fd, b, kw


def as64(t):
    return None if t is None else t.double()


@pytest.mark.parametrize('trial', range(36))
def test_filtered_lrelu_fast_paths_match_composition(trial, monkeypatch):
    x, fu, fd, b, kw = random_case(trial)
    monkeypatch.setattr(flr, 'CHUNK_BYTES', 1)    # force several chunks (16 channels each) and a remainder
    # float64: the paths must agree to rounding
    expected = composed(x.double(), as64(fu), as64(fd), as64(b), **kw)
    with torch.no_grad():   # chunked, in-place path
        got = flr.filtered_lrelu(x.double(), as64(fu), as64(fd), as64(b), **kw)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    got = flr.filtered_lrelu(x.double().requires_grad_(True), as64(fu), as64(fd), as64(b), **kw)   # autograd path
    torch.testing.assert_close(got.detach(), expected, rtol=1e-10, atol=1e-10)
    # float32 (oneDNN kernels): float error relative to the size of the upsampled intermediate
    scale = float(x.abs().max() + (b.abs().max() if b is not None else 0)) * kw['gain'] * kw['up'] ** 2
    with torch.no_grad():
        got = flr.filtered_lrelu(x, fu, fd, b, **kw)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5 * scale)


def test_filtered_lrelu_clamp_skip_is_exact_at_the_bound():
    """The clamp is skipped only when it provably cannot act: values just above the range must still be clamped."""
    fu = torch.ones(4) / 2   # up=2: each polyphase component sums to 1 per axis (x2 from the op's up gain)
    for peak in (0.99, 1.01):
        x = torch.zeros(1, 3, 6, 6)
        x[:, :, 2:4, 2:4] = peak
        kw = dict(up=2, down=1, padding=[2, 1, 2, 1], gain=1.0, slope=0.2, clamp=4.0)
        with torch.no_grad():
            got = flr.filtered_lrelu(x, fu, None, None, **kw)
        torch.testing.assert_close(got, composed(x, fu, None, None, **kw))
        assert (got.max() > 4.0 - 1e-6) == (peak > 1)


def test_filtered_lrelu_is_double_differentiable_through_fast_path():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    fu, fd = torch.rand(4, dtype=torch.float64), torch.rand(3, 3, dtype=torch.float64)
    op = lambda x: flr.filtered_lrelu(x + 0.01, fu, fd, None, up=4, down=2, padding=[0, 2, 1, 1], clamp=2.0)
    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))


@pytest.mark.parametrize('up,k,p0,p1', [(2, 12, 9, 8), (4, 24, -6, -9), (2, 4, 10, 0), (3, 3, -8, 2), (2, 1, 0, 0), (2, 4, -20, 0)])
def test_upsample_window_keeps_exactly_the_contributing_samples(up, k, p0, p1):
    n = 7
    window = upsample_window(n, up, k, p0, p1)
    x = torch.arange(1.0, n + 1).reshape(1, 1, 1, n)
    f = torch.ones(k)[None, :]
    full = upfirdn2d(x, f, up=(up, 1), padding=[p0, p1, 0, 0])
    if window is None:
        assert full.numel() == 0 or float(full.abs().max()) == 0
        return
    i0, i1, _, _ = window
    # Zeroing the samples outside [i0, i1) must not change the output; each kept edge sample must matter.
    kept = x.clone()
    kept[..., :i0] = 0
    kept[..., i1:] = 0
    torch.testing.assert_close(upfirdn2d(kept, f, up=(up, 1), padding=[p0, p1, 0, 0]), full)
    for i in (i0, i1 - 1):
        poked = x.clone()
        poked[..., i] += 1
        assert not torch.equal(upfirdn2d(poked, f, up=(up, 1), padding=[p0, p1, 0, 0]), full)


@pytest.mark.parametrize('act', ['linear', 'relu', 'lrelu', 'tanh'])
@pytest.mark.parametrize('clamp', [None, 0.5])
def test_bias_act_inference_path_matches_autograd_path(act, clamp):
    torch.manual_seed(3)
    x = torch.randn(2, 5, 4, 4) * 3
    b = torch.randn(5)
    for gain in (None, 1.0, 2.5):
        with torch.no_grad():
            fast = bias_act(x, b, act=act, gain=gain, clamp=clamp)
        slow = bias_act(x.clone().requires_grad_(True), b, act=act, gain=gain, clamp=clamp)
        assert torch.equal(fast, slow.detach())   # same ops in the same order: bit-identical
    with torch.no_grad():
        before = x.clone()
        bias_act(x, None, act=act, clamp=clamp)
    assert torch.equal(x, before)   # never writes into its input


@pytest.mark.parametrize('act', ['linear', 'lrelu', 'tanh'])
def test_bias_act_inplace_overwrites_only_where_allowed(act):
    """inplace=True: the caller's temporary becomes the result (no allocation) on the inference path; with
    autograd, or for activations without an in-place form, x is left alone. Same values every way."""
    torch.manual_seed(4)
    x = torch.randn(2, 5, 4, 4) * 3
    b = torch.randn(5)
    want = bias_act(x, b, act=act, clamp=0.5)
    with torch.no_grad():
        y = x.clone()
        got = bias_act(y, b, act=act, clamp=0.5, inplace=True)
    assert torch.equal(got, want)
    assert (got.data_ptr() == y.data_ptr()) == (act != 'tanh')
    y = x.clone().requires_grad_(True)
    got = bias_act(y, b, act=act, clamp=0.5, inplace=True)
    assert torch.equal(got.detach(), want) and torch.equal(y.detach(), x) and got.data_ptr() != y.data_ptr()


def test_symmetric_padding_filters_without_a_padded_copy():
    """upfirdn2d without upsampling pads through the convolution itself when the padding is symmetric: same
    result as padding first (the definition), for any filter shape."""
    torch.manual_seed(5)
    x = torch.randn(1, 4, 9, 11, dtype=torch.float64)
    for f in (torch.rand(4, 4, dtype=torch.float64), torch.rand(5, dtype=torch.float64)):
        for pad, down in (([1, 1, 2, 2], 1), ([3, 3, 0, 0], 2), ([2, 2, 2, 2], 2)):
            want = upfirdn2d(torch.nn.functional.pad(x, pad), f, down=down)
            torch.testing.assert_close(upfirdn2d(x, f, down=down, padding=pad), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('threads', [1, 2, 4])
def test_chunk_sizes_split_the_work_evenly_between_workers(threads, monkeypatch):
    from torch_utils.ops import cpu_workers
    monkeypatch.setattr(cpu_workers, 'workers', lambda: threads)
    for total, most, align in ((512, 288, 16), (1024, 304, 16), (512, 16, 16), (362, 40, 16), (181, 32, 16),
                               (100, 288, 16), (3, 16, 16), (64, 1, 16)):
        size = cpu_workers.chunk_size(total, most, align)
        count = ceil_div(total, size)
        aligned_most = max(align, most // align * align)
        assert size == total or (size % align == 0 and size <= aligned_most)
        assert count <= ceil_div(ceil_div(total, aligned_most), threads) * threads   # no more chunks than needed
        if total >= threads * align * 2 and total % (threads * align) == 0:
            assert count % threads == 0 and total % size == 0   # every worker the same share
    monkeypatch.setattr(cpu_workers, 'workers', lambda: 2)
    assert cpu_workers.chunk_size(512, 288, 16) == 256   # two of 256, not 288 and 224
