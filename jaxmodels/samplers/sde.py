"""Stochastic samplers (k-diffusion convention, see :mod:`jaxmodels.samplers.ode`).

``x`` lives in the scaled-out space x_hat = x_0 + sigma n; the DDIM/DDPM samplers map it to the
variance-preserving x_t = sqrt(alpha_bar) x_hat with alpha_bar = 1 / (1 + sigma^2) (EDM
Appendix C.3.1), take their update there, and map back. The EDM stochastic sampler
(Algorithm 2) is :func:`jaxmodels.samplers.ode.sample_heun` with ``S_churn > 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.samplers.integrate import scan_steps
from jaxmodels.samplers.ode import to_d


def get_ancestral_step(sigma, sigma_next, eta=1.0):
    """Splits sigma -> sigma_next into a deterministic step to sigma_down plus noise sigma_up."""
    sigma_up = jnp.minimum(
        sigma_next, eta * jnp.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
    )
    return jnp.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def sample_euler_ancestral(denoise_fn, x, sigmas, *, key, eta=1.0, S_noise=1.0):
    """Ancestral sampling with Euler steps (k-diffusion): Euler to sigma_down, then add noise."""

    def step(x, sigma, sigma_next, k):
        denoised = denoise_fn(x, sigma)
        sigma_down, sigma_up = get_ancestral_step(sigma, sigma_next, eta)
        x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        return x + jax.random.normal(k, x.shape, x.dtype) * S_noise * sigma_up

    return scan_steps(step, x, sigmas, key)


def _alpha_bars(sigma, sigma_next):
    """alpha_bar = 1/(1 + sigma^2) and 1 - alpha_bar = sigma^2/(1 + sigma^2) at both levels."""
    a, a_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
    return a, a_next, sigma**2 * a, sigma_next**2 * a_next


def sample_ddim(denoise_fn, x, sigmas, *, key=None, eta=0.0):
    """DDIM (Song, Meng & Ermon 2021, eq. 12): x_prev = sqrt(a') x0 + sqrt(1 - a' - s^2) eps + s z,
    s = eta sqrt((1 - a')/(1 - a)) sqrt(1 - a/a'), in VP coordinates."""
    if eta and key is None:
        raise ValueError("sample_ddim with eta > 0 needs a PRNG key (key=...)")

    def step(x_hat, sigma, sigma_next, k):
        a, a_next, one_minus_a, one_minus_a_next = _alpha_bars(sigma, sigma_next)
        x0 = denoise_fn(x_hat, sigma)
        eps = (x_hat - x0) / sigma
        s2 = eta**2 * one_minus_a_next / one_minus_a * (1 - a / a_next)
        x_prev = jnp.sqrt(a_next) * x0 + jnp.sqrt(jnp.maximum(one_minus_a_next - s2, 0)) * eps
        if eta:
            x_prev = x_prev + jnp.sqrt(s2) * jax.random.normal(k, x_hat.shape, x_hat.dtype)
        return x_prev / jnp.sqrt(a_next)

    return scan_steps(step, x, sigmas, key)


def sample_ddpm(denoise_fn, x, sigmas, *, key):
    """DDPM ancestral sampling (Ho et al. 2020, eqs. 6-7): x_prev ~ q(x_prev | x_t, x0 = D)."""

    def step(x_hat, sigma, sigma_next, k):
        a, a_next, one_minus_a, one_minus_a_next = _alpha_bars(sigma, sigma_next)
        beta = (sigma**2 - sigma_next**2) * a  # beta_t = 1 - a / a_next
        x_t = jnp.sqrt(a) * x_hat
        x0 = denoise_fn(x_hat, sigma)
        mu = (
            jnp.sqrt(a_next) * beta / one_minus_a * x0
            + jnp.sqrt(1 - beta) * one_minus_a_next / one_minus_a * x_t
        )
        beta_tilde = one_minus_a_next / one_minus_a * beta
        x_prev = mu + jnp.sqrt(beta_tilde) * jax.random.normal(k, x_hat.shape, x_hat.dtype)
        return x_prev / jnp.sqrt(a_next)

    return scan_steps(step, x, sigmas, key)


def sample_euler_maruyama(denoise_fn, x, sigmas, *, key, S_noise=1.0):
    """Euler-Maruyama on the reverse SDE of x = x_0 + sigma n (EDM eq. 6, beta(t) = 1/sigma):
    dx = -2 sigma grad log p dsigma + sqrt(2 sigma) dw; the last step (to 0) returns D."""

    def step(x, sigma, sigma_next, k):
        denoised = denoise_fn(x, sigma)
        d = to_d(x, sigma, denoised)
        dsigma = sigma - sigma_next
        z = jax.random.normal(k, x.shape, x.dtype)
        x_next = x - 2 * d * dsigma + jnp.sqrt(2 * sigma * dsigma) * S_noise * z
        return jnp.where(sigma_next == 0, denoised, x_next)

    return scan_steps(step, x, sigmas, key)
