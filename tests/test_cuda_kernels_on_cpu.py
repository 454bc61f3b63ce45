"""The CUDA kernels' tile code, run on the CPU by the harness (torch_utils/ops/kernel_harness.py), against
the reference ops: the networks' real layer shapes and filters (StyleGAN3-T/-R at 256 and 1024 px,
StyleGAN2's resampling), float32 and float16, forward, gradient and gradient of gradient, through the same
Python autograd layer (cuda_kernels.py), argument handling, plans and specialisations as the GPU build.

This checks indexing, halos, tile boundaries, the 2-bit derivative record and the arithmetic; it cannot
check launch bounds or races (the harness runs a block's threads one after another, phase by phase)."""
import dataclasses
import os
import sys

import numpy as np
import pytest
import torch

from torch_utils.ops import cuda_kernels, dispatch, kernel_harness
from torch_utils.ops.bias_act import bias_act
from torch_utils.ops.filtered_lrelu import filtered_lrelu
from torch_utils.ops.selftest import backend_ops
from torch_utils.ops.upfirdn2d import setup_filter, upfirdn2d

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(REPO, 'benchmarks'))   # last: its inversion.py and metrics.py would shadow the packages
import op_compare  # noqa: E402

from helpers.cuda_kernels import check_kernels_twice_differentiable  # noqa: E402

# float32: summation order only. float16 (kernel, float32 inside) against the float32 reference on the
# same rounded inputs: the output's rounding.
TOL = {torch.float32: 2e-5, torch.float16: 4e-3}


@pytest.fixture(scope='module')
def harness():
    return kernel_harness.build()


@pytest.fixture
def on_harness(harness, monkeypatch):
    """Every op call without impl='ref' runs the kernels' path, over the harness, on CPU tensors."""
    monkeypatch.setattr(dispatch, 'kernel_for', lambda op, x, impl=None: None if impl == 'ref' else cuda_kernels.get(op))
    with cuda_kernels.use_module(harness):
        yield harness


# ------------------------------------------------------------------ the networks' layers

def _small(case: op_compare.Case) -> op_compare.Case:
    """Two channels, one at the 1024 px layers: the real spatial size, a fraction of the CPU time."""
    n = case.shape[2]
    return dataclasses.replace(case, shape=(1, 2 if n < 300 else 1, n, n))


def _wanted(case: op_compare.Case) -> bool:
    """StyleGAN3-R's layers with separable down filters at 1024 px are StyleGAN3-T's kind at the same size
    (and R's own at 256 px): left out to save time."""
    separable_r = case.name.startswith('stylegan3-r') and np.ndim(case.filters.get('fd')) == 1
    return case.op == 'filtered_lrelu' and bool(case.filters) and not (separable_r and '1024px' in case.name)


# One case per kind of StyleGAN3-T/-R layer (factors, padding, filters): the smallest at 256 px, the
# largest at 1024 px (many tiles, the last one partial).
LAYERS = [_small(c) for c in op_compare.network_cases(distinct=True) if _wanted(c)]


def _ambiguous(case: op_compare.Case) -> dict:
    """Per gradient, the samples that depend on a mid sample (upsampled, before the activation) lying
    within rounding of zero or of the clamp: there the kernels' float32 sums and the reference's may take
    different sides of the leaky ReLU or the clamp, and the derivative differs by the slope. Found from the
    mid signal (the margin, 1e-5 of its range, is far above float32 rounding); every other sample must match."""
    x, b, f = op_compare._inputs(case, torch.device('cpu'), torch.float32, torch.float16)
    kw = case.kwargs
    fu, fd = f['fu'], f['fd']
    x = x.requires_grad_(True)
    mid = upfirdn2d(x + b.reshape(1, -1, 1, 1), fu, up=kw['up'], padding=kw['padding'], gain=kw['up'] ** 2, impl='ref')
    v = torch.where(mid > 0, mid, mid * kw['slope']) * kw['gain']
    eps = 1e-5 * mid.abs().max()
    near = ((mid.abs() < eps) | ((v.abs() - kw['clamp']).abs() < eps)).float()
    # The input samples that reach an ambiguous mid sample (the adjoint of the upsampling applied to the mask,
    # with |taps| so that nothing cancels), and the outputs whose footprint holds one.
    mid_abs = upfirdn2d(x, fu.abs(), up=kw['up'], padding=kw['padding'], impl='ref')
    reach_x, = torch.autograd.grad((mid_abs * near).sum(), [x])
    reach_y = upfirdn2d(near, fd.abs(), down=kw['down'], impl='ref')
    return {'grad_x': reach_x > 0, 'grad2': reach_y > 0}


