"""2-D toy densities with a closed-form log-density (Gaussian mixtures), as embedded data."""

from __future__ import annotations

import jax
import numpy as np

from jaxmodels.samplers import analytic

TOYS = ("ring", "grid")


def mixture(name: str) -> analytic.GaussianMixture:
    """``ring``: 8 modes on a circle of radius 2 (std 0.1); ``grid``: 3x3 modes (std 0.15)."""
    if name == "ring":
        return analytic.ring_mixture(8, radius=2.0, std=0.1)
    if name == "grid":
        means = tuple((float(i), float(j)) for i in (-2, 0, 2) for j in (-2, 0, 2))
        return analytic.GaussianMixture((1.0,) * 9, means, (0.15,) * 9)
    raise ValueError(f"toy {name!r}: choose one of {TOYS}")


def points(name: str, num: int, seed: int) -> np.ndarray:
    """``num`` float32 draws (num, 2) from toy ``name``."""
    return np.asarray(mixture(name).sample(jax.random.key(seed), num), np.float32)
