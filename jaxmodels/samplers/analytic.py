"""Closed-form denoisers for analytic data: isotropic Gaussian mixtures.

For p = sum_k pi_k N(mu_k, s_k^2 I), the noised density is p_sigma = sum_k pi_k
N(mu_k, (s_k^2 + sigma^2) I), the ideal denoiser is D(x; sigma) = x + sigma^2 grad log p_sigma
(Tweedie; EDM eq. 3), and for one component the PF ODE has the closed-form solution
x(sigma) = mu + sqrt((s^2 + sigma^2) / (s^2 + sigma_0^2)) (x(sigma_0) - mu).
Used by the tests and the sampler ablation; everything follows the dtype of ``x``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """Isotropic Gaussian mixture: ``weights`` (G,), ``means`` (G, d), ``stds`` (G,), ``G`` (a
    letter beyond the shape legend) components."""

    weights: tuple
    means: tuple
    stds: tuple

    def _params(self, dtype):
        w, mu, s = (jnp.asarray(v, dtype) for v in (self.weights, self.means, self.stds))
        return w / w.sum(), mu, s

    @property
    def dim(self) -> int:
        return len(self.means[0])

    def component_log_prob(self, x, sigma=0.0):
        """log pi_k + log N(x; mu_k, (s_k^2 + sigma^2) I), shape (..., G)."""
        w, mu, s = self._params(x.dtype)
        var_G = s**2 + jnp.asarray(sigma, x.dtype)[..., None] ** 2
        sq = jnp.sum((x[..., None, :] - mu) ** 2, axis=-1)
        d = x.shape[-1]
        return jnp.log(w) - 0.5 * (sq / var_G + d * jnp.log(2 * jnp.pi * var_G))

    def log_prob(self, x, sigma=0.0):
        """log p_sigma(x) for x of shape (..., d); sigma scalar or (...)."""
        return jax.nn.logsumexp(self.component_log_prob(x, sigma), axis=-1)

    def score(self, x, sigma):
        """grad_x log p_sigma(x)."""
        _, mu, s = self._params(x.dtype)
        sigma = jnp.asarray(sigma, x.dtype)
        r_G = jax.nn.softmax(self.component_log_prob(x, sigma), axis=-1)
        var_G = s**2 + sigma[..., None] ** 2
        return jnp.sum(r_G[..., None] * (mu - x[..., None, :]) / var_G[..., None], axis=-2)

    def denoise(self, x, sigma):
        """D(x; sigma) = E[x_0 | x_0 + sigma n = x] = x + sigma^2 grad log p_sigma(x)."""
        sigma = jnp.asarray(sigma, x.dtype)
        sigma_b = sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim))
        return x + sigma_b**2 * self.score(x, sigma)

    def sample(self, key, n: int, dtype=jnp.float32):
        """n draws from the data distribution."""
        w, mu, s = self._params(dtype)
        k_c, k_n = jax.random.split(key)
        c = jax.random.categorical(k_c, jnp.log(w), shape=(n,))
        return mu[c] + s[c, None] * jax.random.normal(k_n, (n, self.dim), dtype)

    def mean(self, dtype=jnp.float32):
        w, mu, _ = self._params(dtype)
        return w @ mu

    def cov(self, dtype=jnp.float32):
        w, mu, s = self._params(dtype)
        m = w @ mu
        second = jnp.einsum("k,ki,kj->ij", w, mu, mu) + jnp.sum(w * s**2) * jnp.eye(self.dim)
        return second - jnp.outer(m, m)


def gaussian_pf_solution(x, sigma_from, sigma_to, mean, std):
    """Exact PF-ODE map for data N(mean, std^2 I): x(sigma_to) given x(sigma_from)."""
    ratio = jnp.sqrt((std**2 + sigma_to**2) / (std**2 + sigma_from**2))
    return mean + ratio * (x - mean)


def ring_mixture(k: int = 8, radius: float = 2.0, std: float = 0.1):
    """k equal-weight components on a circle (a standard 2-D toy problem)."""
    angles = [2 * math.pi * i / k for i in range(k)]
    means = tuple((radius * math.cos(a), radius * math.sin(a)) for a in angles)
    return GaussianMixture((1.0,) * k, means, (std,) * k)
