"""Image decoding, the evaluation centre crop and the seeded random-resized crop."""

import io

import numpy as np
import pytest
from PIL import Image

from jaxmodels.data import transforms as T


def _encoded(array, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def test_center_crop_keeps_the_central_square():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :10] = image[:, 30:] = (0, 0, 255)  # blue margins outside the central 20x20
    image[:, 10:30] = (255, 0, 0)
    assert T.center_crop_box(40, 20) == (10, 0, 30, 20)
    out = T.eval_image(_encoded(image), 8, "x.png")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[:, 1:-1, 0] > 240).all() and (out[:, 1:-1, 2] < 15).all()


def test_resize_is_antialiased():
    """A 1-px checkerboard shrunk 8x averages to grey (nearest neighbour would keep 0/255)."""
    board = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    out = T.eval_image(np.repeat(board[..., None], 3, -1), 8, "board")
    assert abs(out.astype(float).mean() - 127.5) < 3 and out.std() < 3


@pytest.mark.parametrize("shape", [(30, 50, 3), (50, 30), (31, 31, 1), (9, 70, 4)])
def test_views_are_uint8_rgb_squares(shape):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, shape, dtype=np.uint8)
    for image in (array, _encoded(array if array.shape[-1:] != (1,) else array[..., 0])):
        assert T.eval_image(image, 16, "x").shape == (16, 16, 3)
        out = T.train_image(image, 16, rng, (0.5, 1.0), "x")
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_random_crop_is_seeded_and_inside_the_image():
    boxes = [
        T.random_resized_crop_box(80, 60, np.random.default_rng(s), (0.3, 1.0)) for s in range(200)
    ]
    again = [
        T.random_resized_crop_box(80, 60, np.random.default_rng(s), (0.3, 1.0)) for s in range(200)
    ]
    assert boxes == again and len(set(boxes)) > 150
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= 80 and 0 <= top < bottom <= 60
        w, h = right - left, bottom - top
        assert 0.29 * 4800 <= w * h <= 4800
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    # no draw fits a 100x10 strip: the fallback is its centre at the widest allowed ratio
    assert T.random_resized_crop_box(100, 10, np.random.default_rng(0), (0.9, 1.0)) == (
        43.5,
        0.0,
        56.5,
        10.0,
    )


def test_jpeg_reduced_decoding_matches_full_decoding():
    """A JPEG decoded at a DCT scale that keeps the box >= size is close to the full decode."""
    y, x = np.mgrid[:480, :640]
    smooth = np.stack([x * 255 // 640, y * 255 // 480, (x + y) * 255 // 1120], -1).astype(np.uint8)
    data = _encoded(smooth, "JPEG")
    fast = T.eval_image(data, 64, "x.jpg")
    full = T.crop_resize(Image.open(io.BytesIO(data)).convert("RGB"), (80, 0, 560, 480), 64, "x")
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 2


def test_bad_images_are_named():
    with pytest.raises(T.BadRecord, match=r"shard.tar:key7.*cannot decode"):
        T.eval_image(b"not an image", 8, "shard.tar:key7")
    truncated = _encoded(np.zeros((64, 64, 3), np.uint8), "JPEG")[:200]
    with pytest.raises(T.BadRecord, match="k.jpg"):
        T.train_image(truncated, 8, np.random.default_rng(0), (0.5, 1), "k.jpg")
    with pytest.raises(T.BadRecord, match="uint8"):
        T.eval_image(np.zeros((4, 4), np.float32), 8, "arr")
