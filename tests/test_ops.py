"""Reference ops against direct definitions (NumPy loops) and their fused fast paths against compositions."""
import math

import numpy as np
import pytest
import torch

from torch_utils.cli import UserError
from torch_utils.ops import dispatch
from torch_utils.ops.bias_act import bias_act
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.filtered_lrelu import filtered_lrelu
from torch_utils.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upsample2d


def upfirdn_by_definition(x, f, up, down, pad, flip_filter=False, gain=1.0):
    """Zero-insert, pad/crop, full 2-D convolution keeping only complete overlaps, decimate. NumPy loops."""
    x = np.asarray(x, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    if f.ndim == 1:
        f = np.outer(f, f)
    f = f * gain
    if not flip_filter:
        f = f[::-1, ::-1]   # convolution == correlation with the flipped filter
    n, c, h, w = x.shape
    z = np.zeros([n, c, h * up, w * up])
    z[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    z = np.pad(z, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    z = z[:, :, max(-py0, 0):z.shape[2] - max(-py1, 0), max(-px0, 0):z.shape[3] - max(-px1, 0)]
    kh, kw = f.shape
    out = np.zeros([n, c, z.shape[2] - kh + 1, z.shape[3] - kw + 1])
    for i in range(kh):
        for j in range(kw):
            out += f[i, j] * z[:, :, i:i + out.shape[2], j:j + out.shape[3]]
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize('trial', range(40))
def test_upfirdn2d_matches_definition(trial):
    rng = np.random.RandomState(trial)
    up, down = int(rng.randint(1, 4)), int(rng.randint(1, 4))
    f = rng.randn(int(rng.randint(1, 9))) if trial % 2 else rng.randn(int(rng.randint(1, 6)), int(rng.randint(1, 6)))
    if f.ndim == 2 and f.shape[0] != f.shape[1]:
        f = f[:min(f.shape), :min(f.shape)]
    pad = [int(p) for p in rng.randint(-1, 5, size=4)]
    x = rng.randn(2, 3, int(rng.randint(9, 13)), int(rng.randint(9, 13)))
    flip, gain = bool(trial % 3 == 0), float(rng.uniform(0.5, 3))
    got = upfirdn2d(torch.from_numpy(x), torch.tensor(f, dtype=torch.float32), up=up, down=down, padding=pad,
                    flip_filter=flip, gain=gain)
    f32 = np.asarray(torch.tensor(f, dtype=torch.float32).double())  # filter taps are float32 by contract
    expected = upfirdn_by_definition(x, f32, up, down, pad, flip, gain)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_setup_filter_normalises_and_keeps_long_filters_separable():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and torch.isclose(f.sum(), torch.tensor(1.0))
    g = setup_filter(np.ones(12))
    assert g.shape == (12,) and torch.isclose(g.sum(), torch.tensor(1.0))


def test_up_and_down_sampling_keep_constant_images():
    x = torch.ones(1, 2, 8, 8)
    f = setup_filter([1, 3, 3, 1])
    up = upsample2d(x, f)
    assert up.shape == (1, 2, 16, 16)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.ones(1))   # interior; borders see zero padding
    down = downsample2d(x, f)
    assert down.shape == (1, 2, 4, 4)
    assert torch.allclose(down[:, :, 1:-1, 1:-1], torch.ones(1))


def conv2d_resample_by_definition(x, w, f, up, down, padding, groups, flip_weight):
    """Generic meaning: upsample+pad (zero insertion, filter with gain up^2), convolve, then filter+decimate."""
    fw = f.shape[-1]
    p = [padding] * 4
    if up > 1:
        p = [p[0] + (fw + up - 1) // 2, p[1] + (fw - up) // 2, p[2] + (fw + up - 1) // 2, p[3] + (fw - up) // 2]
    if down > 1:
        p = [p[0] + (fw - down + 1) // 2, p[1] + (fw - down) // 2, p[2] + (fw - down + 1) // 2, p[3] + (fw - down) // 2]
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=p, gain=up ** 2)
    x = torch.nn.functional.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = upfirdn2d(x, f, down=down)
    return x


@pytest.mark.parametrize('up,down,k,groups,flip_weight,padding', [
    (1, 1, 3, 1, True, 1), (2, 1, 3, 1, False, 1), (2, 1, 3, 2, False, 1), (1, 2, 3, 1, True, 1),
    (1, 2, 1, 1, True, 0), (2, 1, 1, 1, False, 0), (2, 2, 3, 1, True, 1), (1, 1, 3, 2, True, 0), (1, 1, 1, 1, True, 2),
])
def test_conv2d_resample_fast_paths_match_definition(up, down, k, groups, flip_weight, padding):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1])
    got = conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight)
    expected = conv2d_resample_by_definition(x, w, f, up, down, padding, groups, flip_weight)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_bias_act_gain_clamp_and_bias_axis():
    x = torch.tensor([[-2.0, 0.5], [3.0, -0.1]])
    b = torch.tensor([1.0, -1.0])
    y = bias_act(x, b, act='lrelu', clamp=1.0)
    expected = torch.nn.functional.leaky_relu(x + b, 0.2) * math.sqrt(2)
    torch.testing.assert_close(y, expected.clamp(-1, 1))
    y = bias_act(x, b, dim=0, act='linear', gain=2)
    torch.testing.assert_close(y, (x + b[:, None]) * 2)


def test_filtered_lrelu_is_the_composition_of_its_parts():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    fu, fd = torch.rand(12), torch.rand(12, 12)
    got = filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=[5, 6, 5, 6], gain=math.sqrt(2), slope=0.2, clamp=0.7)
    y = upfirdn2d(x + b[:, None, None], fu, up=2, padding=[5, 6, 5, 6], gain=4)
    y = (torch.where(y >= 0, y, 0.2 * y) * math.sqrt(2)).clamp(-0.7, 0.7)
    expected = upfirdn2d(y, fd, down=2)
    torch.testing.assert_close(got, expected)
    assert got.shape[-1] == (12 * 2 + 11 - 11 - 11 + 1) // 2


def test_ops_are_twice_differentiable():
    """R1 and path-length regularisation differentiate gradients: gradgradcheck every op."""
    torch.manual_seed(2)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    f = setup_filter([1, 3, 3, 1])
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    fu, fd = torch.rand(8), torch.rand(8)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    ops = [
        lambda x: upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1]),
        lambda x: upfirdn2d(x, f, down=2, padding=1),
        lambda x: conv2d_resample(x, w, f=f, up=2, padding=1),
        lambda x: conv2d_resample(x, w, f=f, down=2, padding=1),
        lambda x: filtered_lrelu(x + 0.01, fu, fd, b, up=2, down=2, padding=[3, 4, 3, 4], clamp=3),
    ]
    for op in ops:
        assert torch.autograd.gradcheck(op, (x,))
        assert torch.autograd.gradgradcheck(op, (x,))


def test_dispatch_selects_reference_on_cpu():
    x = torch.zeros(1)
    previous = dispatch.get_backend()
    try:
        for backend in dispatch.BACKENDS:
            dispatch.set_backend(backend)
            assert dispatch.kernel_for('upfirdn2d', x) is None   # CPU tensors always take the reference path
        with pytest.raises(UserError):
            dispatch.set_backend('fast')
    finally:
        dispatch.set_backend(previous)
