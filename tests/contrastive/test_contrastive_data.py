"""Embedded (image, caption) data: captions describe the rendered pixels; TFDS record mapping."""

import numpy as np
import pytest

from jaxmodels.data import image_text as D


def _mask_of(img, color):
    return np.all(np.abs(img.astype(int) - np.asarray(D.COLORS[color])) < 60, axis=-1)


def test_one_object_caption_names_colour_and_shape():
    _, held_out, task = D.shapes_dataset(40, 40, 32, 3)
    assert len(task.classnames) == 12 and len(task.labels) == 20
    for img, label in zip(task.images, task.labels):
        color, shape = task.classnames[label].split()
        mask = _mask_of(img, color)
        area = mask.sum()
        assert area > 20  # the named colour is painted
        ys, xs = np.nonzero(mask)
        box = (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
        fill = area / box  # square ~1, circle ~pi/4, triangle ~1/2
        expected = {"square": (0.9, 1.01), "circle": (0.65, 0.9), "triangle": (0.4, 0.65)}[shape]
        assert expected[0] <= fill <= expected[1], (shape, fill)


def test_two_object_relation_matches_positions():
    train, _, _ = D.shapes_dataset(60, 2, 32, 4)
    checked = 0
    for img, cap in zip(train.images, train.captions):
        rel = next((r for r in D.RELATIONS if f" {r} " in cap), None)
        if rel is None:  # one object
            continue
        colors = [part.split()[1] for part in cap.split(f" {rel} ")]
        if colors[0] == colors[1]:
            continue
        (y1, x1), (y2, x2) = (np.argwhere(_mask_of(img, c)).mean(0) for c in colors)
        ok = {"left of": x1 < x2, "right of": x1 > x2, "above": y1 < y2, "below": y1 > y2}[rel]
        assert ok, cap
        checked += 1
    assert checked > 10


def test_digits_captions_and_resize():
    train, held_out, task = D.digits_dataset(16, seed=0)
    assert train.images.shape[1:] == (16, 16, 3) and train.images.dtype == np.uint8
    assert len(train.captions) == len(train.images) == 3 * (1797 - len(task.labels))
    assert set(task.classnames) == set(D.DIGIT_NAMES) and len(held_out.captions) == 359
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = D.resize_nearest(grey, 6)
    assert out.shape == (6, 6, 3) and out[5, 5, 0] == grey[2, 3] and out[0, 0, 2] == 0


def test_tfds_record_mapping():
    records = [{"img": np.zeros((4, 4, 3), np.uint8), "caption": b"a cat"}]
    source = D._KeyedSource(records, "img", "caption")
    assert len(source) == 1 and source[0]["text"] == "a cat"
    with pytest.raises(KeyError, match="no field 'text'"):
        D._KeyedSource(records, "img", "text")[0]
