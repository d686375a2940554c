"""Dequantised training data and PF-ODE bits/dim on integer images (``data.dequantize``)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import ndtr
from jax.scipy.stats import norm

from jaxmodels.config import load_config
from jaxmodels.data.image_data import image_data
from jaxmodels.models.diffusion import data, likelihood
from jaxmodels.samplers.likelihood import pf_ode_log_likelihood

LEVELS = 17


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def uniform_denoiser(x, sigma):
    """E[x0 | x0 + sigma n = x] for x0 ~ U[-1, 1]^D: a normal around x truncated to [-1, 1]."""
    a, b = (-1 - x) / sigma, (1 - x) / sigma
    return x + sigma * (norm.pdf(a) - norm.pdf(b)) / (ndtr(b) - ndtr(a))


def test_uniform_density_scores_log2_of_the_levels():
    """The exact denoiser of the uniform density on [-1, 1]^D, which puts mass 17^-D on every
    dequantisation bin, must come out at log2(17) = 4.087 bits/dim (the uniform model)."""

    def fn(params, z, key):
        logp, stats = pf_ode_log_likelihood(uniform_denoiser, z, sigma_min=1e-3, sigma_max=80.0)
        return logp, stats["nfe"]

    levels = jax.random.randint(jax.random.key(0), (12, 2, 2, 1), 0, LEVELS)
    edges = data.bin_edges(np.asarray(levels), LEVELS).astype(np.float64)
    out = likelihood.heldout_bits_per_dim(fn, None, edges, 2 / LEVELS, jax.random.key(1), 5)
    assert abs(out["bits_per_dim"] - math.log2(LEVELS)) < 1e-3, out  # float32: 0.009 above


def test_dequantised_digits_stay_in_their_bins_and_snap_back():
    d = load_config("experiments/diffusion/digits.py:likelihood").data
    dataset = image_data(d)
    held_out = dataset.split("eval").images
    plain = data.scale(held_out, LEVELS, 0.0)
    np.testing.assert_array_equal(plain, held_out / np.float32(8) - 1)  # the digits: x / 8 - 1
    width = data.bin_width(dataset, d.dequantize)
    edges = data.scale(held_out, LEVELS, width)
    assert width == pytest.approx(2 / LEVELS) and edges.shape == plain.shape
    z = np.asarray(data.dequantize(jnp.asarray(edges), width, jax.random.key(0)))
    assert (z >= edges).all() and (z < edges + width).all()
    np.testing.assert_array_equal(data.undo_dequantize(z, LEVELS, width), plain)


def test_dequantize_needs_images():
    d = load_config("experiments/diffusion/toy2d.py").data
    d.dequantize = True
    with pytest.raises(ValueError, match="data.dequantize"):
        data.bin_width(image_data(d), d.dequantize)
