"""The diffusion family's data: the shared digits in [-1, 1] (images) and analytic 2-D toy
mixtures (points), as ``{"image", "label"}`` arrays for :func:`jaxmodels.data.pipeline.iterator_fn`.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxmodels.data import digits
from jaxmodels.samplers import analytic

NUM_DIGIT_CLASSES = 10  # a class-conditional model adds the null label 10 for guidance
SPLITS = digits.SPLITS  # "train", "eval"


def digits_arrays(split: str, size: int = 8, holdout: float = 0.2) -> dict[str, np.ndarray]:
    """The shared digits split as (N, size, size, 1) float32 in [-1, 1] plus int32 labels."""
    images, labels = digits.digits(split, holdout)
    return {"image": digits.minus_one_to_one(images, size), "label": labels}


def toy2d_mixture(name: str) -> analytic.GaussianMixture:
    """The analytic 2-D toy distributions (exact log-density known)."""
    if name == "ring":
        return analytic.ring_mixture(8, radius=2.0, std=0.1)
    if name == "grid":
        means = tuple((float(i), float(j)) for i in (-2, 0, 2) for j in (-2, 0, 2))
        return analytic.GaussianMixture((1.0,) * 9, means, (0.15,) * 9)
    raise ValueError(f"data.toy={name!r}: choose ring or grid")


def toy2d_arrays(name: str, num: int, seed: int) -> dict[str, np.ndarray]:
    """``num`` points drawn from a toy distribution (labels all 0: unconditional)."""
    points = toy2d_mixture(name).sample(jax.random.key(seed), num)
    return {"image": np.asarray(points, np.float32), "label": np.zeros(num, np.int32)}


def split_arrays(d, split: str, seed: int) -> dict[str, np.ndarray]:
    """``config.data``'s ``split`` ("train" or "eval"; the toys draw a fresh set for eval)."""
    if d.name == "digits":
        return digits_arrays(split, d.size, d.holdout)
    if d.name == "toy2d":
        return toy2d_arrays(d.toy, d.num_points, seed + (split != "train"))
    raise ValueError(f"data.name={d.name!r}: choose digits or toy2d")


def example_shape(d) -> tuple[int, ...]:
    """The shape of one example: (size, size, 1) digits or (2,) points."""
    return (d.size, d.size, 1) if d.name == "digits" else (2,)
