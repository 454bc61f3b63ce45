"""Minibatch standard deviation within each class (train.py --mbstd-by-class): what it computes, that it
sees the per-class mode collapse that mixed-class groups hide, and that it survives R1 and a snapshot."""
import torch

from networks.discriminator import Discriminator, MinibatchStdLayer
from networks.snapshot import load_snapshot, save_snapshot


def labels(*classes, c_dim=3):
    return torch.eye(c_dim, dtype=torch.float64)[torch.tensor(classes)]


def test_each_sample_gets_the_std_of_its_own_class():
    torch.manual_seed(0)
    x = torch.randn(8, 6, 4, 4, dtype=torch.float64)
    c = labels(0, 1, 0, 2, 1, 0, 0, 1)
    got = MinibatchStdLayer(4, num_channels=2, by_class=True)(x, c)
    assert got.shape == (8, 8, 4, 4) and torch.equal(got[:, :6], x)
    for i in range(8):
        group = x[(c == c[i]).all(dim=1)].reshape(-1, 2, 3 * 16)
        want = ((group - group.mean(0)).square().mean(0) + 1e-8).sqrt().mean(dim=1)   # per feature split
        assert torch.allclose(got[i, 6:, 0, 0], want), i
        assert torch.all(got[i, 6:] == got[i, 6:, :1, :1])                              # constant maps
    assert torch.allclose(got[3, 6:], torch.full_like(got[3, 6:], 1e-4))               # a lone label: no spread


def test_one_label_is_the_plain_layer_over_the_whole_batch():
    x = torch.randn(8, 6, 4, 4, dtype=torch.float64)
    c = labels(*[2] * 8)
    assert torch.allclose(MinibatchStdLayer(4, by_class=True)(x, c), MinibatchStdLayer(8)(x))


def test_per_class_collapse_is_visible_only_within_classes():
    """One image per class, repeated: mixed groups of 4 see the classes differ; within a class, nothing varies."""
    torch.manual_seed(1)
    per_class = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    order = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    x, c = per_class[order], labels(*order.tolist())
    mixed = MinibatchStdLayer(4)(x)[:, -1, 0, 0]
    within = MinibatchStdLayer(4, by_class=True)(x, c)[:, -1, 0, 0]
    assert mixed.min() > 0.5
    assert within.max() < 1e-3
    varied = x + 0.3 * torch.randn_like(x)
    assert MinibatchStdLayer(4, by_class=True)(varied, c)[:, -1].min() > 0.1


def test_without_labels_or_flag_the_layer_is_nvidias():
    x = torch.randn(8, 6, 4, 4)
    plain = MinibatchStdLayer(4)(x)
    assert torch.equal(MinibatchStdLayer(4, by_class=True)(x, None), plain)
    assert torch.equal(MinibatchStdLayer(4)(x, labels(0, 1, 0, 2, 1, 0, 0, 1).float()), plain)


def test_discriminator_with_it_takes_r1_and_a_snapshot(tmp_path):
    torch.manual_seed(0)
    D = Discriminator(c_dim=3, img_resolution=16, img_channels=3, channel_base=64, channel_max=16, num_fp16_res=0,
                      epilogue_kwargs=dict(mbstd_by_class=True))
    img = torch.randn(6, 3, 16, 16, requires_grad=True)
    c = labels(0, 1, 0, 2, 1, 0).float()
    score = D(img, c)
    grad, = torch.autograd.grad(score.sum(), img, create_graph=True)
    grad.square().sum().backward()                       # R1's double backward
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in D.parameters())

    save_snapshot(tmp_path / 'd.pkl', dict(D=D))
    D2 = load_snapshot(tmp_path / 'd.pkl')['D']
    assert D2.b4.mbstd.by_class
    with torch.no_grad():
        assert torch.equal(D2(img, c), D(img, c))
