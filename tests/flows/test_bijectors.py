"""Bijector properties: exact inverses, log-determinants equal to slogdet of the Jacobian in
both directions, a normalised 2-D density, actnorm's data-dependent init; parity with distrax
where it has the same bijector."""

from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers import bijectors as bj
from jaxmodels.models.flows.model import couplings

IMAGE = (2, 2, 2, 2)
VECTOR = (2, 6)


def _image_chain():
    inner = bj.Chain(
        [bj.ActNorm(), bj.InvConv1x1(seed=3), bj.AffineCoupling("channel", 1, hidden=8)]
    )
    return bj.Chain([bj.Squeeze(), bj.FactorOut(inner), bj.Squeeze(undo=True)])


LAYERS = {
    "additive_halves": (lambda: bj.AdditiveCoupling("halves", 0, "mlp", 16, 2), VECTOR),
    "additive_checkerboard": (lambda: bj.AdditiveCoupling("checkerboard", 0, "conv", 8, 1), IMAGE),
    "affine_checkerboard": (lambda: bj.AffineCoupling("checkerboard", 1, hidden=8), IMAGE),
    "affine_tanh": (lambda: bj.AffineCoupling("channel", 0, hidden=8, scale="tanh"), IMAGE),
    "diagonal_scaling": (lambda: bj.DiagonalScaling(), VECTOR),
    "actnorm": (lambda: bj.ActNorm(), IMAGE),
    "invconv1x1": (lambda: bj.InvConv1x1(seed=1), IMAGE),
    "squeeze": (lambda: bj.Squeeze(), IMAGE),
    "logit": (lambda: bj.Logit(), VECTOR),
    "shift": (lambda: bj.Shift(), VECTOR),
    "multiscale_chain": (_image_chain, IMAGE),
    "glow_steps_scan": (lambda: bj.Repeat(bj.StepOfFlow, 3, {"seed": 5, "steps": 3, "hidden": 8},
                                          indexed=True), IMAGE),
    "realnvp_couplings_scan": (lambda: couplings(3, "affine", "checkerboard", "conv",
                                                 SimpleNamespace(width=8, depth=1)), IMAGE),
    "repeat_scan": (lambda: bj.Repeat(bj.AffineCoupling, 3, {"mask": "odd_even", "net": "mlp",
                                                             "hidden": 16, "depth": 1}), VECTOR),
}  # fmt: skip


def _setup(name):
    """A layer, perturbed params (so zero-initialised nets are not the identity), and x."""
    make, shape = LAYERS[name]
    layer = make()
    x = jax.random.normal(jax.random.key(0), shape)
    if name == "logit":
        x = jax.nn.sigmoid(x)  # Logit's domain is [0, 1]
    return layer, _perturbed(layer, x, 0.2), x


