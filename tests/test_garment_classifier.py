"""The garment classifier (metrics/garment_classifier.py) and the fid_garments metric built on it."""
import os

import numpy as np
import pytest
import torch

from metrics.detectors import DETECTORS, DetectorError, load_detector_file, locate_detector
from metrics.frechet import run_fid
from metrics.garment_classifier import (ClassifierFileError, GarmentClassifier, load_garment_classifier,
                                        save_garment_classifier, train_garment_classifier)
from data import synthetic_garments as sg
from metrics.options import MetricContext
from metrics.registry import get_metric
from helpers.metrics_toys import ReplayGenerator, write_image_folder
from helpers.networks import Evil

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), DETECTORS['garments'].bundled)


def _random_model(seed=0):
    torch.manual_seed(seed)
    model = GarmentClassifier(width=8, embed_dim=16)
    with torch.no_grad():
        for name, buf in model.named_buffers():   # non-trivial BatchNorm statistics, so that dropping them would show
            if name.endswith('running_var'):
                buf.uniform_(0.5, 1.5)
            elif name.endswith('running_mean'):
                buf.uniform_(-0.1, 0.1)
    return model.eval()


def test_outputs_shapes_and_any_resolution():
    model = _random_model()
    img = torch.from_numpy(sg.render_garments(3, resolution=64, seed=1)[0]).permute(0, 3, 1, 2)
    probs = model(img)
    assert probs.shape == (3, 6) and torch.allclose(probs.sum(1), torch.ones(3))
    assert model(img, return_features=True).shape == (3, 16)
    small = torch.nn.functional.avg_pool2d(img.float(), 2).round().to(torch.uint8)   # 32x32 is resized to 64
    assert model(small).shape == (3, 6)
    out = model.predict(img)
    assert out['darkness'].shape == (3,) and out['pattern_logits'].shape == (3, 4) and out['colour_logits'].shape == (3, 12)


def test_save_load_round_trip_is_identical(tmp_path):
    model = _random_model()
    save_garment_classifier(str(tmp_path / 'c.pt'), model, meta=dict(note='x'))
    loaded = load_garment_classifier(str(tmp_path / 'c.pt'))
    img = torch.from_numpy(sg.render_garments(4, resolution=64, seed=2)[0]).permute(0, 3, 1, 2)
    assert torch.equal(model(img, return_features=True), loaded(img, return_features=True))
    assert loaded.meta == dict(note='x') and not any(p.requires_grad for p in loaded.parameters())


def test_foreign_files_are_refused_without_running_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / 'evil.pt'
    torch.save({'format': 'garment-classifier-v1', 'config': {}, 'state_dict': {}, 'x': Evil()}, evil, pickle_protocol=2)
    with pytest.raises(ClassifierFileError, match='evil.pt'):
        load_garment_classifier(str(evil))
    assert not (tmp_path / 'PWNED').exists()
    other = tmp_path / 'other.pt'
    torch.save({'weights': torch.zeros(3)}, other)
    with pytest.raises(ClassifierFileError, match='other.pt: not a garment classifier'):
        load_garment_classifier(str(other))
    with pytest.raises(DetectorError, match='other.pt'):   # through the detector loader: the metrics' error type
        load_detector_file(str(other), torch.device('cpu'), DETECTORS['garments'].loader)


@pytest.fixture(scope='module')
def trained():
    # 360 garments, 8 epochs of a narrow network: far from the shipped classifier, far above chance (1/6).
    return train_garment_classifier(num_train=360, num_val=120, epochs=8, batch=32, width=8, embed_dim=32, seed=3, log=None)


def test_training_learns_the_classes(trained):
    model, meta = trained
    assert meta['held_out']['class_accuracy'] > 0.6
    assert meta['held_out']['darkness_mae'] < 0.25


def test_fid_garments_is_registered_and_uses_the_classifier(tmp_path, trained):
    metric = get_metric('fid_garments200_full')
    assert metric is not None and metric.detectors == ('garments',)
    model = trained[0]
    directory = tmp_path / 'det'
    directory.mkdir()
    save_garment_classifier(str(directory / DETECTORS['garments'].filename), model)
    assert locate_detector('garments', detector_dir=str(directory)) == str(directory / DETECTORS['garments'].filename)

    images, attrs = sg.render_garments(48, resolution=32, seed=5)
    data = write_image_folder(str(tmp_path / 'data'), images, [a['class_idx'] for a in attrs])
    opts = MetricContext(G=ReplayGenerator(images), dataset_kwargs=dict(path=data), detector_dir=str(directory),
                         cache=False, progress=False)
    # The generator replays the dataset itself: the Fréchet distance of identical sets is 0 ...
    assert abs(run_fid(opts, max_real=None, num_gen=48, detector='garments')) < 1e-3
    # ... and equals the distance of the classifier's own features for a different set.
    other = sg.render_garments(48, resolution=32, seed=6)[0]
    opts.G = ReplayGenerator(other)
    got = run_fid(opts, max_real=None, num_gen=48, detector='garments')
    from metrics.frechet import frechet_distance
    with torch.no_grad():
        a = model(torch.from_numpy(other).permute(0, 3, 1, 2), return_features=True).double().numpy()
        b = model(torch.from_numpy(images).permute(0, 3, 1, 2), return_features=True).double().numpy()
    want = frechet_distance(a.mean(0), np.cov(a, rowvar=False, bias=True), b.mean(0), np.cov(b, rowvar=False, bias=True))
    assert got > 0.01 and got == pytest.approx(want, rel=1e-3, abs=1e-4)


@pytest.mark.skipif(not os.path.isfile(SHIPPED), reason='the shipped classifier is not there')
def test_shipped_classifier_reads_fresh_garments():
    """Class and pattern both: features blind to patterns would let fid_garments pass plain garments."""
    model = load_garment_classifier(SHIPPED)
    images, attrs = sg.render_garments(240, resolution=64, seed=77)
    with torch.no_grad():
        out = model.predict(torch.from_numpy(images).permute(0, 3, 1, 2))
    assert (out['class_logits'].argmax(1).numpy() == np.asarray([a['class_idx'] for a in attrs])).mean() > 0.9
    assert (out['pattern_logits'].argmax(1).numpy() == np.asarray([a['pattern_idx'] for a in attrs])).mean() > 0.9
