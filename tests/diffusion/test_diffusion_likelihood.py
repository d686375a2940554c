"""PF-ODE log-likelihood against closed-form mixture log-densities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.samplers import analytic, likelihood


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


GM = analytic.GaussianMixture((0.3, 0.7), ((1.5, -0.5), (-1.0, 0.5)), (0.3, 0.5))
SIGMA_MIN, SIGMA_MAX = 1e-3, 80.0


def _logp(x, **kw):
    prior = lambda x_T, s: GM.log_prob(x_T, s)  # the exact p_{sigma_max}
    fn = lambda x, k: likelihood.pf_ode_log_likelihood(
        GM.denoise, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, prior_logp=prior, key=k, **kw
    )
    return jax.jit(fn)(x, jax.random.key(7))


def test_exact_divergence_matches_closed_form():
    x = GM.sample(jax.random.key(0), 16, jnp.float64)
    logp, stats = _logp(x)
    np.testing.assert_allclose(logp, GM.log_prob(x, SIGMA_MIN), atol=2e-3)
    assert stats["t"] == SIGMA_MAX
    # The default N(0, sigma_max^2) prior ignores the data's spread: off by O(var/sigma_max^2).
    default, _ = jax.jit(lambda x: likelihood.pf_ode_log_likelihood(GM.denoise, x))(x)
    np.testing.assert_allclose(default, GM.log_prob(x, SIGMA_MIN), atol=2e-2)


def test_hutchinson_is_unbiased():
    x = GM.sample(jax.random.key(1), 8, jnp.float64)
    exact = GM.log_prob(x, SIGMA_MIN)
    logp, _ = _logp(x, num_probes=64, rtol=1e-4, atol=1e-4)
    err = logp - exact
    assert jnp.abs(err.mean()) < 0.05 and jnp.abs(err).max() < 0.3, err
    with pytest.raises(ValueError, match="needs key"):
        likelihood.pf_ode_log_likelihood(GM.denoise, x, num_probes=2)


def test_divergence_exact_equals_jacobian_trace():
    x = jax.random.normal(jax.random.key(2), (3, 2, 2))
    f = lambda y: jnp.tanh(y) * jnp.sum(y**2, axis=(1, 2), keepdims=True)
    expect = [
        jnp.trace(jax.jacobian(lambda v: f(v[None])[0].ravel())(xi).reshape(4, 4)) for xi in x
    ]
    np.testing.assert_allclose(likelihood.divergence_exact(f, x), expect, rtol=1e-10)


def test_bits_per_dim():
    np.testing.assert_allclose(likelihood.bits_per_dim(jnp.array(-3 * math.log(2)), 3), 1.0)
    # 8-bit data in [-1, 1]: a uniform density 2^-d on the cube is exactly 8 bits per dimension.
    np.testing.assert_allclose(likelihood.bits_per_dim(-4 * math.log(2), 4, 2 / 256), 8.0)