def _check(got: dict, want: dict, dtype: torch.dtype, what: str, ambiguous: dict) -> None:
    """Every sample within tolerance (of the largest magnitude), but for the gradients' samples that hang
    on an ambiguous mid sample (see _ambiguous). The bias gradient sums the input gradient, those samples
    included: it is measured against the sum of the magnitudes it adds up."""
    tol = TOL[dtype]
    for key in want:
        a, b = got[key], want[key]
        assert a.shape == b.shape, f'{what} {key}: shape {list(a.shape)} vs {list(b.shape)}'
        scale = max(b.abs().max().item(), 1e-6)
        if key == 'grad_b':
            scale = max(want['grad_x'].abs().sum([0, 2, 3]).max().item(), 1e-6)
        off = (a - b).abs() > tol * scale
        if key in ambiguous:
            off &= ~ambiguous[key]
        assert torch.isfinite(a).all(), f'{what} {key}: not finite'
        assert not off.any(), f'{what} {key}: {off.sum().item()} of {b.numel()} samples off by more than {tol:g} ' \
                              f'(max {((a - b).abs().max() / scale):.2e})'


@pytest.mark.parametrize('case', LAYERS, ids=[c.name for c in LAYERS])
def test_filtered_lrelu_layers_match_reference(on_harness, case):
    """Forward, gradients (input and bias) and gradient of gradient of one StyleGAN3 layer, float32 and
    float16, with the clamp at a level the unit-variance test signal reaches (so that the clamp bit of the
    record is exercised). The inputs are float16 values in both, so that one reference run (float32)
    serves both."""
    cpu = torch.device('cpu')
    want = op_compare.evaluate(backend_ops('ref')['filtered_lrelu'], case, cpu, torch.float32, rounding=torch.float16)
    ambiguous = _ambiguous(case)
    for dtype in (torch.float32, torch.float16):
        got = op_compare.evaluate(backend_ops('cuda')['filtered_lrelu'], case, cpu, dtype, rounding=torch.float16)
        _check(got, want, dtype, f'{case.name} {dtype}', ambiguous)


def _describe(harness, case: op_compare.Case, dtype: torch.dtype) -> tuple[str, str]:
    """The harness's description (spec, tile, channels per block, shared memory...) of a layer's forward
    and backward launches."""
    n = case.shape[2]
    fu, fd = (torch.tensor(case.filters[k]) for k in ('fu', 'fd'))
    up, down, (px0, px1, py0, py1) = case.kwargs['up'], case.kwargs['down'], case.kwargs['padding']
    mid = n * up + px0 + px1 - fu.shape[-1] + 1
    out = (mid - fd.shape[-1]) // down + 1
    chain = cuda_kernels.Chain((n, n), up, (px0, py0), (fu.shape[-1],) * 2, (mid, mid), down, (0, 0),
                               (fd.shape[-1],) * 2, (out, out))
    x = torch.empty([1, 4, n, n], dtype=dtype, device='meta')
    y = torch.empty([1, 4, out, out], dtype=dtype, device='meta')
    return (harness.describe(x, fu, fd, chain.args(), cuda_kernels.ACT_RECORD),
            harness.describe(y, fd, fu, chain.adjoint().args(), cuda_kernels.ACT_MASKED))


def _spec(harness, case: op_compare.Case, dtype: torch.dtype) -> tuple[str, str]:
    """(forward spec, backward spec) the kernels pick for a layer."""
    forward, backward = _describe(harness, case, dtype)
    return forward.split()[0], backward.split()[0]


def test_every_network_layer_runs_a_specialised_kernel(harness):
    """The layers above run the compile-time specialisations (fixed taps and factors), forward and backward,
    in float32 and float16: the variants the GPU runs are the ones tested here."""
    for case in LAYERS:
        up = case.kwargs['up']
        kind = 'R' if np.ndim(case.filters['fd']) == 2 else 'T'
        for dtype in (torch.float32, torch.float16):
            forward, backward = _spec(harness, case, dtype)
            # (T's layers take, of the tiles of their factor, the one computing the fewest outputs)
            family = {f'{kind}_up{up}'} | ({'T_up2': {'T_up2_40'}, 'T_up4': {'T_up4_40', 'T_up4_56'}}.get(f'{kind}_up{up}', set()))
            assert forward in family, (case.name, forward)
            assert backward in ({f'{kind}_up{up}_adj'} if kind == 'R' or up == 4 else family), (case.name, backward)
        assert _spec(harness, case, torch.float64)[0] == 'Generic'


