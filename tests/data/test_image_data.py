"""The one image-data descriptor of the generative families: sources, shapes, levels, the
seeded split (the digits split unchanged), and lazily read folders through grain: every image
once per epoch across processes, resume mid-epoch, bad files named."""

import pickle

import numpy as np
import pytest
from PIL import Image

from jaxmodels.config import load_config
from jaxmodels.data import digits, pipeline
from jaxmodels.data.image_data import data_config, image_data


def _config(**keys):
    d = data_config()
    d.update(keys)
    return d


def _folder(root, sizes, classes=("",), grey=True):
    """Constant images of mixed sizes whose value (5 * i) identifies image i."""
    for i, (h, w) in enumerate(sizes):
        shape = (h, w) if grey else (h, w, 3)
        path = root / classes[i % len(classes)] / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full(shape, 5 * i, np.uint8)).save(path)
    return str(root)


def _sizes(n):
    return [(4 + i % 5, 3 + (2 * i) % 7) for i in range(n)]


@pytest.mark.parametrize("config", ["diffusion/digits.py:smoke", "flows/glow.py:smoke"])
def test_digits_split_at_seed_0_is_the_one_both_families_used(config):
    d = load_config(f"experiments/{config}").data
    held = image_data(d).split("eval")
    # Fingerprint of the held-out digits every family used before the descriptor.
    assert len(held) == 359 and held.labels[:12].tolist() == [6, 6, 6, 2, 5, 6, 6, 2, 2, 1, 1, 9]
    assert int(held.images.astype(np.int64).sum()) == 112711
    np.testing.assert_array_equal(held.images[..., 0], digits.digits("eval", 0.2, 0)[0])


def test_split_seed_is_honoured_and_deterministic():
    a = image_data(_config(split_seed=1))
    train, held = a.split("train"), a.split("eval")
    assert (len(train), len(held)) == (1438, 359)
    seed_0 = image_data(_config())
    assert not np.array_equal(held.images, seed_0.split("eval").images)
    again = image_data(_config(split_seed=1)).split("eval")
    np.testing.assert_array_equal(held.images, again.images)

    def rows(*splits):  # every image of the splits, as sorted rows: a partition check
        x = np.concatenate([s.images.reshape(len(s), -1) for s in splits])
        return x[np.lexsort(x.T)]

    np.testing.assert_array_equal(rows(train, held), rows(*map(seed_0.split, ("train", "eval"))))


def test_descriptors_shapes_levels_classes(tmp_path):
    d = image_data(_config())
    assert (d.source, d.shape, d.levels, d.num_classes) == ("digits", (8, 8, 1), 17, 10)
    big = image_data(_config(image_size=16))
    x = big.split("eval").images
    assert x.shape[1:] == (16, 16, 1) and x.max() == 16
    np.testing.assert_array_equal(x[:, ::2, ::2], d.split("eval").images)  # nearest: exact levels
    toy = image_data(_config(name="toy2d", num_points=64))
    assert (toy.shape, toy.levels, toy.num_classes) == ((2,), 0, 0)
    pts = toy.split("train")
    assert pts.images.shape == (64, 2) and pts.images.dtype == np.float32
    assert not np.array_equal(pts.images, toy.split("eval").images)  # a fresh draw held out

    a = np.random.default_rng(0).integers(0, 256, (10, 6, 5), dtype=np.uint8)
    np.save(tmp_path / "x.npy", a)
    arr = image_data(_config(path=str(tmp_path / "x.npy")))
    assert (arr.source, arr.shape, arr.levels, arr.classes) == ("array", (6, 5, 1), 256, ())
    rgb = image_data(_config(path=str(tmp_path / "x.npy"), image_size=4, channels=3))
    assert rgb.split("train").images[:].shape == (8, 4, 4, 3)

    root = _folder(tmp_path / "f", _sizes(6), classes=("b", "a"), grey=False)
    f = image_data(_config(path=root, image_size=4))
    assert (f.source, f.shape, f.levels, f.classes) == ("folder", (4, 4, 3), 256, ("a", "b"))


