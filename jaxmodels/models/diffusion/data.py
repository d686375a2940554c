"""The diffusion family's scaling of the shared image data (:mod:`jaxmodels.data.image_data`:
digits, 2-D toy points, the user's arrays or image folders): integer level x of L becomes
x / (L - 1) * 2 - 1 in [-1, 1] (digits: x / 8 - 1, files: x / 127.5 - 1); points pass as they are.

With ``data.dequantize`` the images are uniformly dequantised as the flows family's are
(Theis et al. 2016): level x of L becomes z = 2 (x + v) / L - 1, v ~ U[0, 1), a point of the
bin [2x/L - 1, 2(x+1)/L - 1) of width 2/L. The records then hold the bins' lower edges and the
loss adds v afresh each step (:func:`bin_width`, :func:`dequantize`), so the model learns a
density whose PF-ODE bits/dim (:mod:`.likelihood`) compare with the flows' on the same
held-out digits.
"""

from __future__ import annotations

import jax
import numpy as np


def bin_edges(x_int: np.ndarray, levels: int) -> np.ndarray:
    """Lower edges 2x/L - 1 (float32) of the dequantisation bins of integer levels x of L."""
    return x_int.astype(np.float32) * np.float32(2 / levels) - np.float32(1)


def bin_width(dataset, dequantize: bool) -> float:
    """The model-space width 2/L of one dequantisation bin with ``data.dequantize``, else 0."""
    if not dequantize:
        return 0.0
    if not dataset.levels:
        raise ValueError(
            f"config.data.dequantize=True needs integer images, not {dataset.source!r} points"
        )
    return 2 / dataset.levels


def scale(x, levels: int, width: float) -> np.ndarray:
    """Integer levels as float32 in [-1, 1]: x / (L - 1) * 2 - 1, or the bins' lower edges
    with a dequantisation ``width``; continuous points (``levels`` 0) as float32."""
    if not levels:
        return np.asarray(x, np.float32)
    if width:
        return bin_edges(x, levels)
    return x.astype(np.float32) / np.float32((levels - 1) / 2) - np.float32(1)


def scaled_records(levels: int, width: float):
    """The per-record transform of a split's ``{"image", "label"}`` records (:func:`scale`)."""
    return lambda record: {**record, "image": scale(record["image"], levels, width)}


def dequantize(edges, width: float, key):
    """A point drawn uniformly in each bin: ``edges + width * v``, v ~ U[0, 1)."""
    return edges + width * jax.random.uniform(key, edges.shape, edges.dtype)


def undo_dequantize(samples, levels: int, width: float) -> np.ndarray:
    """Samples of a model trained with ``data.dequantize``, each snapped to the level whose bin
    it falls in and rescaled as without it (x / (L-1) * 2 - 1), the scale the quality metrics
    read; other samples (``width`` 0) pass unchanged."""
    if not width:
        return samples
    x = np.clip(np.floor((np.asarray(samples) + 1) / width), 0, levels - 1)
    return scale(x, levels, 0.0)
