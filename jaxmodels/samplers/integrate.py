"""The two integration loops every sampler is written on.

:func:`scan_steps` runs a fixed-step method over a grid of noise levels (or times) in one
``lax.scan``; every fixed-step sampler in :mod:`~jaxmodels.samplers.ode` and
:mod:`~jaxmodels.samplers.sde` is a ``step`` function handed to it. :func:`odeint_rk45` is the
adaptive Dormand-Prince solver (``lax.while_loop``) behind ``sample_rk45`` and the PF-ODE
likelihood. Both compile to one program when traced inside ``jax.jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree


def scan_steps(step, state, ts, key=None):
    """Fixed-step integration: ``state = step(state, t_i, t_{i+1}, key_i)`` for i = 0 .. n-1.

    ``ts`` is the grid (n + 1 values, e.g. the sigmas of a schedule); ``state`` any pytree (the
    sample ``x``, or ``x`` plus a multistep method's history). ``key_i`` are ``n`` independent keys
    split from ``key``, or ``None`` for every step when ``key`` is ``None`` (deterministic
    methods). Returns the final state.
    """
    n = ts.shape[0] - 1
    if key is None:
        body = lambda state, t: (step(state, t[0], t[1], None), None)
        xs = (ts[:-1], ts[1:])
    else:
        body = lambda state, t: (step(state, *t), None)
        xs = (ts[:-1], ts[1:], jax.random.split(key, n))
    state, _ = lax.scan(body, state, xs)
    return state


# Dormand & Prince (1980) RK5(4)7FM tableau (Hairer, Norsett & Wanner, Table II.5.2).
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B_HAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def _dopri5_step(f, t, y, k1, dt):
    """One Dormand-Prince step: returns (y5, k7 = f(t + dt, y5), error estimate y5 - y4)."""
    ks = [k1]
    for i in range(1, 7):
        yi = y + dt * sum(a * k for a, k in zip(_DP_A[i], ks, strict=False) if a)
        ks.append(f(t + _DP_C[i] * dt, yi))
    y5 = y + dt * sum(b * k for b, k in zip(_DP_B, ks, strict=True) if b)
    err = dt * sum((b - bh) * k for b, bh, k in zip(_DP_B, _DP_B_HAT, ks, strict=True))
    return y5, ks[6], err


def odeint_rk45(f, y0, t0, t1, *, rtol=1e-5, atol=1e-5, first_step=None, max_steps=10_000):
    """Adaptive Dormand-Prince RK45 (FSAL, PI-free step control) for dy/dt = f(t, y), y a pytree.

    Returns ``(y(t1), stats)`` with ``nfe``, ``steps``, ``accepted`` and ``t`` (= t1 unless
    ``max_steps`` ran out).
    """
    flat0, unravel = ravel_pytree(y0)
    fn = lambda t, y: ravel_pytree(f(t, unravel(y)))[0]
    t0, t1 = jnp.asarray(t0, flat0.dtype), jnp.asarray(t1, flat0.dtype)
    span = jnp.abs(t1 - t0)
    direction = jnp.sign(t1 - t0)
    h0 = span * 0.01 if first_step is None else jnp.asarray(first_step, flat0.dtype)
    init = (t0, flat0, fn(t0, flat0), h0, 0, 0)

    def cond(state):
        t, _, _, _, steps, _ = state
        return (direction * (t1 - t) > 0) & (steps < max_steps)

    def body(state):
        t, y, k1, h, steps, accepted = state
        remaining = jnp.abs(t1 - t)
        h = jnp.minimum(h, remaining)
        y5, k7, err = _dopri5_step(fn, t, y, k1, direction * h)
        scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y5))
        err_norm = jnp.sqrt(jnp.mean((err / scale) ** 2))
        ok = err_norm <= 1
        factor = jnp.clip(0.9 * jnp.where(err_norm > 0, err_norm, 1e-10) ** -0.2, 0.2, 10.0)
        t_new = jnp.where(h >= remaining, t1, t + direction * h)
        return (
            jnp.where(ok, t_new, t),
            jnp.where(ok, y5, y),
            jnp.where(ok, k7, k1),
            h * factor,
            steps + 1,
            accepted + ok.astype(int),
        )

    t, y, _, _, steps, accepted = lax.while_loop(cond, body, init)
    stats = {"nfe": 1 + 6 * steps, "steps": steps, "accepted": accepted, "t": t}
    return unravel(y), stats