def test_config_errors_name_the_key(tmp_path):
    for keys, match in [
        (dict(channels=2), "data.channels=2"),
        (dict(image_size=-1), "data.image_size=-1"),
        (dict(name="mnist"), "data.name='mnist'"),
        (dict(holdout=1.5), "data.holdout=1.5"),
        (dict(channels=3), "data.channels=3: the digits are grey"),
        (dict(path=str(tmp_path / "nope.npy")), "nope.npy"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            image_data(_config(**keys))


def test_folder_of_mixed_sizes_grey_and_rgb(tmp_path):
    root = _folder(tmp_path / "f", _sizes(10))
    with_rgb = tmp_path / "f" / "zz_rgb.png"  # sorted last: the first image stays grey
    Image.fromarray(np.full((5, 5, 3), 250, np.uint8)).save(with_rgb)
    grey = image_data(_config(path=root, image_size=6, holdout=0.5))
    assert grey.shape == (6, 6, 1)
    with pytest.raises(ValueError, match="zz_rgb.png.*colour.*data.channels=3"):
        grey.split("train").images[:]
    colour = image_data(_config(path=root, image_size=6, holdout=0.5, channels=3))
    x = colour.split("train").images[:]
    assert x.shape == (6, 6, 6, 3) and (x == x[..., :1]).all()  # grey read as RGB
    native = image_data(_config(path=root, channels=3, holdout=0.5))
    assert native.shape == (4, 3, 3)  # the first image's size
    with pytest.raises(ValueError, match=r"\.png: size .* differs from .*data.image_size"):
        native.split("train").images[:]


def _records(split, process_index, process_count, batches, state=None):
    it = pipeline.make_iterator(
        split, global_batch_size=4, seed=1, process_index=process_index,
        process_count=process_count,
    )  # fmt: skip
    if state is not None:
        it.set_state(state)
    return [next(it) for _ in range(batches)], it


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_every_image_once_per_epoch_across_processes(tmp_path, process_count):
    root = _folder(tmp_path / "f", _sizes(30), classes=("x", "y"))
    data = image_data(_config(path=root, image_size=5))
    train, held = data.split("train"), data.split("eval")
    assert (len(train), len(held)) == (24, 6)
    seen = []
    for p in range(process_count):
        batches, _ = _records(train, p, process_count, 24 // 4)
        for b in batches:
            assert b["image"].shape == (4 // process_count, 5, 5, 1)
            assert (b["image"] == b["image"][:, :1, :1]).all()  # constant images stay constant
            seen += list(zip(b["image"][:, 0, 0, 0] // 5, b["label"], strict=True))
    ids = [int(i) for i, _ in seen]
    assert sorted(ids) == sorted(int(x[0, 0, 0]) // 5 for x in train.images[:])
    assert len(set(ids)) == 24 and not set(ids) & {int(x[0, 0, 0]) // 5 for x in held.images[:]}
    assert all(label == i % 2 for i, label in seen)  # subfolder x: even images, y: odd


def test_resume_mid_epoch_gives_the_same_next_batches(tmp_path):
    root = _folder(tmp_path / "f", _sizes(30))
    train = image_data(_config(path=root, image_size=5)).split("train")
    _, it = _records(train, 1, 2, 3)  # mid-epoch: 3 of the 6 batches of this process
    state = it.get_state()
    expected = [next(it)["image"] for _ in range(5)]  # into the next epoch
    resumed, _ = _records(train, 1, 2, 5, state=state)
    np.testing.assert_array_equal(np.stack(expected), np.stack([b["image"] for b in resumed]))


def test_bad_file_is_named_when_read(tmp_path):
    root = _folder(tmp_path / "f", _sizes(8))
    (tmp_path / "f" / "003.png").write_bytes(b"broken")
    data = image_data(_config(path=root, image_size=4, holdout=0.25))
    with pytest.raises(ValueError, match="003.png.*cannot decode"):
        _records(data.split("train"), 0, 1, 2)  # 6 training images: every one read


def test_array_split_is_read_lazily_and_pickles_small(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (200, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", a)
    train = image_data(_config(path=str(tmp_path / "x.npy"))).split("train")
    assert len(pickle.dumps(train)) < a.nbytes / 10  # row indices, not the pixels
    copy = pickle.loads(pickle.dumps(train))
    np.testing.assert_array_equal(copy.images[3], train.images[3])
    np.testing.assert_array_equal(train.images[[0, 5]], a[train.images.rows[[0, 5]]])