def _perturbed(layer, x, scale):
    """Initialised parameters plus Gaussian noise of ``scale``, all in one jitted call."""

    def init(x):
        params = layer.init(jax.random.key(1), x)
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(2), len(leaves))
        noise = [scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
        return jax.tree.unflatten(tree, [p + n for p, n in zip(leaves, noise, strict=True)])

    return jax.jit(init)(x)


def _slogdet(layer, params, v, inverse):
    """log |det J| of the map v -> layer(v) for one example, from jax.jacobian."""
    shape = v.shape
    f = lambda flat: layer.apply(params, flat.reshape((1,) + shape), inverse=inverse)[0].ravel()
    return jnp.linalg.slogdet(jax.jacfwd(f)(v.ravel()))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_inverse_and_log_det(name):
    layer, params, x = _setup(name)
    y, ld = jax.jit(lambda p, x: layer.apply(p, x))(params, x)
    x_back, ld_inv = jax.jit(lambda p, y: layer.apply(p, y, inverse=True))(params, y)
    scale = float(jnp.abs(x).max())
    np.testing.assert_allclose(x_back, x, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(ld_inv, -ld, rtol=1e-5, atol=1e-5)
    slogdet = jax.jit(jax.vmap(lambda p, v, inv: _slogdet(layer, p, v, inv), (None, 0, None)),
                      static_argnums=2)  # fmt: skip
    for v, log_det, inverse in [(x, ld, False), (y, ld_inv, True)]:
        sign, expected = slogdet(params, v, inverse)
        assert np.all(sign != 0)
        np.testing.assert_allclose(log_det, expected, rtol=1e-4, atol=1e-4)


def test_couplings_change_only_their_part():
    layer, params, x = _setup("affine_checkerboard")
    y, _ = layer.apply(params, x)
    b = bj.partition_mask("checkerboard", x.shape[1:], 1).astype(bool)
    np.testing.assert_array_equal(np.asarray(y)[:, b], np.asarray(x)[:, b])
    assert not np.allclose(np.asarray(y)[:, ~b], np.asarray(x)[:, ~b])


def test_masks_alternate():
    for kind, shape in [("checkerboard", (4, 4, 2)), ("channel", (2, 2, 4)), ("halves", (6,)),
                        ("odd_even", (5,))]:  # fmt: skip
        b0, b1 = bj.partition_mask(kind, shape, 0), bj.partition_mask(kind, shape, 1)
        np.testing.assert_array_equal(b0 + b1, np.ones(shape))
        assert 0 < b0.sum() < b0.size
    with pytest.raises(ValueError, match="partitions images"):
        bj.partition_mask("checkerboard", (6,), 0)


def test_actnorm_data_dependent_init():
    x = 3.0 + 2.5 * jax.random.normal(jax.random.key(0), (16, 4, 4, 3)) * jnp.arange(1, 4)
    layer = bj.ActNorm()
    y, _ = layer.apply(layer.init(jax.random.key(1), x), x)
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std((0, 1, 2)), 1.0, atol=1e-5)


def test_squeeze_layout():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    y = bj.squeeze(x)
    assert y.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(y[0, 0, 0], [0, 1, 4, 5])  # the top-left 2x2 patch
    np.testing.assert_array_equal(bj.unsqueeze(y), x)


def test_2d_flow_density_integrates_to_one():
    layers = [bj.AffineCoupling("halves", i % 2, "mlp", 16, 2) for i in range(4)]
    flow = bj.Chain(layers + [bj.DiagonalScaling()])
    params = _perturbed(flow, jnp.zeros((1, 2)), 0.1)
    g = jnp.linspace(-12, 12, 481)
    grid = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
    for prior in bj.priors.PRIORS:
        z, ld = jax.jit(flow.apply)(params, grid)
        density = jnp.exp(bj.priors.log_prob(prior, z) + ld)
        total = float(density.sum() * (g[1] - g[0]) ** 2)
        assert abs(total - 1) < 0.01, (prior, total)


def test_scanned_steps_of_flow_equal_unrolled_ones():
    """Glow's K steps as one scan: step k is StepOfFlow(seed + k) with its slice of the stacked
    parameters, and its actnorm was initialised from its own input (Glow §3.1)."""
    x = 0.5 + 2.0 * jax.random.normal(jax.random.key(0), (16, 2, 2, 4))
    kwargs = {"seed": 5, "steps": 3, "hidden": 8}
    scanned = bj.Repeat(bj.StepOfFlow, 3, kwargs, indexed=True)
    steps = [bj.StepOfFlow(**(kwargs | {"seed": 5 + k, "steps": 1})) for k in range(3)]

    def unrolled(params, h, check_init=False):
        for k, step in enumerate(steps):
            p = jax.tree.map(lambda a, k=k: a[k], params["params"]["blocks"]["StepOfFlow_0"])
            if check_init:
                an = p["ActNorm_0"]
                np.testing.assert_allclose(an["bias"], -h.mean((0, 1, 2)), rtol=1e-4, atol=1e-4)
                logs = an["logs"] * bj.ActNorm.logscale_factor
                np.testing.assert_allclose(logs, -jnp.log(h.std((0, 1, 2))), atol=1e-4)
            h, _ = step.apply({"params": p}, h)
        return h

    params = nn.meta.unbox(_perturbed(scanned, x, 0.0))
    unrolled(params, x, check_init=True)
    params = nn.meta.unbox(_perturbed(scanned, x, 0.2))
    y, log_det = jax.jit(scanned.apply)(params, x)
    np.testing.assert_allclose(y, jax.jit(unrolled)(params, x), rtol=1e-5, atol=1e-5)
    for unroll in (2, 3):  # the loop's unrolling changes the program, not the map
        repeat = bj.Repeat(bj.StepOfFlow, 3, kwargs, indexed=True, unroll=unroll)
        y_u, log_det_u = jax.jit(repeat.apply)(params, x)
        np.testing.assert_allclose(y_u, y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(log_det_u, log_det, rtol=1e-5, atol=1e-5)
        x_u, _ = jax.jit(lambda p, y: repeat.apply(p, y, inverse=True))(params, y_u)
        np.testing.assert_allclose(x_u, x, rtol=1e-4, atol=1e-4)
