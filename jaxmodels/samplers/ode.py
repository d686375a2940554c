"""Probability-flow ODE samplers (k-diffusion convention, EDM eq. 3 with sigma(t) = t, s(t) = 1).

Every sampler is ``sample_x(denoise_fn, x, sigmas, *, key=None, ...)``: ``denoise_fn(x, sigma)``
returns the denoised D(x; sigma), ``x`` starts as noise of std ``sigmas[0]`` and ``sigmas`` is
a decreasing array ending in 0 (see :mod:`jaxmodels.samplers.schedules`). Steps run in
:func:`~jaxmodels.samplers.integrate.scan_steps` (``lax.while_loop`` for RK45), so a sampler
traced inside ``jax.jit`` compiles to one program with no Python loop per step. Scalar options
(``S_churn`` ...) are Python floats.

:func:`sample_heun_process` integrates the same ODE in a process's own (x, t) coordinates
(EDM Algorithm 1 in general form): the process is any object with the noise schedule
``sigma(t)``, the scale ``s(t)`` and their derivatives (:class:`ProcessSchedule`), such as
the diffusion family's VP, VE, EDM and Flow.
"""

from __future__ import annotations

import math
from typing import Protocol

import jax
import jax.numpy as jnp
from jax import lax

from jaxmodels.samplers.integrate import odeint_rk45, scan_steps


class ProcessSchedule(Protocol):
    """A process x_t = s(t) (x_0 + sigma(t) n) as the general-form PF ODE sees it (EDM eq. 4)."""

    def sigma(self, t): ...

    def sigma_deriv(self, t): ...

    def s(self, t): ...

    def s_deriv(self, t): ...


def to_d(x, sigma, denoised):
    """EDM eq. 3 with sigma(t) = t: dx/dsigma = (x - D(x; sigma)) / sigma."""
    return (x - denoised) / sigma


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


def heun_step(f, x, d, t, t_next, euler_only):
    """Heun's step from t to t_next given d = f(x, t): the Euler predictor, then the trapezoidal
    corrector unless ``euler_only`` (traced bool; EDM Algorithm 1, lines 5-8)."""
    x_euler = x + d * (t_next - t)
    correct = lambda: x + 0.5 * (d + f(x_euler, t_next)) * (t_next - t)
    return lax.cond(euler_only, lambda: x_euler, correct)


def sample_euler(
    denoise_fn, x, sigmas, *, key=None, S_churn=0.0, S_tmin=0.0, S_tmax=math.inf, S_noise=1.0
):
    """Euler's method on the PF ODE (EDM Algorithm 2 without the Heun correction)."""
    n = sigmas.shape[0] - 1
    kw = dict(S_churn=S_churn, S_tmin=S_tmin, S_tmax=S_tmax, S_noise=S_noise)

    def step(x, sigma, sigma_next, k):
        x, sigma_hat = churn(x, sigma, k, n, **kw)
        d = to_d(x, sigma_hat, denoise_fn(x, sigma_hat))
        return x + d * (sigma_next - sigma_hat)

    return scan_steps(step, x, sigmas, key)


def sample_heun(
    denoise_fn, x, sigmas, *, key=None, S_churn=0.0, S_tmin=0.0, S_tmax=math.inf, S_noise=1.0
):
    """EDM Algorithm 1 (deterministic) / Algorithm 2 (``S_churn > 0``): Heun's 2nd-order method;
    the last step, to sigma = 0, is a plain Euler step."""
    n = sigmas.shape[0] - 1
    kw = dict(S_churn=S_churn, S_tmin=S_tmin, S_tmax=S_tmax, S_noise=S_noise)
    f = lambda x, sigma: to_d(x, sigma, denoise_fn(x, sigma))

    def step(x, sigma, sigma_next, k):
        x, sigma_hat = churn(x, sigma, k, n, **kw)
        return heun_step(f, x, f(x, sigma_hat), sigma_hat, sigma_next, sigma_next == 0)

    return scan_steps(step, x, sigmas, key)


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

    def step(state, sigma, sigma_next, _):
        x, old_denoised, h_last, first = state
        denoised = denoise_fn(x, sigma)
        last = sigma_next == 0
        safe_next = jnp.where(last, sigma, sigma_next)
        h = jnp.log(sigma) - jnp.log(safe_next)
        r = jnp.where(first | last, 1.0, h_last / jnp.where(last, 1.0, h))
        d_prime = denoised + jnp.where(first, 0.0, 1 / (2 * r)) * (denoised - old_denoised)
        x_next = (safe_next / sigma) * x - jnp.expm1(-h) * d_prime
        x_next = jnp.where(last, denoised, x_next)
        return x_next, denoised, h, jnp.zeros_like(first)

    state = (x, jnp.zeros_like(x), jnp.zeros((), sigmas.dtype), jnp.ones((), bool))
    return scan_steps(step, state, sigmas)[0]


def ode_derivative(process: ProcessSchedule, denoise_fn, x, t):
    """EDM Algorithm 1, line 4 (eq. 4): dx/dt = (sigma'/sigma + s'/s) x - sigma' s/sigma D(x/s).

    ``x`` is in the process's own coordinates (x_t, not scaled out); ``denoise_fn(x, sigma)`` is
    the usual D on scaled-out inputs. For the Flow process this is the velocity n - x_0.
    """
    sigma, sigma_d = process.sigma(t), process.sigma_deriv(t)
    s, s_d = process.s(t), process.s_deriv(t)
    return (sigma_d / sigma + s_d / s) * x - sigma_d * s / sigma * denoise_fn(x / s, sigma)


def sample_heun_process(process: ProcessSchedule, denoise_fn, x, ts, *, second_order: bool = True):
    """EDM Algorithm 1 in general form: Heun (or Euler, ``second_order=False``) on the PF ODE in
    a process's own (x, t) coordinates, over the decreasing times ``ts`` (ending in 0).

    ``x`` is the scaled-out noise x / s at t = ``ts[0]`` (std sigma(ts[0])), as for every other
    sampler, and so is the result x_N / s(t_N). A step whose end has sigma = 0 is Euler. With the
    Flow process and ``second_order=False`` this is rectified flow's Euler sampler in t
    (Liu et al. 2023). Used to compare processes (EDM Fig. 2).
    """
    f = lambda x, t: ode_derivative(process, denoise_fn, x, t)

    def step(x, t, t_next, _):
        if not second_order:
            return x + f(x, t) * (t_next - t)
        return heun_step(f, x, f(x, t), t, t_next, process.sigma(t_next) == 0)

    return scan_steps(step, x * process.s(ts[0]), ts) / process.s(ts[-1])


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
