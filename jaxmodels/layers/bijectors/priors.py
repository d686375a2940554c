"""Factorised priors p_H(h) = prod_d p(h_d): standard normal and standard logistic (NICE §3.4).

``log_prob`` sums over every axis but the batch; ``sample`` draws at temperature T (the prior's
scale multiplied by T; Glow §5 samples at T < 1 for sharper images).
"""

from __future__ import annotations

import math

import jax

from jaxmodels.layers.bijectors.base import sum_except_batch

PRIORS = ("normal", "logistic")


def log_prob(name: str, z):
    """log p(z) per example, shape (B,)."""
    if name == "normal":
        return sum_except_batch(-0.5 * z**2 - 0.5 * math.log(2 * math.pi))
    if name == "logistic":  # log p(h) = -(softplus(h) + softplus(-h))  (NICE §3.4)
        return sum_except_batch(-jax.nn.softplus(z) - jax.nn.softplus(-z))
    raise ValueError(f"prior {name!r}: choose one of {PRIORS}")


def sample(name: str, key, shape, temperature: float = 1.0):
    """``shape`` draws scaled by ``temperature``."""
    if name == "normal":
        return temperature * jax.random.normal(key, shape)
    if name == "logistic":
        return temperature * jax.random.logistic(key, shape)
    raise ValueError(f"prior {name!r}: choose one of {PRIORS}")
