"""Image decoding and the crops every image family trains and evaluates on (Pillow, uint8 HWC).

- :func:`open_image`: encoded bytes (JPEG/PNG/WebP/...) or a uint8 array -> a Pillow image;
  an undecodable input raises :class:`BadRecord` naming where it came from.
- :func:`center_crop_box`: the evaluation crop, the central square (CLIP's preprocessing:
  resize the shorter side to ``size``, then crop the centre ``size`` x ``size``).
- :func:`random_resized_crop_box`: the training crop of Szegedy et al. (2015, Sec. 6): a box of
  a random share of the area (``scale``) and a random aspect ratio (log-uniform in ``ratio``).
- :func:`crop_resize`: cuts a box out and resizes it to ``size`` x ``size`` with an antialiased
  bicubic filter (Pillow's resampling widens the kernel when it shrinks); JPEGs are decoded at
  the smallest DCT scale (1/2, 1/4, 1/8) that still leaves the box at least ``size`` pixels.

The random crop draws from the ``np.random.Generator`` it is given; grain seeds that per
(seed, position in the stream), so a resumed run crops exactly as the uninterrupted one.
"""

from __future__ import annotations

import io
import math

import numpy as np

Box = tuple[float, float, float, float]  # (left, top, right, bottom) in pixels
CROP_RATIO = (3 / 4, 4 / 3)  # aspect-ratio range of the random crop (Szegedy et al., 2015)
# OpenAI CLIP's per-channel statistics of pixels in [0, 1] (Radford et al., 2021, released
# preprocessing; transformers' OPENAI_CLIP_MEAN / _STD), also BLIP's (its BlipImageProcessor)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class BadRecord(ValueError):
    """A record that cannot be used: an undecodable image, a missing or non-string caption.

    The message names where the record came from (shard and member, table row, TFDS index).
    Image-text pipelines raise it, or skip and count the record when ``data.skip_bad`` is on.
    """


def open_image(image, where: str):
    """A Pillow image, converted to RGB, from encoded bytes or a uint8 (H, W[, 1|3|4]) array."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, bytes | bytearray | memoryview):
        try:
            img = Image.open(io.BytesIO(image))
            if img.format != "JPEG":  # a JPEG is decoded later, after draft() picks its scale
                img.load()
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise BadRecord(f"{where}: cannot decode the image ({e})") from e
        return img
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or array.shape[-1:] == (2,):
        raise BadRecord(
            f"{where}: expected a uint8 (H, W[, C]) image, got {array.dtype}{array.shape}"
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array)


def center_crop_box(width: int, height: int) -> Box:
    """The central square of side ``min(width, height)``."""
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def random_resized_crop_box(
    width: int, height: int, rng: np.random.Generator, scale=(0.08, 1.0), ratio=CROP_RATIO
) -> Box:
    """A box covering ``scale`` of the area with aspect ratio (w/h) log-uniform in ``ratio``.

    Ten draws; if none fits inside the image, the whole image cropped to the nearest allowed
    aspect ratio (the procedure torchvision's ``RandomResizedCrop`` also follows).
    """
    area, log_ratio = width * height, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    aspect = min(max(width / height, ratio[0]), ratio[1])
    if width / height < aspect:
        w, h = width, min(height, round(width / aspect))
    else:
        w, h = min(width, round(height * aspect)), height
    left, top = (width - w) / 2, (height - h) / 2
    return left, top, left + w, top + h


def crop_resize(img, box: Box, size: int, where: str) -> np.ndarray:
    """uint8 (size, size, 3): ``box`` of the image resized with antialiased bicubic filtering."""
    from PIL import Image

    width, height = img.size
    if img.format == "JPEG":  # decode at a reduced DCT scale where the box stays >= size
        shrink = min(box[2] - box[0], box[3] - box[1]) / size
        img.draft("RGB", (math.ceil(width / shrink), math.ceil(height / shrink)))
    try:
        img = img.convert("RGB")
    except OSError as e:  # a truncated or corrupt file surfaces here, at decoding
        raise BadRecord(f"{where}: cannot decode the image ({e})") from e
    sx, sy = img.size[0] / width, img.size[1] / height
    box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC, box=box))


def eval_image(image, size: int, where: str) -> np.ndarray:
    """The evaluation view: the centre square, resized (antialiased) to ``size``."""
    img = open_image(image, where)
    return crop_resize(img, center_crop_box(*img.size), size, where)


def train_image(image, size: int, rng: np.random.Generator, scale, where: str) -> np.ndarray:
    """The training view: a seeded random-resized crop of ``scale`` of the area."""
    img = open_image(image, where)
    return crop_resize(img, random_resized_crop_box(*img.size, rng, scale), size, where)
