"""Linear separability with a classifier trained on labelled reals (stand-in Inception features)."""
import numpy as np
import pytest
import torch

from metrics.api import calc_metric
from metrics import MetricError
from metrics.standin import save_standin_detectors
from helpers.metrics_toys import random_images, write_image_folder

RED, BLUE = np.array([200, 30, 30]), np.array([30, 30, 200])


class ColourGenerator(torch.nn.Module):
    """w = z; the image is red or blue depending on `rule(w)`, plus noise."""

    def __init__(self, rule, res=16):
        super().__init__()
        self.z_dim = self.w_dim = 4
        self.c_dim, self.num_ws, self.img_resolution, self.img_channels = 0, 1, res, 3
        self.rule = rule
        self.mapping = lambda z, c, **kw: z.unsqueeze(1)
        self.synthesis = self._synthesis

    def _synthesis(self, ws, **kw):
        blue = self.rule(ws[:, 0]).float()[:, None, None, None]
        colour = torch.tensor(RED)[None, :, None, None] * (1 - blue) + torch.tensor(BLUE)[None, :, None, None] * blue
        noise = torch.randn([ws.shape[0], 3, self.img_resolution, self.img_resolution]) * 20
        return ((colour + noise) / 127.5 - 1).float()

    def forward(self, z, c, **kw):
        return self._synthesis(self.mapping(z, c))


@pytest.fixture
def labelled(tmp_path, monkeypatch):
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    det = str(tmp_path / 'det')
    save_standin_detectors(det)
    noise = random_images(40, seed=0).astype(np.int16) // 6 - 21
    labels = [0, 1] * 20
    images = np.clip(np.where(np.array(labels)[:, None, None, None] == 1, BLUE, RED) + noise, 0, 255).astype(np.uint8)
    return write_image_folder(str(tmp_path / 'data'), images, labels=labels), det


def ls(G, data, det):
    return calc_metric('ls400', G, data=data, detector_dir=det, progress=False)['results']


def test_linearly_separable_classes_score_one(labelled):
    result = ls(ColourGenerator(lambda w: w[:, 0] > 0), *labelled)
    assert result['ls400_classifier_acc'] == 1.0
    assert result['ls400_w'] == pytest.approx(1.0, abs=0.05)
    assert result['ls400_z'] == pytest.approx(1.0, abs=0.05)       # w = z here


def test_classes_without_a_separating_hyperplane_score_higher(labelled):
    result = ls(ColourGenerator(lambda w: w[:, 0].abs() > 0.67), *labelled)
    assert result['ls400_w'] > 1.5


def test_separability_needs_labels(tmp_path, monkeypatch):
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    save_standin_detectors(str(tmp_path / 'det'))
    data = write_image_folder(str(tmp_path / 'data'), random_images(10))
    with pytest.raises(MetricError, match='labels'):
        ls(ColourGenerator(lambda w: w[:, 0] > 0), data, str(tmp_path / 'det'))
