"""``train.lr_multipliers``: per-parameter learning-rate factors chosen by name."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmodels.config import base_config, validate
from jaxmodels.train import optim


def _params():
    return {"tower": {"kernel": jnp.ones((3, 2))}, "t_prime": jnp.asarray(2.0), "b": jnp.zeros(())}


def _updates(train):
    params = _params()
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    tx = optim.make_optimizer(train)
    updates, _ = tx.update(grads, tx.init(params), params)
    return updates


def test_multiplier_scales_the_named_parameters_step_only():
    t = base_config().train
    t.update(warmup_steps=0, weight_decay=0.0, grad_clip=0.0)
    plain = _updates(t)
    t.lr_multipliers = "t_prime=10, b=0"
    scaled = _updates(t)
    np.testing.assert_allclose(scaled["t_prime"], 10 * plain["t_prime"], rtol=1e-6)
    assert float(scaled["b"]) == 0.0 and float(plain["b"]) != 0.0
    np.testing.assert_array_equal(scaled["tower"]["kernel"], plain["tower"]["kernel"])


def test_names_match_the_whole_path_or_its_last_part():
    tx = optim.scale_by_name({"tower/.*": 3.0, "t_.*": 2.0})
    ones = jax.tree.map(jnp.ones_like, _params())
    out, _ = tx.update(ones, tx.init(ones))
    assert (float(out["tower"]["kernel"][0, 0]), float(out["t_prime"]), float(out["b"])) == (
        3.0, 2.0, 1.0,
    )  # fmt: skip
    assert isinstance(tx.init(ones), optax.EmptyState)


@pytest.mark.parametrize("spec", ["t_prime", "t_prime=x", "=2", "b=-1", "[=2"])
def test_bad_spec_names_the_key(spec):
    c = base_config()
    c.family = "mlp"
    c.train.lr_multipliers = spec
    with pytest.raises(ValueError, match="config.train.lr_multipliers"):
        validate(c)
