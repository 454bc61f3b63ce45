"""synthesis_geometry: the schedule's invariants, and each layer's padding leaves exactly its output grid."""
import pytest
import torch

from networks.stylegan3 import Generator, synthesis_geometry


@pytest.mark.parametrize('res, kwargs', [(64, {}), (32, dict(num_layers=6, num_critical=1, conv_kernel=1,
                                                            use_radial_filters=True, filter_size=4))])
def test_schedule_chains_bands_and_ends_critically_sampled_at_the_image(res, kwargs):
    layers = synthesis_geometry(res, 3, **kwargs)
    num_layers, num_critical = kwargs.get('num_layers', 14), kwargs.get('num_critical', 2)
    assert len(layers) == num_layers + 1 and layers[0].src == layers[0].dst
    for prev, cur in zip(layers, layers[1:]):
        assert cur.src == prev.dst
        assert cur.dst.cutoff >= cur.src.cutoff and cur.dst.rate >= cur.src.rate
    for k, g in enumerate(layers):
        assert g.dst.cutoff < g.dst.stopband <= g.dst.cutoff + g.dst.half_width + 1e-9
        assert g.inner_rate == g.src.rate * g.up == g.dst.rate * g.down
        assert g.critical == (g.dst.rate == 2 * g.dst.cutoff) == (k >= num_layers - num_critical)
        assert g.radial == (kwargs.get('use_radial_filters', False) and not g.critical)
    assert [g.dst.size for g in layers[-2:]] == [res, res] and layers[-1].dst.channels == 3
    assert layers[-1].torgb and layers[-1].kernel == 1 and (layers[-1].up, layers[-1].down) == (1, 1)


def test_every_layer_outputs_its_bands_grid():
    G = Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=16, img_channels=3, channel_base=64, channel_max=8,
                  num_layers=4, num_critical=1, margin_size=3)
    syn = G.synthesis
    ws = torch.randn(2, syn.num_ws, 4)
    x = syn.input(ws[:, 0])
    first = getattr(syn, syn.layer_names[0]).geometry.src
    assert x.shape[1:] == (first.channels, first.size, first.size)
    for name, w in zip(syn.layer_names, ws[:, 1:].unbind(1)):
        layer = getattr(syn, name)
        x = layer(x, w)
        assert x.shape[1:] == (layer.geometry.dst.channels, layer.geometry.dst.size, layer.geometry.dst.size), name