def _t_layer_at_phase(up: int, shift: int, n: int) -> op_compare.Case:
    """A StyleGAN3-T layer of factor `up` (about three tiles across) with its leading padding moved by `shift`
    (the trailing one by -shift: same sizes), so that the first input sample a tile needs sits at another
    phase of the upsampling grid. Its filters are random taps of the same lengths: the real ones' end taps
    (under 1e-3) would hide a sample missing at a tile's edge below the tolerance."""
    case = next(c for c in LAYERS if c.name.startswith('stylegan3-t') and c.kwargs['up'] == up)
    px0, px1, py0, py1 = case.kwargs['padding']
    padding = [px0 + shift, px1 - shift, py0 + shift, py1 - shift]
    rng = np.random.default_rng(shift)
    filters = {k: rng.uniform(0.1, 1.0, len(v)).tolist() for k, v in case.filters.items()}
    return dataclasses.replace(case, shape=(1, 1, n, n), kwargs={**case.kwargs, 'padding': padding}, filters=filters,
                               name=f'{case.name} at {n}px, padding {padding}')


@pytest.mark.parametrize('up, n, specs', [(2, 64, ('T_up2', 'T_up2')), (2, 72, ('T_up2_40', 'T_up2_40')),
                                          (4, 40, ('T_up4', 'T_up4_adj')), (4, 49, ('T_up4_40', 'T_up4_adj')),
                                          (4, 81, ('T_up4_56', 'T_up4_adj'))])
def test_t_layers_at_every_input_phase(on_harness, up, n, specs):
    """The fixed T tiles (each of them, two or three tiles across) load the most inputs any phase of a tile
    against the input grid needs: the networks' own paddings put every tile at one phase (the one needing a
    sample fewer), so every phase modulo `up` is run here, forward and both gradients."""
    cpu = torch.device('cpu')
    for shift in range(up):
        case = _t_layer_at_phase(up, shift, n)
        assert _spec(on_harness, case, torch.float32) == specs, case.name
        want = op_compare.evaluate(backend_ops('ref')['filtered_lrelu'], case, cpu, torch.float32)
        got = op_compare.evaluate(backend_ops('cuda')['filtered_lrelu'], case, cpu, torch.float32)
        _check(got, want, torch.float32, case.name, _ambiguous(case))


def test_the_tile_is_picked_by_shape(harness):
    """Of the T specialisations that fit a geometry, the one computing the fewest outputs runs: the 36-38
    wide first layers one 40 tile (not 2x2 tiles of 32), 150 wide ones the 32 tile; the up-4 forward's
    148-wide output 4 x 4 tiles of 40 x 37 and its 276-wide one 5 x 6 of 56 x 46 (not 5 x 5 and 9 x 9 of
    32); the 56 x 46 tile and the up-4 adjoint's 32x16 tile opt in to more than the
    default 48 KB of shared memory, within an H100's 227 KB."""
    layers = {c.name: c for c in op_compare.network_cases(distinct=False)}   # (real sizes: 38, 150)
    first, l5, l6, l7 = (layers[f'stylegan3-t 256px {k}'] for k in ('L0', 'L5', 'L6', 'L7'))
    assert _spec(harness, first, torch.float16) == ('T_up2_40', 'T_up2_40')
    assert _spec(harness, l6, torch.float16)[0] == 'T_up2'
    assert _describe(harness, l5, torch.float16)[0].split()[:3:2] == ['T_up4_40', '40x37']
    forward, backward = (d.split() for d in _describe(harness, l7, torch.float16))
    assert forward[0] == 'T_up4_56' and forward[2] == '56x46', forward
    assert backward[0] == 'T_up4_adj' and backward[2] == '32x16', backward
    for described in (forward, backward):
        assert 48 << 10 < int(described[6]) * 4 <= 227 << 10, described


