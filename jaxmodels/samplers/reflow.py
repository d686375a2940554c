"""Rectified flow beyond round 1 (Liu et al. 2022, "Flow Straight and Fast"): couplings from a
trained flow's ODE, the straightness measure, and one-step generation.

Convention of the diffusion family's ``flow`` process: x_t = (1 - t) x_0 + t n with data x_0
at t = 0 and noise n at t = 1, and a velocity v(x, t) that regresses n - x_0. Generation
integrates dx/dt = v from t = 1 down to t = 0. Round k + 1 (reflow, Alg. 1) trains on the
pairs (n, x_0 = ODE_k(n)) that round k produces, instead of independent (noise, data) pairs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def euler_path(velocity, noise, steps: int):
    """Integrates dx/dt = v(x, t) from t = 1 (``noise``) to t = 0 with ``steps`` Euler steps.

    Returns ``(x_0, straightness)``: the generated data and, per example, the straightness
    S = int_0^1 ||(z_1 - z_0) - v(z_t, t)||^2 dt along the path (Liu et al. 2022, eq. 5), with
    the integral taken by the same steps; 0 exactly when every path is a straight line
    travelled at constant speed. ``velocity(x, t)`` takes t of shape (B,).
    """
    ts = jnp.linspace(1.0, 0.0, steps + 1)
    batch = noise.shape[0]

    def step(x, t_pair):
        t, t_next = t_pair
        v = velocity(x, jnp.full((batch,), t, x.dtype))
        return x + (t_next - t) * v, v

    x0, v_SxB = lax.scan(step, noise, (ts[:-1], ts[1:]))
    displacement = noise - x0  # z_1 - z_0 (noise minus data)
    deviation = displacement[None] - v_SxB
    return x0, jnp.mean(jnp.sum(deviation.reshape(steps, batch, -1) ** 2, -1), 0)


def make_couplings(velocity, key, num: int, shape: tuple, steps: int):
    """``num`` pairs (noise, data) with data = ODE(noise): the training set of the next round.

    The noise is drawn from ``key`` alone, so the couplings are reproducible from the seed.
    """
    noise = jax.random.normal(key, (num,) + tuple(shape))
    data, _ = euler_path(velocity, noise, steps)
    return noise, data


def interpolate(noise, data, t_B):
    """x_t = (1 - t) x_0 + t n and the regression target n - x_0 (rectified flow, eq. 1)."""
    t = t_B.reshape((-1,) + (1,) * (data.ndim - 1))
    return (1 - t) * data + t * noise, noise - data


def one_step(velocity, noise):
    """The one-step generator x_0 = n - v(n, 1): what distillation trains (Liu et al. §2.3)."""
    return noise - velocity(noise, jnp.ones(noise.shape[:1], noise.dtype))
