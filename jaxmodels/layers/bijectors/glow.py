"""Glow's actnorm, invertible 1x1 convolution and step of flow (Kingma & Dhariwal 2018).

Actnorm and the 1x1 convolution act on the last (channel) axis of (B, ..., C) at every spatial
position, so their log-determinants are (number of positions) x (a per-channel term).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from jaxmodels.layers.bijectors.base import Chain
from jaxmodels.layers.bijectors.coupling import AffineCoupling


def _positions(x) -> int:
    return int(np.prod(x.shape[1:-1]))


class ActNorm(nn.Module):
    """y = (x + bias) * exp(logs) per channel (Glow Table 1, row 1), log_det = HW sum logs.

    Data-dependent initialisation (Glow §3.1): the first ``init`` call sets bias = -mean and
    logs = -log(std + eps) of that batch's channels, so its output has zero mean and unit
    variance per channel. Initialise with a real data batch, forward.

    As in Glow's code, the parameter is logs / ``logscale_factor`` (3 there), so Adam's steps,
    about one learning rate each, move logs that many times faster: a flow must grow its
    scales by several nats during training (NICE's scaling layer, where this is its S).
    """

    eps: float = 1e-6
    logscale_factor: float = 3.0

    @nn.compact
    def __call__(self, x, inverse: bool = False):
        axes = tuple(range(x.ndim - 1))
        bias = self.param("bias", lambda _: -x.mean(axes))
        k = self.logscale_factor
        logs = k * self.param("logs", lambda _: -jnp.log(x.std(axes) + self.eps) / k)
        log_det = jnp.broadcast_to(_positions(x) * logs.sum(), x.shape[:1])
        if inverse:
            return x * jnp.exp(-logs) - bias, -log_det
        return (x + bias) * jnp.exp(logs), log_det


def _lu_init(channels: int, seed: int):
    """A random rotation W = P L (U + diag(s)) decomposed once (Glow §3.2)."""
    w = np.linalg.qr(np.random.default_rng(seed).standard_normal((channels, channels)))[0]
    p, lower, upper = scipy.linalg.lu(w)
    s = np.diag(upper)
    return p.astype(np.float32), lower, np.triu(upper, 1), np.sign(s), np.log(np.abs(s))


class InvConv1x1(nn.Module):
    """y = W x at every position with W = P L (U + diag(sign_s exp(log_s))) (Glow eq. 10),
    log_det = HW sum log_s. P and sign_s are fixed from ``seed``; L (unit lower triangular),
    U (strictly upper) and log_s are learnt, starting from a random rotation.

    Inside a scan over ``steps`` identical steps of flow (:class:`Repeat` with ``indexed``),
    ``step`` (traced, 0..steps-1) picks seed ``seed + step``, so every step keeps its own
    rotation and permutation while the compiled program holds one step."""

    seed: int = 0
    steps: int = 1
    step: Any = 0

    def weight(self, channels: int):
        inits = [_lu_init(channels, self.seed + k) for k in range(self.steps)]
        stacked = (jnp.asarray(np.stack(a))[self.step] for a in zip(*inits, strict=True))
        p, lower0, upper0, sign_s, log_s0 = stacked
        lower = self.param("L", lambda _: lower0.astype(jnp.float32))
        upper = self.param("U", lambda _: upper0.astype(jnp.float32))
        log_s = self.param("log_s", lambda _: log_s0.astype(jnp.float32))
        eye = jnp.eye(channels)
        lower = jnp.tril(lower, -1) + eye
        upper = jnp.triu(upper, 1) + jnp.diag(sign_s * jnp.exp(log_s))
        return p @ lower @ upper, log_s

    @nn.compact
    def __call__(self, x, inverse: bool = False):
        w_CxC, log_s = self.weight(x.shape[-1])
        log_det = jnp.broadcast_to(_positions(x) * log_s.sum(), x.shape[:1])
        if inverse:
            return jnp.einsum("...c,dc->...d", x, jnp.linalg.inv(w_CxC)), -log_det
        return jnp.einsum("...c,dc->...d", x, w_CxC), log_det


class StepOfFlow(nn.Module):
    """One step of flow (Glow Fig. 2a): actnorm, invertible 1x1 convolution, affine coupling
    of the channel halves (``mask="halves"`` and ``net="mlp"`` for vectors). Scanned by
    :class:`Repeat` with ``indexed``, ``step`` picks the 1x1 convolution's seed (see there)."""

    seed: int = 0
    steps: int = 1
    mask: str = "channel"
    net: str = "conv"
    hidden: int = 512
    depth: int = 1

    @nn.compact
    def __call__(self, x, inverse: bool = False, step=0):
        coupling = AffineCoupling(self.mask, 0, self.net, self.hidden, self.depth)
        layers = [ActNorm(), InvConv1x1(self.seed, self.steps, step), coupling]
        return Chain(layers)(x, inverse=inverse)
