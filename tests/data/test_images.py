"""The readers of the user's images: folders (classes from subfolders), .npy/.npz arrays,
resize/crop, clear errors naming the file."""

import numpy as np
import pytest
from PIL import Image

from jaxmodels.data import images


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.mark.parametrize("hw", [(5, 9), (12, 7), (3, 3), (40, 30), (8, 8)])
@pytest.mark.parametrize("channels", [1, 3])
def test_fit_shapes_and_determinism(hw, channels):
    x = np.random.default_rng(sum(hw)).integers(0, 256, (*hw, 3), dtype=np.uint8)
    a = images.fit(Image.fromarray(x), 8, channels)
    assert a.shape == (8, 8, channels) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, images.fit(Image.fromarray(x), 8, channels))
    assert images.fit(Image.fromarray(x), 0, channels).shape == (*hw, channels)  # 0: as it is


def test_fit_crops_the_centre_and_keeps_constant_images():
    x = np.zeros((8, 16), np.uint8)
    x[:, 4:12] = 200  # the centred 8x8 square
    np.testing.assert_array_equal(images.fit(Image.fromarray(x), 8, 1), 200)
    tall = np.full((30, 11, 3), 77, np.uint8)
    np.testing.assert_array_equal(images.fit(Image.fromarray(tall), 6, 3), 77)


def test_fit_converts_grey_and_rgb():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 255  # pure green: ITU-R 601-2 luma 0.587 * 255
    assert images.fit(Image.fromarray(rgb), 0, 1).ravel()[0] == 150
    grey = np.full((4, 4), 9, np.uint8)
    np.testing.assert_array_equal(images.fit(Image.fromarray(grey), 0, 3), 9)


def test_fit_antialiases_when_shrinking():
    """A 1-pixel checkerboard shrunk 8x averages to mid-grey (nearest would keep 0s or 255s)."""
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    small = images.fit(Image.fromarray(board), 8, 1)
    assert np.abs(small.astype(int) - 128).max() <= 2


def test_list_folder_flat_and_classes(tmp_path):
    flat = tmp_path / "flat"
    for name in ("b.png", "a.JPG", "c.jpeg"):
        _write(flat / name, np.zeros((2, 2), np.uint8))
    (flat / "notes.txt").write_text("ignored")
    (flat / "empty_dir").mkdir()
    files, labels, classes = images.list_folder(str(flat))
    assert files == ("a.JPG", "b.png", "c.jpeg") and classes == () and labels.tolist() == [0] * 3

    nested = tmp_path / "nested"
    _write(nested / "dog" / "1.png", np.zeros((2, 2), np.uint8))
    _write(nested / "cat" / "deeper" / "2.png", np.zeros((2, 2), np.uint8))
    _write(nested / "cat" / "1.png", np.zeros((2, 2), np.uint8))
    _write(nested / ".hidden" / "x.png", np.zeros((2, 2), np.uint8))
    files, labels, classes = images.list_folder(str(nested))
    assert classes == ("cat", "dog")
    assert files == ("cat/1.png", "cat/deeper/2.png", "dog/1.png")
    assert labels.tolist() == [0, 0, 1]


def test_list_folder_errors(tmp_path):
    mixed = tmp_path / "mixed"
    _write(mixed / "top.png", np.zeros((2, 2), np.uint8))
    _write(mixed / "cls" / "x.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="top.png.*both directly and in class subfolders"):
        images.list_folder(str(mixed))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .png"):
        images.list_folder(str(tmp_path / "empty"))


def test_decode_names_a_bad_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="a.png.*cannot decode"):
        images.decode(str(tmp_path / "a.png"))
    truncated = tmp_path / "t.png"
    _write(truncated, np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="t.png.*cannot decode"):
        images.decode(str(truncated))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_arrays(tmp_path, suffix):
    a = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    path = str(tmp_path / f"x{suffix}")
    np.save(path, a) if suffix == ".npy" else np.savez(path, images=a)
    x = images.open_array(path)
    np.testing.assert_array_equal(x, a)
    assert isinstance(x, np.memmap) == (suffix == ".npy")  # .npy rows are read on access
    np.save(tmp_path / "grey.npy", a[..., 0])
    assert images.open_array(str(tmp_path / "grey.npy")).shape == (5, 4, 4, 1)


def test_array_errors_name_the_file(tmp_path):
    bad = tmp_path / "float.npy"
    np.save(bad, np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="float.npy.*uint8"):
        images.open_array(str(bad))
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy"):
        images.open_array(str(pickled))
    two = tmp_path / "two.npz"
    np.savez(two, a=np.zeros((1, 2, 2), np.uint8), b=np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="two.npz.*one array"):
        images.open_array(str(two))
    with pytest.raises(FileNotFoundError, match="missing"):
        images.open_array(str(tmp_path / "missing.npy"))
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="x.txt"):
        images.open_array(str(tmp_path / "x.txt"))


def test_split_rows_is_a_seeded_partition():
    train, held = images.split_rows(50, "train", 0.2, 3), images.split_rows(50, "eval", 0.2, 3)
    assert len(held) == 10 and len(train) == 40
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held])), np.arange(50))
    np.testing.assert_array_equal(held, images.split_rows(50, "eval", 0.2, 3))


def test_save_grid(tmp_path):
    path = str(tmp_path / "grid.png")
    images.save_grid(np.linspace(0, 1, 3 * 4 * 4 * 3).reshape(3, 4, 4, 3), path, nrow=2, scale=2)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (22, 22, 3)  # 2x2 cells of (4 + 1) pixels plus a border, doubled
    assert grid[0, 0].tolist() == [255, 255, 255]  # the white border
    assert grid[2, 2].tolist() == grid[3, 3].tolist() == [0, 2, 4]  # pixel 0, scaled 2x2


def test_a_held_out_split_of_no_example_names_the_key():
    with pytest.raises(
        ValueError, match=r"config.data.holdout=0.01 holds out 0 of the 50 .*>= 0.02"
    ):
        images.split_rows(50, "eval", 0.01)
    with pytest.raises(ValueError, match=r"config.data.holdout=1.0 must be in \(0, 1\)"):
        images.split_rows(50, "train", 1.0)
