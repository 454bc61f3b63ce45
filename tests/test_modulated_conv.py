"""The networks' modulated convolutions against their defining formulas (NVIDIA's order of operations),
forward, gradient and double-backward, and the CPU glue around them (layouts, in-place passes)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from networks import stylegan2, stylegan3


def per_sample_conv(x, w, **kwargs):
    return torch.cat([F.conv2d(x[i:i + 1], w[i], **kwargs) for i in range(x.shape[0])])


def stylegan3_by_definition(x, w, s, demodulate, padding, input_gain):
    """Normalise w and s to unit RMS, modulate, demodulate, then scale by the input gain, factor by factor."""
    n = x.shape[0]
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    w = w.unsqueeze(0) * s.reshape(n, 1, -1, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    if input_gain is not None:
        w = w * input_gain.reshape(1, 1, -1, 1, 1)
    return per_sample_conv(x, w, padding=padding)


def stylegan2_by_definition(x, w, s, demodulate, padding, noise):
    n = x.shape[0]
    w = w.unsqueeze(0) * s.reshape(n, 1, -1, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    y = per_sample_conv(x, w, padding=padding)
    return y + noise if noise is not None else y


def operands(n, k, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, 6, 6, generator=g, dtype=dtype)
    w = torch.randn(4, 5, k, k, generator=g, dtype=dtype)
    s = torch.randn(n, 5, generator=g, dtype=dtype) + 1
    return x, w, s


@pytest.mark.parametrize('n', [1, 3])
@pytest.mark.parametrize('k', [1, 3])
@pytest.mark.parametrize('demodulate', [True, False])
def test_stylegan3_modulated_conv2d_is_its_definition(n, k, demodulate):
    x, w, s = operands(n, k)
    gain = torch.tensor(0.7, dtype=torch.float64)
    for input_gain in (None, gain):
        want = stylegan3_by_definition(x, w, s, demodulate, k - 1, input_gain)
        got = stylegan3.modulated_conv2d(x, w, s, demodulate=demodulate, padding=k - 1, input_gain=input_gain)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        with torch.no_grad():   # channels-last input: the weights are written in that layout
            got = stylegan3.modulated_conv2d(x.contiguous(memory_format=torch.channels_last), w, s,
                                             demodulate=demodulate, padding=k - 1, input_gain=input_gain)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # float32: within rounding of the definition computed in float64
    x32, w32, s32 = (t.float() for t in (x, w, s))
    got = stylegan3.modulated_conv2d(x32, w32, s32, demodulate=demodulate, padding=k - 1, input_gain=gain.float())
    torch.testing.assert_close(got.double(), stylegan3_by_definition(x, w, s, demodulate, k - 1, gain),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('n', [1, 3])
@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('demodulate', [True, False])
def test_stylegan2_modulated_conv2d_is_its_definition(n, fused, demodulate):
    x, w, s = operands(n, 3, seed=1)
    noise = torch.randn(6, 6, dtype=torch.float64)
    want = stylegan2_by_definition(x, w, s, demodulate, 1, noise)
    got = stylegan2.modulated_conv2d(x, w, s, noise=noise, padding=1, demodulate=demodulate, fused_modconv=fused)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        got = stylegan2.modulated_conv2d(x.contiguous(memory_format=torch.channels_last), w, s, noise=noise,
                                         padding=1, demodulate=demodulate, fused_modconv=fused)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_modulated_convs_are_twice_differentiable():
    """Path-length regularisation differentiates through the generator's gradient."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    s = (torch.randn(2, 2, generator=g, dtype=torch.float64) + 1).requires_grad_(True)
    gain = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    ops = [
        lambda x, w, s, gain: stylegan3.modulated_conv2d(x, w, s, padding=1, input_gain=gain),
        lambda x, w, s, gain: stylegan3.modulated_conv2d(x[:1], w, s[:1], input_gain=gain),
        lambda x, w, s, gain: stylegan2.modulated_conv2d(x, w, s * gain, fused_modconv=True),
        lambda x, w, s, gain: stylegan2.modulated_conv2d(x, w, s * gain, fused_modconv=False),
    ]
    for op in ops:
        assert torch.autograd.gradcheck(op, (x, w, s, gain), fast_mode=True)
        assert torch.autograd.gradgradcheck(op, (x, w, s, gain), fast_mode=True)


