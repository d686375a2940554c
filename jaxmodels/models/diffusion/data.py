"""The diffusion family's data: the shared digits in [-1, 1] (images), analytic 2-D toy
mixtures (points) or the user's own images (``data.path``), as ``{"image", "label"}`` arrays
for :func:`jaxmodels.data.pipeline.iterator_fn`.
"""

from __future__ import annotations

import numpy as np

from jaxmodels.data import digits, toy2d
from jaxmodels.data import images as image_files

NUM_DIGIT_CLASSES = 10  # a class-conditional model adds the null label 10 for guidance
SPLITS = digits.SPLITS  # "train", "eval"


def digits_arrays(split: str, size: int = 8, holdout: float = 0.2) -> dict[str, np.ndarray]:
    """The shared digits split as (N, size, size, 1) float32 in [-1, 1] plus int32 labels."""
    images, labels = digits.digits(split, holdout)
    return {"image": digits.minus_one_to_one(images, size), "label": labels}


toy2d_mixture = toy2d.mixture  # the analytic 2-D toys (exact log-density known)


def toy2d_arrays(name: str, num: int, seed: int) -> dict[str, np.ndarray]:
    """``num`` points drawn from a toy distribution (labels all 0: unconditional)."""
    return {"image": toy2d.points(name, num, seed), "label": np.zeros(num, np.int32)}


def file_arrays(d, split: str) -> dict[str, np.ndarray]:
    """The user's images (``data.path``, see :mod:`jaxmodels.data.images`) as float32
    (N, H, W, C) in [-1, 1] (x / 127.5 - 1), the seeded ``data.holdout`` split."""
    x = image_files.load_images(d.path)
    x = x[image_files.split_rows(len(x), split, d.holdout)]
    return {"image": x.astype(np.float32) / 127.5 - 1, "label": np.zeros(len(x), np.int32)}


def split_arrays(d, split: str, seed: int) -> dict[str, np.ndarray]:
    """``config.data``'s ``split`` ("train" or "eval"; the toys draw a fresh set for eval);
    ``data.path`` (the user's images) wins over ``data.name``."""
    if d.get("path"):
        return file_arrays(d, split)
    if d.name == "digits":
        return digits_arrays(split, d.size, d.holdout)
    if d.name == "toy2d":
        return toy2d_arrays(d.toy, d.num_points, seed + (split != "train"))
    raise ValueError(f"data.name={d.name!r}: choose digits or toy2d")


def example_shape(d) -> tuple[int, ...]:
    """The shape of one example: (size, size, 1) digits, (2,) points, or the files' (H, W, C)."""
    if d.get("path"):
        return image_files.load_images(d.path).shape[1:]
    return (d.size, d.size, 1) if d.name == "digits" else (2,)