def test_the_record_keeps_two_bits_per_mid_sample(on_harness):
    """filtered_lrelu keeps no full-rate tensor for backward: only the int32 record (16 samples a word), and
    its bits are the reference's (slope side, clamped), every word written once across tile boundaries."""
    case = next(c for c in LAYERS if c.shape[2] > 1000 and c.kwargs['up'] == 2 and np.ndim(c.filters['fd']) == 1)
    n, up, padding = case.shape[2], case.kwargs['up'], case.kwargs['padding']
    fu, fd = (torch.tensor(case.filters[k]) for k in ('fu', 'fd'))
    x = torch.randn([1, 1, n, n], generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    b = torch.tensor([0.1])
    clamp = 1.0
    y = filtered_lrelu(x, fu, fd, b, up=up, down=2, padding=padding, clamp=clamp)
    saved = y.grad_fn.saved_tensors
    mid = upfirdn2d(x.detach() + 0.1, fu, up=up, padding=padding, gain=up ** 2, impl='ref')
    words = (mid.shape[3] + 15) // 16
    record = [t for t in saved if t.dtype == torch.int32]
    assert len(record) == 1 and list(record[0].shape) == [1, 1, mid.shape[2], words]
    assert all(t.numel() < 1000 for t in saved if t.dtype != torch.int32)   # (the filters)
    # The reference's bits, packed the same way.
    v = torch.where(mid > 0, mid, mid * 0.2) * np.sqrt(2)
    bits = (mid <= 0).int() | ((v.abs() > clamp).int() << 1)
    bits = torch.nn.functional.pad(bits, [0, words * 16 - mid.shape[3]]).reshape(1, 1, mid.shape[2], words, 16)
    want = (bits.long() << (2 * torch.arange(16))).sum(-1)
    got = record[0].long() & 0xFFFFFFFF
    # Mid samples within rounding of zero or of the clamp may fall either way; the rest must match.
    ambiguous = (mid.abs() < 1e-5) | ((v.abs() - clamp).abs() < 1e-5)
    ambiguous = torch.nn.functional.pad(ambiguous, [0, words * 16 - mid.shape[3]]).reshape(1, 1, mid.shape[2], words, 16)
    same = (got == want) | ambiguous.any(-1)
    assert same.all(), f'{(~same).sum().item()} record words differ from the reference bits'


# ------------------------------------------------------------------ StyleGAN2's resampling, layouts, fallbacks

SG2 = [  # (input size, up, down, padding): the generator's filter2d / upsampling, the discriminator's downsampling
    (129, 1, 1, 1), (257, 1, 1, 1), (128, 2, 1, [2, 1, 2, 1]), (512, 2, 1, [2, 1, 2, 1]),
    (256, 1, 2, 1), (256, 1, 1, 2), (1024, 1, 2, 1)]


@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16], ids=['fp32', 'fp16'])
def test_stylegan2_resampling_matches_reference(on_harness, dtype, channels_last):
    f = setup_filter([1, 3, 3, 1])   # 4x4, as the networks store it
    for size, up, down, pad in SG2:
        # channels-last: several channels per block (on a smaller image, to keep the time down)
        channels, side = (8, size // 2) if channels_last else (1, size)
        case = op_compare.Case('upfirdn2d', (1, channels, side, side), dict(up=up, down=down, padding=pad),
                               {'f': f.tolist()}, bias=False, channels_last=channels_last, seed=size + up)
        got = op_compare.evaluate(backend_ops('cuda')['upfirdn2d'], case, torch.device('cpu'), dtype)
        want = op_compare.evaluate(backend_ops('ref')['upfirdn2d'], case, torch.device('cpu'), torch.float32,
                                   rounding=dtype)
        _check(got, want, dtype, f'upfirdn2d {size}px up{up} down{down}', {})


def test_channels_last_groups_channels_and_keeps_the_layout(on_harness):
    x = torch.randn([2, 24, 33, 31]).to(torch.float16).contiguous(memory_format=torch.channels_last)
    f = setup_filter([1, 3, 3, 1])
    geom = [2, 2, 1, 1, 2, 2, 64, 68, 1, 1, 0, 0, 64, 68]
    assert ' cb 16 ' in on_harness.describe(x, f, None, geom, cuda_kernels.ACT_NONE)
    y = upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1])
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y.float(), upfirdn2d(x.float(), f, up=2, padding=[2, 1, 2, 1], impl='ref'), atol=3e-3)


