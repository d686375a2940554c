"""Images from the user's files: directories of PNG/JPEG, .npy/.npz arrays, clear errors."""

import numpy as np
import pytest
from PIL import Image

from jaxmodels.data import images


def _write_pngs(directory, arrays):
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(directory / f"{i:03d}.png")


def test_directory_of_grey_pngs(tmp_path):
    arrays = [np.full((6, 4), 10 * i, np.uint8) for i in range(3)]
    _write_pngs(tmp_path, arrays)
    (tmp_path / "notes.txt").write_text("ignored")
    x = images.load_images(str(tmp_path))
    assert x.shape == (3, 6, 4, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[..., 0], np.stack(arrays))


def test_directory_mixing_grey_and_colour_is_rgb(tmp_path):
    _write_pngs(tmp_path, [np.zeros((4, 4), np.uint8), np.full((4, 4, 3), 7, np.uint8)])
    x = images.load_images(str(tmp_path))
    assert x.shape == (2, 4, 4, 3)
    assert x[1].min() == 7


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_arrays(tmp_path, suffix):
    a = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    path = str(tmp_path / f"x{suffix}")
    np.save(path, a) if suffix == ".npy" else np.savez(path, images=a)
    np.testing.assert_array_equal(images.load_images(path), a)


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "float.npy"
    np.save(bad, np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="float.npy.*uint8"):
        images.load_images(str(bad))
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy"):
        images.load_images(str(pickled))
    two = tmp_path / "two.npz"
    np.savez(two, a=np.zeros((1, 2, 2), np.uint8), b=np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="two.npz.*one array"):
        images.load_images(str(two))
    with pytest.raises(FileNotFoundError, match="missing"):
        images.load_images(str(tmp_path / "missing.npy"))
    with pytest.raises(ValueError, match="x.txt"):
        (tmp_path / "x.txt").write_text("")
        images.load_images(str(tmp_path / "x.txt"))


def test_directory_errors_name_the_file(tmp_path):
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    _write_pngs(sizes, [np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.uint8)])
    with pytest.raises(ValueError, match="001.png.*differs from 000.png"):
        images.load_images(str(sizes))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="a.png.*cannot decode"):
        images.load_images(str(broken))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .png"):
        images.load_images(str(empty))


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
