"""scikit-learn's 8x8 digits: the one embedded image source every family shares.

The 1797 images ship inside scikit-learn (nothing is downloaded). Pixels are integers 0..16
(17 grey levels). Every family splits them the same way: a fixed random permutation from
``seed``, the first ``holdout`` fraction held out, so "held-out digits" means the same images
in every table of the docs. Families choose their own scaling of the raw levels.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxmodels.data.images import SPLITS, split_rows

__all__ = ["LEVELS", "SPLITS", "digits", "minus_one_to_one", "upsample_nearest"]

LEVELS = 16  # the largest grey level; pixels are integers in 0..LEVELS


@functools.lru_cache(maxsize=1)
def _all() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.uint8), d.target.astype(np.int32)


def digits(split: str, holdout: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(images_Bx8x8, labels_B)`` of ``split``: uint8 grey levels 0..16, int32 labels.

    Args:
      split: ``"train"`` or ``"eval"`` (the held-out rows).
      holdout: fraction of the 1797 images held out for evaluation.
      seed: seeds the permutation that decides which rows are held out.
    """
    images, labels = _all()
    rows = split_rows(len(images), split, holdout, seed)
    return images[rows], labels[rows]


def upsample_nearest(images_BxHxW: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of square images to ``size`` x ``size`` (any dtype)."""
    idx = (np.arange(size) * images_BxHxW.shape[1]) // size
    return images_BxHxW[:, idx][:, :, idx]


def minus_one_to_one(images_BxHxW: np.ndarray, size: int = 8) -> np.ndarray:
    """Grey levels 0..16 as float32 ``(N, size, size, 1)`` images in [-1, 1] (x / 8 - 1),
    nearest-upsampled when ``size`` > 8: the diffusion family's data and the input convention of
    :func:`jaxmodels.evaluate.generative.digits_quality`."""
    if size != images_BxHxW.shape[1]:
        images_BxHxW = upsample_nearest(images_BxHxW, size)
    return images_BxHxW[..., None].astype(np.float32) / np.float32(LEVELS / 2) - np.float32(1)
