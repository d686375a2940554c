"""Probability-flow ODE samplers (k-diffusion convention, EDM eq. 3 with sigma(t) = t, s(t) = 1).

Every sampler is ``sample_x(denoise_fn, x, sigmas, *, key=None, ...)``: ``denoise_fn(x, sigma)``
returns the denoised D(x; sigma), ``x`` starts as noise of std ``sigmas[0]`` and ``sigmas`` is
a decreasing array ending in 0 (see :mod:`jaxmodels.samplers.schedules`). Steps run in
``lax.scan`` (``lax.while_loop`` for RK45), so a sampler traced inside ``jax.jit`` compiles to
one program with no Python loop per step. Scalar options (``S_churn`` ...) are Python floats.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree


def to_d(x, sigma, denoised):
    """EDM eq. 3 with sigma(t) = t: dx/dsigma = (x - D(x; sigma)) / sigma."""
    return (x - denoised) / sigma


def step_keys(key, n: int):
    """One key per step; a dummy array when the sampler needs no randomness."""
    if key is None:
        return jnp.zeros((n,), jnp.uint32)
    return jax.random.split(key, n)


def churn(x, sigma, key, n, *, S_churn, S_tmin, S_tmax, S_noise):
    """EDM Algorithm 2, lines 4-6: raise sigma to sigma_hat = (1 + gamma) sigma, adding noise."""
    if not S_churn:
        return x, sigma
    if key is None:
        raise ValueError("S_churn > 0 needs a PRNG key (key=...)")
    gamma = jnp.where((S_tmin <= sigma) & (sigma <= S_tmax), min(S_churn / n, math.sqrt(2) - 1), 0)
    sigma_hat = sigma * (1 + gamma)
    eps = jax.random.normal(key, x.shape, x.dtype) * S_noise
    # sqrt(sigma_hat^2 - sigma^2) written so that rounding cannot make it negative
    return x + eps * sigma * jnp.sqrt(gamma * (2 + gamma)), sigma_hat


def _scan_steps(step, x, sigmas, key):
    n = sigmas.shape[0] - 1
    x, _ = lax.scan(step, x, (sigmas[:-1], sigmas[1:], step_keys(key, n)))
    return x


def sample_euler(
    denoise_fn, x, sigmas, *, key=None, S_churn=0.0, S_tmin=0.0, S_tmax=math.inf, S_noise=1.0
):
    """Euler's method on the PF ODE (EDM Algorithm 2 without the Heun correction)."""
    n = sigmas.shape[0] - 1
    kw = dict(S_churn=S_churn, S_tmin=S_tmin, S_tmax=S_tmax, S_noise=S_noise)

    def step(x, inp):
        sigma, sigma_next, k = inp
        x, sigma_hat = churn(x, sigma, None if key is None else k, n, **kw)
        d = to_d(x, sigma_hat, denoise_fn(x, sigma_hat))
        return x + d * (sigma_next - sigma_hat), None

    return _scan_steps(step, x, sigmas, key)


def sample_heun(
    denoise_fn, x, sigmas, *, key=None, S_churn=0.0, S_tmin=0.0, S_tmax=math.inf, S_noise=1.0
):
    """EDM Algorithm 1 (deterministic) / Algorithm 2 (``S_churn > 0``): Heun's 2nd-order method;
    the last step, to sigma = 0, is a plain Euler step."""
    n = sigmas.shape[0] - 1
    kw = dict(S_churn=S_churn, S_tmin=S_tmin, S_tmax=S_tmax, S_noise=S_noise)

    def step(x, inp):
        sigma, sigma_next, k = inp
        x, sigma_hat = churn(x, sigma, None if key is None else k, n, **kw)
        d = to_d(x, sigma_hat, denoise_fn(x, sigma_hat))
        dt = sigma_next - sigma_hat
        x_euler = x + d * dt

        def correct():
            d_prime = to_d(x_euler, sigma_next, denoise_fn(x_euler, sigma_next))
            return x + 0.5 * (d + d_prime) * dt

        return lax.cond(sigma_next == 0, lambda: x_euler, correct), None

    return _scan_steps(step, x, sigmas, key)


