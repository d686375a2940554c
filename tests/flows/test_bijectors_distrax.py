"""Parity with distrax (an independent implementation) where it has the same bijector:
masked couplings with an affine inner map, a diagonal affine map, and the two priors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers import bijectors as bj

distrax = pytest.importorskip("distrax")


def _coupling_parity(layer, x, inner_fn, features):
    """Our coupling vs distrax.MaskedCoupling with our conditioner and ``inner_fn(out)``."""
    params = jax.tree.map(lambda p: p + 0.3, layer.init(jax.random.key(1), x))
    net_params = {"params": params["params"]["MLPConditioner_0"]}
    net = bj.MLPConditioner(features, 16, 2)
    if "rescale" in params["params"]:
        inner_fn = inner_fn(params["params"]["rescale"])
    mask = bj.partition_mask(layer.mask, x.shape[1:], layer.parity).astype(bool)
    ref = distrax.MaskedCoupling(mask, lambda xb: net.apply(net_params, xb), inner_fn)
    y, ld = layer.apply(params, x)
    y_ref, ld_ref = ref.forward_and_log_det(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ld, ld_ref, rtol=1e-5, atol=1e-5)
    x_back, ld_inv = layer.apply(params, y, inverse=True)
    x_ref, ld_inv_ref = ref.inverse_and_log_det(y)
    np.testing.assert_allclose(x_back, x_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ld_inv, ld_inv_ref, rtol=1e-5, atol=1e-5)


def _affine(out):
    """(x + t) * s with s = sigmoid(h + 2): distrax's ScalarAffine with shift t * s, scale s."""
    h, t = jnp.split(out, 2, axis=-1)
    s = jax.nn.sigmoid(h + 2.0)
    return distrax.ScalarAffine(shift=t * s, scale=s)


def _affine_tanh(rescale):
    """(x + t) * exp(r tanh(h)) (RealNVP's scale) as distrax's ScalarAffine."""

    def inner(out):
        h, t = jnp.split(out, 2, axis=-1)
        s = jnp.exp(rescale * jnp.tanh(h))
        return distrax.ScalarAffine(shift=t * s, scale=s)

    return inner


def test_additive_coupling_matches_distrax():
    x = jax.random.normal(jax.random.key(0), (3, 6))
    layer = bj.AdditiveCoupling("odd_even", 1, "mlp", 16, 2)
    _coupling_parity(layer, x, lambda m: distrax.ScalarAffine(shift=m), 6)


def test_affine_coupling_matches_distrax():
    x = jax.random.normal(jax.random.key(0), (3, 6))
    _coupling_parity(bj.AffineCoupling("halves", 0, "mlp", 16, 2), x, _affine, 12)


def test_affine_coupling_tanh_scale_matches_distrax():
    x = jax.random.normal(jax.random.key(0), (3, 6))
    layer = bj.AffineCoupling("odd_even", 1, "mlp", 16, 2, scale="tanh")
    _coupling_parity(layer, x, _affine_tanh, 12)


def test_diagonal_scaling_matches_distrax():
    x = jax.random.normal(jax.random.key(0), (3, 5))
    s = jnp.linspace(-1, 1, 5)
    y, ld = bj.DiagonalScaling().apply({"params": {"s": s}}, x)
    ref = distrax.Block(distrax.ScalarAffine(shift=0.0, log_scale=s), 1)
    y_ref, ld_ref = ref.forward_and_log_det(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6)
    np.testing.assert_allclose(ld, ld_ref, rtol=1e-6)


@pytest.mark.parametrize("name", bj.priors.PRIORS)
def test_priors_match_distrax(name):
    z = jax.random.normal(jax.random.key(0), (4, 3, 2)) * 3
    ref = {"normal": distrax.Normal(0.0, 1.0), "logistic": distrax.Logistic(0.0, 1.0)}[name]
    expected = ref.log_prob(z).reshape(4, -1).sum(-1)
    np.testing.assert_allclose(bj.priors.log_prob(name, z), expected, rtol=1e-5)
