"""Maximum likelihood with uniform dequantisation, and exact bits per dimension.

Integer pixels x in {0, ..., L-1} become u = (x + v) / L with v ~ U[0, 1)^D (Theis et al.
2016; RealNVP §4.1). The flow gives the exact density log p(u) = log p_Z(f(u)) + log|det f'(u)|.
Since the cube of side 1/L around each x has volume L^-D, the discrete log-likelihood is bounded
by log P(x) >= E_v[log p(u)] - D log L, so

    bits/dim = -(log p(u) - D log L) / (D log 2)

is an upper bound on the discrete negative log-likelihood in bits, exact up to the one sampled
v (the correction is the - D log L term). ``levels = 0`` marks continuous data (2-D toys): then
u = x and bits/dim is the differential entropy estimate -log p(x) / (D log 2).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmodels.layers import bijectors as bj


def dequantize(x_int, levels: int, key):
    """u = (x + v) / L, v ~ U[0, 1)^D; continuous data (``levels`` 0) pass unchanged."""
    x = x_int.astype(jnp.float32)
    if not levels:
        return x
    return (x + jax.random.uniform(key, x.shape)) / levels


def log_prob(flow, prior: str, params, u):
    """log p(u) per example: the change of variables (NICE eq. 1)."""
    z, log_det = flow.apply({"params": params}, u)
    return bj.priors.log_prob(prior, z) + log_det


def bits_per_dim(log_p_u, levels: int, dims: int):
    """-(log p(u) - D log L) / (D log 2) per example (see the module docstring)."""
    correction = dims * math.log(levels) if levels else 0.0
    return -(log_p_u - correction) / (dims * math.log(2))


def nll_loss(flow, prior: str, levels: int, dims: int):
    """``loss_fn(params, batch, rng)``: mean bits/dim of a freshly dequantised batch."""

    def loss_fn(params, batch, rng):
        u = dequantize(batch["image"], levels, rng)
        bpd = bits_per_dim(log_prob(flow, prior, params, u), levels, dims).mean()
        return bpd, {"bits_per_dim": bpd}

    return loss_fn
