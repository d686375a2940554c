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


def test_teacher_couplings_are_chunked_and_reproducible():
    a = reflow.teacher_couplings(_swirl, 5, 10, (2,), 4, chunk=4)
    b = reflow.teacher_couplings(_swirl, 5, 10, (2,), 4, chunk=4)
    assert a["noise"].shape == a["image"].shape == (10, 2)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_allclose(a["image"], reflow.euler_path(_swirl, a["noise"], 4)[0], atol=1e-6)


def test_reflow_and_distillation_losses():
    """The losses regress F(x_t, (M - 1) t) on n - x_0, at t = 1 when distilling."""
    from jaxmodels.models.diffusion.model import DenoiserMLP
    from jaxmodels.models.diffusion.processes import get_process

    net, process = DenoiserMLP(width=8, depth=1), get_process("flow")
    noise, data = jax.random.normal(jax.random.key(0), (2, 6, 2))
    params = net.init(jax.random.key(1), noise, jnp.zeros(6))["params"]
    batch = {"noise": noise, "image": data}
    loss, _ = reflow.make_reflow_loss_fn(net, process, distill=True)(params, batch, None)
    v = net.apply({"params": params}, noise, jnp.full(6, process.M - 1.0))
    np.testing.assert_allclose(loss, jnp.mean((v - (noise - data)) ** 2), rtol=1e-6)
    x0 = reflow.one_step(reflow.velocity_fn(net, process, params), noise)
    np.testing.assert_allclose(x0, noise - v, rtol=1e-6)
    loss_t, _ = reflow.make_reflow_loss_fn(net, process, False)(params, batch, jax.random.key(2))
    assert np.isfinite(loss_t) and loss_t != loss


def test_diffusion_reads_user_images(tmp_path):
    from jaxmodels.config import load_config
    from jaxmodels.data.image_data import image_data
    from jaxmodels.data.images import split_rows
    from jaxmodels.models.diffusion import data
    from jaxmodels.models.diffusion.task import pooled_pixels

    images = np.random.default_rng(0).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    d = load_config("experiments/diffusion/digits.py:smoke").data
    d.path = str(tmp_path / "x.npy")
    dataset = image_data(d)
    train, held = dataset.split("train"), dataset.split("eval")
    assert dataset.shape == (16, 16, 3) and (len(train), len(held)) == (16, 4)
    x = data.scale(held.images[:], dataset.levels, 0.0)
    np.testing.assert_array_equal(x, images[split_rows(20, "eval", 0.2)] / np.float32(127.5) - 1)
    assert pooled_pixels(x).shape == (4, 8 * 8 * 3)
