"""Coupling layers (NICE, RealNVP, Glow) and NICE's diagonal scaling.

A coupling layer keeps the part x_b = b * x and transforms the rest conditioned on it, so its
Jacobian is triangular and the log-determinant is a sum (Dinh et al. 2014, §3.2). The
conditioner network m is any function of x_b; its last layer starts at zero, so every coupling
starts as the identity (Kingma & Dhariwal 2018, §3.3).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.bijectors.base import partition_mask, sum_except_batch

CONDITIONERS = ("mlp", "conv")
SCALES = ("sigmoid", "tanh")
_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")  # LeCun normal, untruncated


class MLPConditioner(nn.Module):
    """m(x_b) for vectors: ``depth`` ReLU layers of ``hidden`` units, then a zero-init linear
    layer to ``features`` (NICE, Dinh et al. 2014, §5.1: five layers of 1000 units)."""

    features: int
    hidden: int = 1000
    depth: int = 5

    @nn.compact
    def __call__(self, x_BxE):
        h = x_BxE
        for i in range(self.depth):
            axes = (None, "mlp") if i == 0 else ("embed", "mlp")
            init = nn.with_logical_partitioning(_INIT, axes)
            h = nn.relu(nn.Dense(self.hidden, kernel_init=init)(h))
        init = nn.with_logical_partitioning(nn.initializers.zeros, ("mlp", None))
        return nn.Dense(self.features, kernel_init=init)(h)


class ConvConditioner(nn.Module):
    """m(x_b) for images: a 3x3 conv to ``hidden`` channels, ``depth`` residual blocks
    (ReLU, 3x3, ReLU, 1x1; RealNVP's residual networks), a 1x1 conv (ReLU before and after),
    then a zero-init 3x3 conv to ``features`` channels whose output is multiplied by a learnt
    exp(3 logs) per channel (logs starting at 0; Glow's ``Conv2dZeros``, which lets the scale
    and shift grow quickly). ``depth`` 0 is Glow's NN() (Kingma & Dhariwal 2018, §3.3 and
    its code: 3x3, ReLU, 1x1, ReLU, zero-init 3x3)."""

    features: int
    hidden: int = 512
    depth: int = 0

    @nn.compact
    def __call__(self, x_BxHxWxC):
        def conv(features, k, out_axis="mlp", init=_INIT):
            init = nn.with_logical_partitioning(init, (None, None, None, out_axis))
            return nn.Conv(features, (k, k), kernel_init=init)

        h = conv(self.hidden, 3)(x_BxHxWxC)
        for _ in range(self.depth):
            h = h + conv(self.hidden, 1)(nn.relu(conv(self.hidden, 3)(nn.relu(h))))
        h = conv(self.hidden, 1)(nn.relu(h))
        out = conv(self.features, 3, None, nn.initializers.zeros)(nn.relu(h))
        return out * jnp.exp(3.0 * self.param("logs", nn.initializers.zeros, (self.features,)))


def _mask(kind: str, event_shape, parity):
    """``partition_mask`` for an int or traced parity (in a scan, the step's index: its
    parity alternates the partition, so identical scanned couplings transform every part)."""
    b = partition_mask(kind, event_shape, 0)
    return jnp.where(parity % 2 == 0, b, 1 - b)


def conditioner(kind: str, features: int, hidden: int, depth: int) -> nn.Module:
    if kind == "mlp":
        return MLPConditioner(features, hidden, depth)
    if kind == "conv":
        return ConvConditioner(features, hidden, depth)
    raise ValueError(f"conditioner {kind!r}: choose one of {CONDITIONERS}")


class AdditiveCoupling(nn.Module):
    """y_b = x_b, y_~b = x_~b + m(x_b): volume preserving, log_det = 0 (NICE eq. 5)."""

    mask: str = "halves"
    parity: int = 0
    net: str = "mlp"
    hidden: int = 1000
    depth: int = 5

    @nn.compact
    def __call__(self, x, inverse: bool = False):
        b = _mask(self.mask, x.shape[1:], self.parity)
        shift = (1 - b) * conditioner(self.net, x.shape[-1], self.hidden, self.depth)(b * x)
        y = x - shift if inverse else x + shift
        return y, jnp.zeros(x.shape[0], jnp.float32)


class AffineCoupling(nn.Module):
    """y_~b = (x_~b + t(x_b)) * exp(log_s(x_b)) (RealNVP eq. 7-9 in the authors' code's order),
    log_det = sum_~b log_s. ``scale`` picks log_s from the conditioner's output h:

    - ``"sigmoid"``: log_s = log sigmoid(h + 2) (Glow's code): s in (0, 1), near 0.88 at the
      start, so a coupling can only contract; safe in Glow because actnorm can expand.
    - ``"tanh"``: log_s = r * tanh(h), r a learnt rescaling per channel starting at 1 (RealNVP's
      code rescales tanh by a learnt factor): s in (exp(-r), exp(r)), so a coupling can expand
      as well as contract, and r can grow.
    """

    mask: str = "checkerboard"
    parity: int = 0
    net: str = "conv"
    hidden: int = 512
    depth: int = 1
    scale: str = "sigmoid"

    @nn.compact
    def __call__(self, x, inverse: bool = False):
        b = _mask(self.mask, x.shape[1:], self.parity)
        out = conditioner(self.net, 2 * x.shape[-1], self.hidden, self.depth)(b * x)
        h, t = jnp.split(out, 2, axis=-1)
        log_s = (1 - b) * self.log_scale(h)
        t = (1 - b) * t
        if inverse:
            return x * jnp.exp(-log_s) - t, -sum_except_batch(log_s)
        return (x + t) * jnp.exp(log_s), sum_except_batch(log_s)

    def log_scale(self, h):
        if self.scale == "sigmoid":
            return jax.nn.log_sigmoid(h + 2.0)
        if self.scale == "tanh":
            return self.param("rescale", nn.initializers.ones, h.shape[-1:]) * jnp.tanh(h)
        raise ValueError(f"coupling scale {self.scale!r}: choose one of {SCALES}")


class DiagonalScaling(nn.Module):
    """y = exp(s) * x with one learnt s per dimension (NICE §3.3), log_det = sum s."""

    @nn.compact
    def __call__(self, x, inverse: bool = False):
        s = self.param("s", nn.initializers.zeros, x.shape[1:])
        log_det = jnp.broadcast_to(s.sum(), x.shape[:1])
        if inverse:
            return x * jnp.exp(-s), -log_det
        return x * jnp.exp(s), log_det