def sample_edm_stochastic(
    denoise_fn, x, sigmas, *, key, S_churn=80.0, S_tmin=0.05, S_tmax=50.0, S_noise=1.003
):
    """EDM Algorithm 2 with the paper's ImageNet-64 defaults (Table 5)."""
    kw = dict(S_churn=S_churn, S_tmin=S_tmin, S_tmax=S_tmax, S_noise=S_noise)
    return sample_heun(denoise_fn, x, sigmas, key=key, **kw)


def sample_dpmpp_2m(denoise_fn, x, sigmas, *, key=None):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in lambda = -log sigma; first and last
    steps are first order."""
    del key

    def step(carry, inp):
        x, old_denoised, h_last, first = carry
        sigma, sigma_next, _ = inp
        denoised = denoise_fn(x, sigma)
        last = sigma_next == 0
        safe_next = jnp.where(last, sigma, sigma_next)
        h = jnp.log(sigma) - jnp.log(safe_next)
        r = jnp.where(first | last, 1.0, h_last / jnp.where(last, 1.0, h))
        d_prime = denoised + jnp.where(first, 0.0, 1 / (2 * r)) * (denoised - old_denoised)
        x_next = (safe_next / sigma) * x - jnp.expm1(-h) * d_prime
        x_next = jnp.where(last, denoised, x_next)
        return (x_next, denoised, h, jnp.zeros_like(first)), None

    carry = (x, jnp.zeros_like(x), jnp.zeros((), sigmas.dtype), jnp.ones((), bool))
    n = sigmas.shape[0] - 1
    (x, *_), _ = lax.scan(step, carry, (sigmas[:-1], sigmas[1:], step_keys(None, n)))
    return x


def sample_heun_process(process, denoise_fn, x, ts, *, second_order=True):
    """EDM Algorithm 1 in general form: integrates the PF ODE in a process's own (x, t) coords.

    ``x`` is the scaled-out noise x / s at t = ``ts[0]`` (std sigma(ts[0])); ``ts`` decreases to
    0. Returns the scaled-out result x_N / s(t_N). Used to compare processes (EDM Fig. 2).
    """
    from jaxmodels.models.diffusion.processes import ode_derivative

    def step(x, inp):
        t, t_next = inp
        d = ode_derivative(process, denoise_fn, x, t)
        x_euler = x + (t_next - t) * d

        def correct():
            d_prime = ode_derivative(process, denoise_fn, x_euler, t_next)
            return x + (t_next - t) * 0.5 * (d + d_prime)

        if not second_order:
            return x_euler, None
        return lax.cond(process.sigma(t_next) == 0, lambda: x_euler, correct), None

    x, _ = lax.scan(step, x * process.s(ts[0]), (ts[:-1], ts[1:]))
    return x / process.s(ts[-1])


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


def sample_rk45(
    denoise_fn, x, sigmas, *, key=None, rtol=1e-5, atol=1e-5, max_steps=10_000, return_stats=False
):
    """Adaptive RK45 on dx/dsigma = (x - D)/sigma from ``sigmas[0]`` to the last positive sigma,
    then (when ``sigmas`` ends in 0) a final Euler step to 0, i.e. x = D(x; sigma_min)."""
    del key
    last = sigmas[-1]
    sigma_end = jnp.where(last > 0, last, sigmas[-2])
    f = lambda sigma, x: to_d(x, sigma, denoise_fn(x, sigma))
    x, stats = odeint_rk45(f, x, sigmas[0], sigma_end, rtol=rtol, atol=atol, max_steps=max_steps)
    x = jnp.where(last > 0, x, denoise_fn(x, sigma_end))
    return (x, stats) if return_stats else x
