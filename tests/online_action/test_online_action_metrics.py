"""Per-frame mAP (THUMOS'14 protocol) and mcAP (TVSeries) against scikit-learn and a direct cAP."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from jaxmodels.evaluate import online_action as oa


def _random_frames(seed, n=400, c=22, tie_decimals=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n)
    targets = np.eye(c)[labels]
    scores = rng.random((n, c)) + 0.8 * targets  # informative but imperfect
    if tie_decimals is not None:
        scores = np.round(scores, tie_decimals)  # many tied scores
    return scores, targets


def _direct_cap(labels, scores):
    """cAP written out as in De Geest et al. 2016, one ranked frame at a time (no ties)."""
    labels = labels.astype(bool)
    w = (~labels).sum() / labels.sum()
    tp = fp = 0
    total = 0.0
    for idx in np.argsort(-scores):
        if labels[idx]:
            tp += 1
            total += w * tp / (w * tp + fp)
        else:
            fp += 1
    return total / labels.sum()


@pytest.mark.parametrize("tie_decimals", [None, 1])
def test_average_precision_matches_sklearn(tie_decimals):
    scores, targets = _random_frames(0, tie_decimals=tie_decimals)
    for c in range(scores.shape[1]):
        expected = average_precision_score(targets[:, c], scores[:, c])
        assert oa.average_precision(targets[:, c], scores[:, c]) == pytest.approx(expected, 1e-12)


def test_per_frame_map_follows_thumos_protocol():
    scores, targets = _random_frames(1, tie_decimals=2)
    value, aps = oa.per_frame_map(scores, targets, background=0, ambiguous=21, per_class=True)
    keep = targets[:, 21] != 1
    expected = {c: average_precision_score(targets[keep, c], scores[keep, c]) for c in range(1, 21)}
    assert sorted(aps) == list(range(1, 21))  # background and ambiguous excluded
    for c, ap in expected.items():
        assert aps[c] == pytest.approx(ap, 1e-12)
    assert value == pytest.approx(np.mean(list(expected.values())), 1e-12)
    # Ambiguous frames are dropped: changing their scores changes nothing.
    scores2 = scores.copy()
    scores2[~keep] = np.random.default_rng(5).random(scores2[~keep].shape)
    assert oa.per_frame_map(scores2, targets) == pytest.approx(value, 1e-12)


def test_per_frame_map_skips_classes_without_positives_and_no_ambiguous():
    scores, targets = _random_frames(2, c=6)
    keep = targets[:, 3] != 1  # remove every positive of class 3
    scores, targets = scores[keep], targets[keep]
    value, aps = oa.per_frame_map(scores, targets, ambiguous=None, per_class=True)
    assert sorted(aps) == [1, 2, 4, 5]
    expected = np.mean([average_precision_score(targets[:, c], scores[:, c]) for c in aps])
    assert value == pytest.approx(expected, 1e-12)


def test_calibrated_ap_matches_direct_definition():
    scores, targets = _random_frames(3, n=300, c=5)
    for c in range(5):
        got = oa.calibrated_average_precision(targets[:, c], scores[:, c])
        assert got == pytest.approx(_direct_cap(targets[:, c], scores[:, c]), 1e-12)
    value, caps = oa.calibrated_map(scores, targets, per_class=True)
    assert sorted(caps) == [1, 2, 3, 4]
    assert value == pytest.approx(np.mean([_direct_cap(targets[:, c], scores[:, c]) for c in caps]))


def test_calibrated_ap_equals_ap_when_balanced_and_exceeds_it_when_rare():
    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(50), np.zeros(50)]
    scores = rng.random(100) + 0.5 * labels
    assert oa.calibrated_average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), 1e-12
    )
    labels = np.r_[np.ones(10), np.zeros(90)]
    scores = rng.random(100) + 0.5 * labels
    assert oa.calibrated_average_precision(labels, scores) > average_precision_score(labels, scores)


def test_bad_shapes_and_indices_are_reported():
    with pytest.raises(ValueError, match="N x C"):
        oa.per_frame_map(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="ambiguous=21"):
        oa.per_frame_map(np.zeros((4, 3)), np.eye(3)[[0, 1, 2, 1]])
