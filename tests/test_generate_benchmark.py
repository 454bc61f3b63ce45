"""benchmarks/generate.py counts exactly the networks' own convolutions (not the FIR filters' per-channel ones)."""
import os
import sys

import pytest
import torch

from networks import stylegan2, stylegan3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(REPO, 'benchmarks'))   # last: its inversion.py and metrics.py would shadow the packages
import generate as bench  # noqa: E402


def tiny(family):
    torch.manual_seed(0)
    if family == 'stylegan2':
        G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=64,
                                channel_max=16)
        convs = sum(hasattr(b, 'conv0') + 1 + hasattr(b, 'torgb')
                    for b in (getattr(G.synthesis, f'b{r}') for r in G.synthesis.block_resolutions))
        return G, convs
    G = stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256,
                            channel_max=16, num_layers=3, num_critical=1, margin_size=2, conv_kernel=1,
                            use_radial_filters=True)
    return G, len(G.synthesis.layer_names)


@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3'])
def test_the_conv_share_counts_the_networks_convolutions_only(family):
    G, convs = tiny(family)
    z = torch.randn(1, 8)
    with torch.inference_mode(), torch.profiler.profile(record_shapes=True) as prof:
        G(z, None, noise_mode='const')
    events = [e for e in prof.events() if e.name in bench.CONV_OPS]
    counted = [e for e in events if bench.is_network_conv(e)]
    assert len(counted) == convs                  # every modulated and ToRGB convolution, once
    assert len(events) > len(counted)             # the filters' per-channel convolutions ran, and are left out
    assert all(e.input_shapes[1][1] == 1 for e in events if e not in counted)
    seconds, share = bench.time_convolutions(G, z, calls=1)
    assert 0 < seconds and 0 < share <= 1
