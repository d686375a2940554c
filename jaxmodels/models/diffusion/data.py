"""The diffusion family's data: the shared digits in [-1, 1] (images), analytic 2-D toy
mixtures (points) or the user's own images (``data.path``), as ``{"image", "label"}`` arrays
for :func:`jaxmodels.data.pipeline.iterator_fn`.

With ``data.dequantize`` the images are uniformly dequantised as the flows family's are
(Theis et al. 2016): integer level x of L becomes z = 2 (x + v) / L - 1, v ~ U[0, 1), a point
of the bin [2x/L - 1, 2(x+1)/L - 1) of width 2/L. The arrays then hold the bins' lower edges
and the loss adds v afresh each step (:func:`bin_width`, :func:`dequantize`), so the model
learns a density whose PF-ODE bits/dim (:mod:`.likelihood`) compare with the flows' on the
same held-out digits.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxmodels.data import digits, toy2d
from jaxmodels.data import images as image_files

NUM_DIGIT_CLASSES = 10  # a class-conditional model adds the null label 10 for guidance
SPLITS = digits.SPLITS  # "train", "eval"


def digits_arrays(
    split: str, size: int = 8, holdout: float = 0.2, dequantize: bool = False
) -> dict[str, np.ndarray]:
    """The shared digits split as (N, size, size, 1) float32 in [-1, 1] plus int32 labels
    (with ``dequantize``, the lower edges 2x/17 - 1 of the levels' bins)."""
    images, labels = digits.digits(split, holdout)
    if dequantize:
        edges = bin_edges(digits.upsample_nearest(images, size), digits.LEVELS + 1)
        return {"image": edges[..., None], "label": labels}
    return {"image": digits.minus_one_to_one(images, size), "label": labels}


def bin_edges(x_int: np.ndarray, levels: int) -> np.ndarray:
    """Lower edges 2x/L - 1 (float32) of the dequantisation bins of integer levels x of L."""
    return x_int.astype(np.float32) * np.float32(2 / levels) - np.float32(1)


def levels(d) -> int:
    """The number of grey levels L of ``config.data``'s images: 256 for the user's files,
    17 for digits; 0 for continuous data (2-D toys)."""
    if d.get("path"):
        return 256
    return digits.LEVELS + 1 if d.name == "digits" else 0


def bin_width(d) -> float:
    """The model-space width 2/L of one dequantisation bin with ``data.dequantize``, else 0."""
    return 2 / levels(d) if d.get("dequantize") and levels(d) else 0.0


def dequantize(edges, width: float, key):
    """A point drawn uniformly in each bin: ``edges + width * v``, v ~ U[0, 1)."""
    return edges + width * jax.random.uniform(key, edges.shape, edges.dtype)


def undo_dequantize(samples, d) -> np.ndarray:
    """Samples of a model trained with ``data.dequantize``, each snapped to the level whose bin
    it falls in and rescaled as without it (x / (L-1) * 2 - 1), the scale the quality metrics
    read; other samples pass unchanged."""
    width = bin_width(d)
    if not width:
        return samples
    top = levels(d) - 1
    x = np.clip(np.floor((np.asarray(samples) + 1) / width), 0, top)
    return (x * (2 / top) - 1).astype(np.float32)


toy2d_mixture = toy2d.mixture  # the analytic 2-D toys (exact log-density known)


def toy2d_arrays(name: str, num: int, seed: int) -> dict[str, np.ndarray]:
    """``num`` points drawn from a toy distribution (labels all 0: unconditional)."""
    return {"image": toy2d.points(name, num, seed), "label": np.zeros(num, np.int32)}


def file_arrays(d, split: str) -> dict[str, np.ndarray]:
    """The user's images (``data.path``, see :mod:`jaxmodels.data.images`) as float32
    (N, H, W, C) in [-1, 1] (x / 127.5 - 1, or the bins' lower edges with
    ``data.dequantize``), the seeded ``data.holdout`` split."""
    x = image_files.load_images(d.path)
    x = x[image_files.split_rows(len(x), split, d.holdout)]
    scaled = bin_edges(x, 256) if d.get("dequantize") else x.astype(np.float32) / 127.5 - 1
    return {"image": scaled, "label": np.zeros(len(x), np.int32)}


def split_arrays(d, split: str, seed: int) -> dict[str, np.ndarray]:
    """``config.data``'s ``split`` ("train" or "eval"; the toys draw a fresh set for eval);
    ``data.path`` (the user's images) wins over ``data.name``."""
    if d.get("path"):
        return file_arrays(d, split)
    if d.name == "digits":
        return digits_arrays(split, d.size, d.holdout, d.get("dequantize", False))
    if d.get("dequantize"):
        raise ValueError(f"data.dequantize=True needs images (digits or data.path), not {d.name!r}")
    if d.name == "toy2d":
        return toy2d_arrays(d.toy, d.num_points, seed + (split != "train"))
    raise ValueError(f"data.name={d.name!r}: choose digits or toy2d")


def example_shape(d) -> tuple[int, ...]:
    """The shape of one example: (size, size, 1) digits, (2,) points, or the files' (H, W, C)."""
    if d.get("path"):
        return image_files.load_images(d.path).shape[1:]
    return (d.size, d.size, 1) if d.name == "digits" else (2,)
