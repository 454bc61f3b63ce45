"""The synthetic garment set: deterministic, whole garments on white, and its attributes are recoverable from
the pixels by trivial means (so it carries real signal for training, metrics and edit checks)."""
import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from data import synthetic_garments as sg


@pytest.fixture(scope='module')
def garments():
    return sg.render_garments(240, 64, seed=11)


def test_deterministic_and_well_formed(garments):
    images, attrs = garments
    assert images.shape == (240, 64, 64, 3) and images.dtype == np.uint8 and len(attrs) == 240
    again, attrs2 = sg.render_garments(5, 64, seed=11)
    assert np.array_equal(again, images[:5]) and attrs2 == attrs[:5]
    assert not np.array_equal(sg.render_garments(5, 64, seed=12)[0], images[:5])
    json.dumps(attrs)   # attributes go into dataset.json
    assert {a['class_name'] for a in attrs} == set(sg.CLASSES) and {a['pattern'] for a in attrs} == set(sg.PATTERNS)
    for a in attrs:
        lo, hi = sg.SLEEVE_RANGE[a['class_name']]
        assert a['sleeve_length'] == 0 or lo <= a['sleeve_length'] <= hi
        assert sg.CLASSES[a['class_idx']] == a['class_name'] and sg.COLOUR_NAMES[a['colour_idx']] == a['colour_name']


def test_whole_garment_on_white(garments):
    images, _ = garments
    frame = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    assert (frame == 255).all()                     # nothing touches the border: no sleeve is ever cut off
    coverage = sg.measure_coverage(images)
    assert coverage.min() > 0.08 and coverage.max() < 0.7
    # Anti-aliased: edge pixels take intermediate values between background and garment.
    assert ((images > 0) & (images < 255)).mean() > ((images == 0) | (images == 255)).mean() * 0.1


def test_rerendering_from_attributes(garments):
    images, attrs = garments
    assert np.array_equal(sg.render_garment(attrs[3], 64), images[3])
    # Counterfactual: the same top with longer sleeves measures longer.
    top = next(a for a in attrs if a['class_name'] == 't-shirt')
    extents = [sg.measure_sleeve_extent(sg.render_garment(dict(top, sleeve_length=s), 64)[None])[0]
               for s in (0.0, 0.3, 0.6, 1.0)]
    assert all(b > a for a, b in zip(extents, extents[1:])), extents


def test_colour_recovered(garments):
    images, attrs = garments
    accuracy = (sg.classify_colour(images) == sg.attribute_table(attrs, 'colour_idx')).mean()
    assert accuracy > 0.93, accuracy
    darkness = sg.measure_darkness(images)
    truth = 1 - sg.attribute_table(attrs, 'colour') @ np.array([0.299, 0.587, 0.114]) / 255
    assert spearmanr(darkness, truth)[0] > 0.95


def test_sleeve_length_recovered(garments):
    images, attrs = garments
    cls = sg.attribute_table(attrs, 'class_name')
    sleeved = np.isin(cls, sg.SLEEVED)
    rho = spearmanr(sg.measure_sleeve_extent(images[sleeved]), sg.attribute_table(attrs, 'sleeve_length')[sleeved])[0]
    assert rho > 0.8, rho


def test_class_recovered_by_nearest_centroid(garments):
    images, attrs = garments
    labels = sg.attribute_table(attrs, 'class_idx')
    features = sg.garment_mask(images).reshape(len(images), 16, 4, 16, 4).mean(axis=(2, 4)).reshape(len(images), -1)
    train = np.arange(len(images)) % 2 == 0
    centroids = np.stack([features[train & (labels == c)].mean(0) for c in range(len(sg.CLASSES))])
    predicted = np.argmin(((features[~train, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (predicted == labels[~train]).mean()
    assert accuracy > 0.85, accuracy


def test_pattern_recovered(garments):
    images, attrs = garments
    energy, vertical = sg.measure_pattern_features(images).T
    pattern = sg.attribute_table(attrs, 'pattern')
    solid = pattern == 'solid'
    assert ((energy > 12) == ~solid).mean() > 0.95
    stripes = pattern == 'stripes'
    assert ((vertical[~solid] > 0.75) == stripes[~solid]).mean() > 0.95
