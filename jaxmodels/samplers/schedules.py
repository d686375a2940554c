"""Noise-level discretisations (EDM, Karras et al. 2022, Table 1 "Time steps").

Every function returns ``n + 1`` noise levels: ``n`` decreasing positive sigmas followed by a
final ``0``, the k-diffusion convention every sampler in :mod:`jaxmodels.samplers` consumes.
Grids are computed in the dtype of the inputs: Python floats give the default float dtype
(float64 when ``jax_enable_x64`` is on, else float32).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def _dtype(*values):
    """The floating dtype of ``values``; Python scalars are weak, so they take the default."""
    return jnp.result_type(*values, float)


def append_zero(sigmas):
    """Appends the final ``sigma = 0`` (the clean sample)."""
    return jnp.concatenate([sigmas, jnp.zeros((1,), sigmas.dtype)])


def get_sigmas_karras(n: int, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """EDM eq. 5: sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho."""
    dtype = _dtype(sigma_min, sigma_max, rho)
    ramp = jnp.linspace(0, 1, n, dtype=dtype)
    lo, hi = jnp.asarray(sigma_min, dtype) ** (1 / rho), jnp.asarray(sigma_max, dtype) ** (1 / rho)
    return append_zero((hi + ramp * (lo - hi)) ** rho)


def get_sigmas_exponential(n: int, sigma_min=0.002, sigma_max=80.0):
    """Sigmas uniform in log sigma (geometric), the limit rho -> inf of eq. 5."""
    dtype = _dtype(sigma_min, sigma_max)
    log_sigmas = jnp.linspace(jnp.log(sigma_max), jnp.log(sigma_min), n, dtype=dtype)
    return append_zero(jnp.exp(log_sigmas))


def get_sigmas_ve(n: int, sigma_min=0.02, sigma_max=100.0):
    """EDM Table 1 VE: t_i = s_max^2 (s_min^2 / s_max^2)^(i / (n-1)), sigma = sqrt(t)."""
    return get_sigmas_exponential(n, sigma_min, sigma_max)


def vp_sigma(t, beta_d=19.9, beta_min=0.1):
    """EDM Table 1 VP schedule: sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)."""
    return jnp.sqrt(jnp.expm1(0.5 * beta_d * t**2 + beta_min * t))


def vp_sigma_inv(sigma, beta_d=19.9, beta_min=0.1):
    """Inverse of :func:`vp_sigma` (EDM Table 1 VP sigma^-1)."""
    return (jnp.sqrt(beta_min**2 + 2 * beta_d * jnp.log1p(sigma**2)) - beta_min) / beta_d


def get_sigmas_vp(n: int, beta_d=19.9, beta_min=0.1, eps_s=1e-3):
    """EDM Table 1 VP time steps: t_i = 1 + i/(n-1) (eps_s - 1), sigma_i = sigma(t_i)."""
    dtype = _dtype(beta_d, beta_min, eps_s)
    t = jnp.linspace(1, eps_s, n, dtype=dtype)
    return append_zero(vp_sigma(t, beta_d, beta_min))


def iddpm_u(M: int = 1000, C_1: float = 0.001, C_2: float = 0.008) -> np.ndarray:
    """EDM Table 1 iDDPM noise levels u_0 > ... > u_M = 0 (float64 numpy, length M + 1).

    u_{j-1} = sqrt((u_j^2 + 1) / max(alpha_bar_{j-1}/alpha_bar_j, C_1) - 1), with
    alpha_bar_j = sin^2(pi/2 j / (M (C_2 + 1))) (Nichol & Dhariwal's cosine schedule).
    """
    alpha_bar = np.sin(0.5 * np.pi * np.arange(M + 1) / (M * (C_2 + 1))) ** 2
    u = np.zeros(M + 1)
    for j in range(M, 0, -1):
        ratio = max(alpha_bar[j - 1] / alpha_bar[j], C_1)
        u[j - 1] = math.sqrt((u[j] ** 2 + 1) / ratio - 1)
    return u


def get_sigmas_iddpm(n: int, M: int = 1000, C_1=0.001, C_2=0.008, j_0: int = 8, dtype=None):
    """EDM Table 1 iDDPM time steps: t_i = u_floor(j_0 + (M-1-j_0)/(n-1) i + 1/2)."""
    u = iddpm_u(M, C_1, C_2)
    j = np.floor(j_0 + (M - 1 - j_0) / max(n - 1, 1) * np.arange(n) + 0.5).astype(int)
    return append_zero(jnp.asarray(u[j], dtype or _dtype(0.0)))


def get_sigmas_flow(n: int, sigma_max=80.0):
    """Uniform in flow time t (x_t = (1-t) x_0 + t n) from t(sigma_max) to 0; sigma = t/(1-t)."""
    dtype = _dtype(sigma_max)
    t_max = jnp.asarray(sigma_max, dtype) / (1 + jnp.asarray(sigma_max, dtype))
    t = jnp.linspace(t_max, 0, n + 1, dtype=dtype)
    return t / (1 - t)


SCHEDULES = {
    "karras": get_sigmas_karras,
    "exponential": get_sigmas_exponential,
    "ve": get_sigmas_ve,
    "vp": get_sigmas_vp,
    "iddpm": get_sigmas_iddpm,
    "flow": get_sigmas_flow,
}


def get_sigmas(name: str, n: int, **kwargs):
    """Looks a schedule up by name (``karras``, ``vp``, ``ve``, ``iddpm``, ``flow``, ...)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown sigma schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](n, **kwargs)