def test_calls_without_a_tiled_plan_take_the_direct_kernel(on_harness):
    """A filter too large for any tile in shared memory: one thread per output instead."""
    f = torch.rand([111, 111]) + 0.1
    x = torch.randn([1, 2, 20, 21])
    out = 20 * 3 + 40 - 111 + 1
    geom = [3, 3, 1, 1, 20, 20, out + 1, out, 1, 1, 0, 0, out + 1, out]
    assert on_harness.describe(x, f, None, geom, cuda_kernels.ACT_NONE) == ''
    for pad, flip in (([20, 20, 20, 20], False), ([25, 14, 22, 18], True)):
        y = upfirdn2d(x, f, up=3, padding=pad, flip_filter=flip, gain=2.0)
        assert torch.allclose(y, upfirdn2d(x, f, up=3, padding=pad, flip_filter=flip, gain=2.0, impl='ref'), rtol=1e-4,
                              atol=1e-4)
    fs = torch.rand([111]) + 0.1   # separable, scaled once per axis
    y = upfirdn2d(x, fs, up=4, padding=50, gain=3.0)
    assert torch.allclose(y, upfirdn2d(x, fs, up=4, padding=50, gain=3.0, impl='ref'), rtol=1e-4, atol=1e-4)


def test_random_geometries_through_the_generic_kernel(on_harness):
    """Forward, gradients and gradients of gradients over random shapes, factors (3 too), paddings, flips,
    gains, 1-D/2-D filters and layouts, through the autograd layer: the benchmark's own comparison."""
    rows = op_compare.compare(backend_ops('cuda'), backend_ops('ref'), op_compare.random_cases(10, seed=7),
                              torch.device('cpu'))
    assert all(r['ok'] for r in rows), op_compare.format_table(rows)


def test_the_first_use_self_test_passes_on_the_kernels(on_harness):
    from torch_utils.ops.selftest import agree_with_reference
    assert agree_with_reference(torch.device('cpu')) is None


def test_kernels_are_twice_differentiable_in_float64(on_harness):
    check_kernels_twice_differentiable('cpu')   # (the same check as on a GPU)


# ------------------------------------------------------------------ bias_act

def test_bias_act_gradient_passes_at_the_clamp_as_the_reference(on_harness):
    """torch's clamp lets the gradient through where |y| equals the clamp and stops it beyond; the kernel
    records 'clamped' from the value before clamping, so it does the same (reading it from the output
    could not tell the two apart)."""
    x = torch.tensor([[-3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 0.0, -0.5]] * 3).requires_grad_(True)
    for act, alpha, gain in (('linear', 0.0, 1.0), ('lrelu', 0.5, 2.0), ('relu', 0.0, 1.0)):
        clamp = 2.0 if act != 'lrelu' else 4.0
        dx, = torch.autograd.grad(bias_act(x, act=act, alpha=alpha, gain=gain, clamp=clamp).sum(), x)
        ref, = torch.autograd.grad(bias_act(x, act=act, alpha=alpha, gain=gain, clamp=clamp, impl='ref').sum(), x)
        assert torch.equal(dx, ref), (act, dx[0].tolist(), ref[0].tolist())


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16], ids=['fp32', 'fp16'])
def test_bias_act_matches_reference_in_every_layout(on_harness, dtype):
    gen = torch.Generator().manual_seed(1)
    for shape, dim, cl in (([3, 5, 7, 9], 1, False), ([3, 5, 7, 9], 1, True), ([37, 11], 1, False), ([4, 33], 0, False)):
        x = (torch.randn(shape, generator=gen) * 2).to(dtype)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        b = torch.randn([shape[dim]], generator=gen).to(dtype)
        x.requires_grad_(True)
        y = bias_act(x, b, dim=dim, act='lrelu', clamp=2.5)
        want = bias_act(x.float(), b.float(), dim=dim, act='lrelu', clamp=2.5, impl='ref')
        assert y.stride() == x.stride() and (y.float() - want).abs().max() <= TOL[dtype] * want.abs().max()
        dy = torch.randn(shape, generator=gen).to(dtype)
        dx, = torch.autograd.grad(y, x, dy)
        dx_ref, = torch.autograd.grad(want, x, dy.float())
        assert (dx.float() - dx_ref).abs().max() <= TOL[dtype] * dx_ref.abs().max()
