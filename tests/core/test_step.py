"""The train step's non-finite guard (``step.update_is_finite``): decided from the loss and the
gradient norm before the update, a bad step leaves the whole state as it was, and the compiled
step tests no parameter-sized buffer for finiteness."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmodels.config import base_config, validate
from jaxmodels.parallel import mesh as mesh_lib
from jaxmodels.train import optim
from jaxmodels.train import state as state_lib
from jaxmodels.train import step as step_lib
from jaxmodels.train.task import Task

B, D, F = 8, 256, 512  # F x D = 131072 elements: a "parameter-sized" buffer


def _task() -> Task:
    def loss_fn(params, batch, rng):
        pred = jnp.tanh(batch["x"] @ params["w"]) @ params["v"]
        return jnp.mean((pred - batch["y"]) ** 2), {}

    def init(rng):
        k1, k2 = jax.random.split(rng)
        w = jax.random.normal(k1, (D, F)) / np.sqrt(D)
        return {"w": w, "v": jax.random.normal(k2, (F,)) / np.sqrt(F)}

    return Task(init=init, loss_fn=loss_fn, train_data=None)


def _build(task, batch, grad_accum=1):
    config = base_config()
    config.train.update(warmup_steps=0, grad_clip=1.0)
    mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
    rules = mesh_lib.rules_from_config(config.mesh.rules)
    tx, rng = optim.make_optimizer(config.train), jax.random.key(0)
    with jax.set_mesh(mesh):
        _, shardings = state_lib.state_shardings(task.init, tx, rng, mesh, rules, use_ema=True)
        state = state_lib.create_state(task.init, tx, rng, shardings, use_ema=True)
    bshard = mesh_lib.batch_shardings(batch, mesh, rules, {})
    step = step_lib.build_train_step(
        task, tx, mesh=mesh, rules=rules, state_sharding=shardings, batch_sharding=bshard,
        seed=0, grad_accum=grad_accum, ema_decay=0.9,
    )  # fmt: skip
    return step, state, bshard


def _batch(rng, nan=False):
    x = rng.normal(size=(B, D)).astype(np.float32)
    y = np.full(B, np.nan if nan else 1.0, np.float32)
    return {"x": x, "y": y}


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_a_nan_batch_leaves_params_moments_ema_and_step_as_they_were(grad_accum):
    rng = np.random.default_rng(0)
    batches = [_batch(rng), _batch(rng, nan=True), _batch(rng)]
    step, state, bshard = _build(_task(), batches[0], grad_accum)
    states, finite = [jax.device_get(state)], []
    for batch in batches:
        state, m = step(state, mesh_lib.put_batch(batch, bshard))
        states.append(jax.device_get(state))
        finite.append(float(m["finite"]))
    assert finite == [1.0, 0.0, 1.0]
    jax.tree.map(np.testing.assert_array_equal, states[2], states[1])  # bit for bit
    assert int(states[3].step) == 2
    assert not np.array_equal(states[3].params["w"], states[2].params["w"])


def test_the_compiled_step_tests_no_parameter_sized_buffer_for_finiteness():
    """The old guard tested the new params, both Adam moments and the EMA (an ``is-finite``
    over each, then a second pass to select); now only scalars are tested."""
    rng = np.random.default_rng(0)
    batch = _batch(rng)
    step, state, bshard = _build(_task(), batch)
    text = step.lower(state, mesh_lib.put_batch(batch, bshard)).compile().as_text()
    big = [
        line
        for line in text.splitlines()
        if " is-finite(" in line
        and (m := re.search(r"pred\[([\d,]+)\]", line))
        and np.prod([int(d) for d in m.group(1).split(",")]) >= F * D
    ]
    assert big == []


@pytest.mark.parametrize("name", ["adamw", "adam", "lion", "sgd"])
def test_finite_gradients_with_a_finite_norm_give_a_finite_state(name):
    """The argument of ``update_is_finite``: zero gradients (Adam's v = 0), squares that
    underflow, and the largest gradients whose norm is still finite all give finite updates."""
    t = base_config().train
    t.update(optimizer=name, warmup_steps=0, grad_clip=0.0, learning_rate=1.0, b1=0.9)
    tx = optim.make_optimizer(t)
    params = {"w": jnp.ones((4, 4)), "b": jnp.ones((4,))}
    state = tx.init(params)
    for g in (0.0, 1e-30, 1e-23, 4e18, -4e18, 0.0):
        grads = jax.tree.map(lambda p, g=g: jnp.full_like(p, g), params)
        assert np.isfinite(float(optax.global_norm(grads)))
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        for leaf in jax.tree.leaves((params, state)):
            assert np.isfinite(np.asarray(leaf)).all(), (name, g)


def test_adam_needs_a_positive_eps():
    config = base_config()
    config.train.eps = 0.0
    with pytest.raises(ValueError, match=r"config.train.eps=0.0 must be finite and > 0"):
        validate(config)


def test_clipping_with_the_steps_norm_equals_optax():
    """The step passes its gradient norm to the clipping (``optim.clip_by_global_norm``)
    instead of letting it read the gradients again; the result is optax's, bit for bit."""
    rng = np.random.default_rng(0)
    grads = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "b": jnp.ones(3)}
    for max_norm in (0.5, 100.0):
        ref, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
        clip = optim.clip_by_global_norm(max_norm)
        got, _ = clip.update(grads, clip.init(grads), grad_norm=optax.tree.norm(grads))
        jax.tree.map(np.testing.assert_array_equal, got, ref)
