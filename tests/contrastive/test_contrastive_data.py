"""Embedded (image, caption) data: captions describe the rendered pixels; TFDS record mapping."""

import numpy as np
import pytest

from jaxmodels.config import load_config
from jaxmodels.data import digits
from jaxmodels.data import image_text as D
from jaxmodels.data.tokenizers import ByteTokenizer
from jaxmodels.models.contrastive import data as F


def _mask_of(img, color):
    return np.all(np.abs(img.astype(int) - np.asarray(D.COLORS[color])) < 60, axis=-1)


def test_one_object_caption_names_colour_and_shape():
    _, held_out, task = F.shapes_dataset(40, 40, 32, 3)
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
    train, _, _ = F.shapes_dataset(60, 2, 32, 4)
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


def test_shapes_captions_follow_scenes():
    images, scenes = D.render_shapes(6, 16, (0, 0))
    assert images.shape == (6, 16, 16, 3) and [s.relation is None for s in scenes] == [1, 0] * 3
    split, labels = F.shapes_split(6, 16, (0, 0))
    for scene, caption, label in zip(scenes, split.captions, labels):
        if scene.relation is None:
            assert caption in [t.format(F.SHAPE_CLASSES[label]) for t in F.SHAPE_TEMPLATES]
            assert scene.description() == f"a {F.SHAPE_CLASSES[label]}"
        else:
            assert label == -1 and caption == scene.description()


def test_digits_captions():
    train, held_out, task = F.digits_dataset(16, seed=0)
    assert train.images.shape[1:] == (16, 16, 3) and train.images.dtype == np.uint8
    assert len(train.captions) == len(train.images) == 3 * (1797 - len(task.labels))
    assert set(task.classnames) == set(F.DIGIT_NAMES) and len(held_out.captions) == 359
    # the shared digits split: the same held-out images and labels as every other family
    eval_x, eval_y = digits.digits("eval", 0.2, 0)
    np.testing.assert_array_equal(task.labels, eval_y)
    levels = np.rint(task.images[:, ::2, ::2, 0] / 255.0 * digits.LEVELS)
    np.testing.assert_array_equal(levels, eval_x)


def test_tfds_record_mapping():
    records = [{"img": np.zeros((4, 4, 3), np.uint8), "caption": b"a cat"}]
    source = D.TfdsCaptions(records, "img", "caption")
    assert len(source) == 1 and source[0]["captions"] == ["a cat"]
    with pytest.raises(ValueError, match=r"tfds\[0\]: no feature 'text'"):
        D.TfdsCaptions(records, "img", "text")[0]


def test_batches_carry_byte_ids_and_lengths():
    config = load_config("experiments/contrastive/siglip.py:smoke")
    config.data.name = "digits"
    data = F.build(config, ByteTokenizer())
    batch = next(data.train(0, 1))
    L = config.model.text.max_len
    assert batch["text"].shape == (16, L) and batch["text_len"].shape == (16,)
    tok = ByteTokenizer()
    for ids, n in zip(batch["text"], batch["text_len"]):
        assert (ids[n:] == tok.pad_id).all() and (ids[:n] < 256).all()
        assert tok.decode(ids[:n]).split()[-1] in F.DIGIT_NAMES
    assert set(data.zero_shot) == {"digits"}


def test_tfds_builder_crops_and_tokenizes(monkeypatch):
    """The tfds path end to end on in-memory records standing in for a prepared dataset."""
    rng = np.random.default_rng(0)
    records = [
        {"img": rng.integers(0, 255, size=(20, 12, 3), dtype=np.uint8), "cap": f"cat {i}".encode()}
        for i in range(32)
    ]
    monkeypatch.setattr(
        D, "tfds_pairs", lambda name, split, data_dir, i, t: D.TfdsCaptions(records, i, t)
    )
    config = load_config("experiments/contrastive/siglip.py:smoke")
    config.data.update(name="tfds", tfds_name="stand_in", image_key="img", text_key="cap")
    config.data.retrieval_size = 8
    data = F.build(config, ByteTokenizer())
    batch = next(data.eval(0, 1))
    assert batch["image"].shape == (16, 16, 16, 3) and batch["image"].dtype == np.uint8
    assert ByteTokenizer().decode(batch["text"][3][: batch["text_len"][3]]) == "cat 3"
    assert data.retrieval.captions == tuple(f"cat {i}" for i in range(8)) and not data.zero_shot
