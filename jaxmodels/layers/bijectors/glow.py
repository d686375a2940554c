"""Glow's actnorm and invertible 1x1 convolution (Kingma & Dhariwal 2018, Table 1).

Both act on the last (channel) axis of (B, ..., C) and are applied at every spatial position,
so their log-determinants are (number of positions) x (a per-channel term).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import scipy.linalg


def _positions(x) -> int:
    return int(np.prod(x.shape[1:-1]))


class ActNorm(nn.Module):
    """y = (x + bias) * exp(logs) per channel (Glow Table 1, row 1), log_det = HW sum logs.

    Data-dependent initialisation (Glow §3.1): the first ``init`` call sets bias = -mean and
    logs = -log(std + eps) of that batch's channels, so its output has zero mean and unit
    variance per channel. Initialise with a real data batch, forward.
    """

    eps: float = 1e-6

    @nn.compact
    def __call__(self, x, inverse: bool = False):
        axes = tuple(range(x.ndim - 1))
        bias = self.param("bias", lambda _: -x.mean(axes))
        logs = self.param("logs", lambda _: -jnp.log(x.std(axes) + self.eps))
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
    U (strictly upper) and log_s are learnt, starting from a random rotation."""

    seed: int = 0

    def weight(self, channels: int):
        p, lower0, upper0, sign_s, log_s0 = _lu_init(channels, self.seed)
        lower = self.param("L", lambda _: jnp.asarray(lower0, jnp.float32))
        upper = self.param("U", lambda _: jnp.asarray(upper0, jnp.float32))
        log_s = self.param("log_s", lambda _: jnp.asarray(log_s0, jnp.float32))
        eye = jnp.eye(channels)
        lower = jnp.tril(lower, -1) + eye
        upper = jnp.triu(upper, 1) + jnp.diag(sign_s * jnp.exp(log_s))
        return jnp.asarray(p) @ lower @ upper, log_s

    @nn.compact
    def __call__(self, x, inverse: bool = False):
        w_CxC, log_s = self.weight(x.shape[-1])
        log_det = jnp.broadcast_to(_positions(x) * log_s.sum(), x.shape[:1])
        if inverse:
            return jnp.einsum("...c,dc->...d", x, jnp.linalg.inv(w_CxC)), -log_det
        return jnp.einsum("...c,dc->...d", x, w_CxC), log_det
