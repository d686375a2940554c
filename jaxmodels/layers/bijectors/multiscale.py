"""Squeeze and multi-scale factor-out (RealNVP, Dinh et al. 2016, §3.5-3.6)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def squeeze(x_BxHxWxC):
    """(B, H, W, C) -> (B, H/2, W/2, 4C): each 2x2 patch becomes 4 channels."""
    b, h, w, c = x_BxHxWxC.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs even height and width, got {h}x{w}")
    x = x_BxHxWxC.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x_BxHxWxC):
    """The inverse of :func:`squeeze`: (B, H, W, 4C) -> (B, 2H, 2W, C)."""
    b, h, w, c4 = x_BxHxWxC.shape
    x = x_BxHxWxC.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, 2 * h, 2 * w, c4 // 4)


class Squeeze(nn.Module):
    """Space-to-depth as a bijector (a permutation: log_det = 0); ``undo`` swaps directions."""

    undo: bool = False

    def __call__(self, x, inverse: bool = False):
        y = unsqueeze(x) if inverse != self.undo else squeeze(x)
        return y, jnp.zeros(x.shape[0], jnp.float32)


class FactorOut(nn.Module):
    """Multi-scale architecture: the first half of the channels leaves the flow here (it is
    modelled by the prior directly, z_i in RealNVP eq. 15) and ``inner`` transforms the rest.
    The output keeps the input's shape, so a whole multi-scale flow maps x to a z of x's shape.
    """

    inner: nn.Module

    def __call__(self, x, inverse: bool = False):
        c = x.shape[-1]
        if c % 2:
            raise ValueError(f"factor-out needs an even number of channels, got {c}")
        z, h = jnp.split(x, 2, axis=-1)
        h, log_det = self.inner(h, inverse=inverse)
        return jnp.concatenate([z, h], axis=-1), log_det
