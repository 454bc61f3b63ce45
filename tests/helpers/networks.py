"""Tiny networks for the tests: a snapshot's G, D and G_ema at 16 px in a few kB, what they compute for fixed
inputs (to compare two copies), and a pickle payload that would run code if unpickled."""
import os

import torch

from networks import discriminator, stylegan2, stylegan3


def tiny_networks(family='stylegan2', c_dim=0):
    torch.manual_seed(0)
    if family == 'stylegan2':
        G = stylegan2.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=3,
                                mapping_kwargs=dict(num_layers=2), channel_base=64, channel_max=16)
    else:
        G = stylegan3.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=3,
                                channel_base=128, channel_max=16, num_layers=4, num_critical=1, margin_size=2)
    D = discriminator.Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, channel_base=64, channel_max=16)
    with torch.no_grad():   # make zero-initialised tensors non-trivial so that a dropped tensor shows
        for p in list(G.parameters()) + list(D.parameters()):
            p.add_(torch.randn_like(p) * 0.1)
    return dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs=dict(path='x.zip', resolution=16))


def outputs(data):
    G, D = data['G_ema'], data['D']
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(5))
    c = torch.eye(max(G.c_dim, 1))[:2, :G.c_dim] if G.c_dim else torch.zeros(2, 0)
    with torch.no_grad():
        img = G(z, c, noise_mode='const')
        return img, D(img, c)


class Evil:
    def __reduce__(self):
        return os.system, ('touch PWNED',)
