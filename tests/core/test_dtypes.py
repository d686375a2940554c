"""``train.param_dtype`` and ``train.opt_state_dtype``: float32 by default and exact, bf16 runs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmodels.config import base_config, load_config
from jaxmodels.train import loop, optim
from jaxmodels.train import state as state_lib


def _params():
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32), "b": jnp.zeros(4)}


def _loss(p, x):
    return jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2)


def _run(tx, params, steps=5):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(16, 8)), jnp.float32)
    opt_state = tx.init(params)
    for _ in range(steps):
        grads = jax.grad(_loss)(params, x)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return params, opt_state


def test_float32_default_is_bit_identical_to_the_plain_optimizer():
    t = base_config().train
    assert (t.param_dtype, t.opt_state_dtype) == ("float32", "float32")
    plain = optax.chain(
        optax.clip_by_global_norm(t.grad_clip),
        optax.adamw(
            optim.learning_rate_schedule(t), t.b1, t.b2, t.eps, weight_decay=t.weight_decay,
            mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p),
        ),
    )  # fmt: skip
    got, ref = _run(optim.make_optimizer(t), _params()), _run(plain, _params())
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    init = lambda rng: _params()  # noqa: E731
    assert state_lib.with_param_dtype(init, t) is init


def test_bf16_moments_are_stored_in_bf16_and_track_float32():
    t = base_config().train
    t.opt_state_dtype = "bfloat16"
    params, opt_state = _run(optim.make_optimizer(t), _params())
    dtypes = {x.dtype for x in jax.tree.leaves(opt_state)}
    assert dtypes == {jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.int32)}  # moments; step counts
    ref, _ = _run(optim.make_optimizer(base_config().train), _params())
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, atol=2e-3)  # bf16 moments: close, not equal


def test_bf16_params_and_moments_train_through_the_core(tmp_path):
    config = load_config("experiments/mlp/digits.py:smoke")
    config.train.param_dtype = config.train.opt_state_dtype = "bfloat16"
    config.train.learning_rate = 1e-2
    run = loop.build(config, str(tmp_path))
    state, _ = loop.restore_or_init(run)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.params))
    data = run.task.train_data(0, 1)
    first = next(data)
    step, shardings = loop.build_train_step(run, first)
    losses = []
    for batch in [first, *(next(data) for _ in range(29))]:
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.params))
    mu = state.opt_state[1][0].mu
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(mu))
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < np.mean(losses[:5])


def test_bf16_params_keep_float32_moments_by_default():
    t = base_config().train
    t.param_dtype = "bfloat16"
    init = state_lib.with_param_dtype(lambda rng: _params(), t)
    params = init(jax.random.key(0))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params))
    opt_state = optim.make_optimizer(t).init(params)
    floats = [x for x in jax.tree.leaves(opt_state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert all(x.dtype == jnp.float32 for x in floats)
