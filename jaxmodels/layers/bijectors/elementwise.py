"""Fixed elementwise maps that put dequantised data in [0, 1) into the flow's input space."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.bijectors.base import sum_except_batch


class Shift(nn.Module):
    """y = x + shift (e.g. -0.5 centres [0, 1) data as Glow does), log_det = 0."""

    shift: float = -0.5

    def __call__(self, x, inverse: bool = False):
        y = x - self.shift if inverse else x + self.shift
        return y, jnp.zeros(x.shape[0], jnp.float32)


class Logit(nn.Module):
    """y = logit(alpha + (1 - 2 alpha) x) for x in [0, 1] (RealNVP §4.1, alpha = 0.05),
    log_det = sum log(1 - 2 alpha) - log p - log(1 - p) with p = alpha + (1 - 2 alpha) x."""

    alpha: float = 0.05

    def __call__(self, x, inverse: bool = False):
        a = self.alpha
        if inverse:
            p = jax.nn.sigmoid(x)
            log_det = jnp.log(p) + jnp.log1p(-p) - jnp.log1p(-2 * a)
            return (p - a) / (1 - 2 * a), sum_except_batch(log_det)
        p = a + (1 - 2 * a) * x
        log_det = jnp.log1p(-2 * a) - jnp.log(p) - jnp.log1p(-p)
        return jnp.log(p) - jnp.log1p(-p), sum_except_batch(log_det)