def tiny_stylegan2(**kwargs):
    torch.manual_seed(0)
    return stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=64,
                               channel_max=16, **kwargs).eval()


@pytest.mark.parametrize('architecture', ['skip', 'resnet', 'orig'])
def test_stylegan2_runs_channels_last_on_the_cpu(architecture):
    """oneDNN's native layout: the blocks hand channels-last features on (no reorder per convolution, no layout
    copies around the FIR filters), and the image comes out in the usual layout. (The official parity tests
    check the numbers against NVIDIA's NCHW outputs.)"""
    G = tiny_stylegan2(architecture=architecture)
    ws = G.mapping(torch.randn(2, 8), None)
    feats = []
    for res in G.synthesis.block_resolutions:
        getattr(G.synthesis, f'b{res}').register_forward_hook(lambda m, i, out: feats.append(out[0]))
    with torch.no_grad():
        img = G.synthesis(ws, noise_mode='const')
    assert len(feats) == 3 and all(f.is_contiguous(memory_format=torch.channels_last) for f in feats)
    assert img.is_contiguous() and img.shape == (2, 3, 16, 16)


def test_synthesis_layers_leave_no_trace_of_in_place_passes():
    """The in-place bias/activation passes write only into the layers' own temporaries: the same inputs give
    the same image twice, and the inputs themselves are untouched."""
    G = tiny_stylegan2()
    ws = G.mapping(torch.randn(1, 8), None)
    before = ws.clone()
    with torch.no_grad():
        a = G.synthesis(ws, noise_mode='const')
        b = G.synthesis(ws, noise_mode='const')
    assert torch.equal(a, b) and torch.equal(ws, before)
    assert np.isfinite(a.numpy()).all()


def test_stylegan2_upsampling_weights_need_no_layout_copy():
    """Batch 1, channels-last, no autograd: the modulated weights are written in the layout whose [I, O, kh, kw]
    view the transposed convolution takes as it is (no weight-sized copy inside the convolution), and the
    result is the same as with the weights in the usual layout."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 8, 5, 5, generator=g).contiguous(memory_format=torch.channels_last)
    w, s = torch.randn(6, 8, 3, 3, generator=g), torch.rand(1, 8, generator=g) + 0.5
    f = stylegan2.setup_filter([1, 3, 3, 1])
    conv = lambda x, w: stylegan2.modulated_conv2d(x, w, s, up=2, padding=1, resample_filter=f,  # noqa: E731
                                                   flip_weight=False)
    want = conv(x.contiguous(), w)   # autograd enabled, NCHW: the plain path
    for weight in (w, w.contiguous(memory_format=torch.channels_last)):   # (the networks' two weight layouts)
        with torch.no_grad(), torch.profiler.profile(record_shapes=True) as prof:
            got = conv(x, weight)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
        in_conv = [e for e in prof.events() if e.name == 'aten::copy_' and e.input_shapes[:1] == [[8, 6, 3, 3]]
                   and any(p.name == 'aten::_convolution' for p in _ancestors(e))]
        assert not in_conv


def _ancestors(event):
    while event.cpu_parent is not None:
        event = event.cpu_parent
        yield event


def test_kernel_energy_follows_in_place_weight_changes():
    """The per-kernel sums of squares kept between inference calls are recomputed once the weights change,
    and dropped with the weights."""
    from networks import layers
    w = torch.randn(4, 3, 3, 3)
    want = w.double().square().sum(dim=[2, 3])
    with torch.no_grad():
        torch.testing.assert_close(layers.kernel_energy(w), want)
        kept = layers._energies[id(w)][2]
        layers.kernel_energy(w)
        assert layers._energies[id(w)][2] is kept   # not recomputed
        w.mul_(2)
        torch.testing.assert_close(layers.kernel_energy(w), 4 * want)
        pointwise = torch.randn(4, 3, 1, 1)
        torch.testing.assert_close(layers.kernel_energy(pointwise), pointwise.double().square().reshape(4, 3))
    key = id(w)
    del w
    assert key not in layers._energies
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    assert layers.kernel_energy(w).requires_grad   # with autograd: computed afresh, differentiable
