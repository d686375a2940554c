"""Reflow pieces: couplings reproducible from the seed, straightness 0 for straight flows."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.models.diffusion import reflow

MEAN = jnp.array([1.5, -0.5])


def _straight(x, t_B):
    """The exact velocity field from N(0, I) to a point mass at MEAN: paths are straight
    lines x_t = MEAN + t (n - MEAN) travelled at constant speed."""
    return (x - MEAN) / t_B[:, None]


def _swirl(x, t_B):
    return jnp.stack([-x[:, 1], x[:, 0]], -1)  # a rotation: curved paths


def test_straightness_of_a_straight_flow_is_zero():
    noise = jax.random.normal(jax.random.key(0), (64, 2))
    data, s = jax.jit(lambda n: reflow.euler_path(_straight, n, 8))(noise)
    np.testing.assert_allclose(data, jnp.broadcast_to(MEAN, data.shape), atol=1e-5)
    np.testing.assert_allclose(s, 0.0, atol=1e-9)
    const, s_const = reflow.euler_path(lambda x, t: jnp.ones_like(x), noise, 5)
    np.testing.assert_allclose(const, noise - 1, atol=1e-6)
    np.testing.assert_allclose(s_const, 0.0, atol=1e-9)


def test_straightness_of_a_curved_flow_is_positive():
    _, s = reflow.euler_path(_swirl, jax.random.normal(jax.random.key(0), (16, 2)), 32)
    assert np.all(s > 0) and float(s.mean()) > 0.1


def test_couplings_are_reproducible_from_the_seed():
    make = lambda seed: reflow.make_couplings(_swirl, jax.random.key(seed), 32, (2,), 10)
    (n1, x1), (n2, x2), (n3, _) = make(3), make(3), make(4)
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(x1, x2)
    assert not np.allclose(n1, n3)


def test_interpolation_and_one_step():
    noise, data = jnp.ones((3, 2)), jnp.zeros((3, 2))
    x_t, target = reflow.interpolate(noise, data, jnp.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(x_t[:, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(target, noise - data)
    np.testing.assert_allclose(reflow.one_step(lambda x, t: x - data, noise), data)
