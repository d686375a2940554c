"""The flows family's data: integer images (digits or the user's files) or 2-D toy points.

Returns ``(x, levels)``: ``x`` uint8 (N, H, W, C) with ``levels`` grey levels per channel
(17 for digits, whose pixels are 0..16; 256 for files), or float32 (N, 2) with ``levels = 0``.
"""

from __future__ import annotations

import numpy as np

from jaxmodels.data import digits, images, toy2d

NAMES = ("digits", "toy2d")


def arrays(d, split: str, seed: int) -> tuple[np.ndarray, int]:
    """``config.data`` -> the ``split`` rows: ``data.path`` (files) wins over ``data.name``."""
    if d.path:
        x = images.load_images(d.path)
        return x[images.split_rows(len(x), split, d.holdout, d.split_seed)], 256
    if d.name == "digits":
        x, _ = digits.digits(split, d.holdout, d.split_seed)
        return x[..., None], digits.LEVELS + 1
    if d.name == "toy2d":
        return toy2d.points(d.toy, d.num_points, seed + (split != "train")), 0
    raise ValueError(f"data.name={d.name!r}: choose one of {NAMES} (or set data.path)")
