"""Non-gradient model state (``Task.init_model_state``): threaded through steps and
micro-batches, never differentiated, kept on a non-finite step, checkpointed with the rest."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmodels.config import base_config
from jaxmodels.parallel import mesh as mesh_lib
from jaxmodels.train import state as state_lib
from jaxmodels.train import step as step_lib
from jaxmodels.train.checkpoint import Checkpointer
from jaxmodels.train.task import Task

B, D = 8, 3


def _loss(params, batch, rng):
    pred = batch["x"] @ params["w"]
    return jnp.mean((pred - batch["y"]) ** 2), {"pred": pred.mean()}


def _stateful_loss(params, batch, rng, s):
    """The plain loss; the state counts rows and keeps the momentum copy of w (decay 0.5)."""
    loss, metrics = _loss(params, batch, rng)
    w_m = 0.5 * s["w_m"] + 0.5 * jax.lax.stop_gradient(params["w"])
    rows = s["rows"] + batch["x"].shape[0]
    return loss + 0.0 * jnp.sum(w_m), (metrics, {"w_m": w_m, "rows": rows})


def _task(stateful: bool) -> Task:
    extra = {}
    if stateful:
        init_state = lambda p: {"w_m": jnp.zeros_like(p["w"]), "rows": jnp.zeros((), jnp.int32)}
        extra = dict(init_model_state=init_state, eval_fn=lambda p, b, r: _loss(p, b, r)[1])
    return Task(
        init=lambda rng: {"w": jax.random.normal(rng, (D,))},
        loss_fn=_stateful_loss if stateful else _loss,
        train_data=None,
        **extra,
    )


def _batches(n, bad=None):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = rng.normal(size=(B, D)).astype(np.float32)
        y = (x @ np.arange(1.0, D + 1)).astype(np.float32)
        out.append({"x": x, "y": np.full_like(y, np.nan) if i == bad else y})
    return out


def _run(task, batches, grad_accum=1):
    mesh = mesh_lib.make_mesh(base_config().mesh, jax.devices()[:1])
    rules = mesh_lib.rules_from_config(base_config().mesh.rules)
    tx, rng = optax.sgd(0.1), jax.random.key(0)
    kw = dict(use_ema=False, init_model_state=task.init_model_state)
    with jax.set_mesh(mesh):
        _, shardings = state_lib.state_shardings(task.init, tx, rng, mesh, rules, **kw)
        state = state_lib.create_state(task.init, tx, rng, shardings, **kw)
    bshard = mesh_lib.batch_shardings(batches[0], mesh, rules, {})
    step = step_lib.build_train_step(
        task, tx, mesh=mesh, rules=rules, state_sharding=shardings, batch_sharding=bshard,
        seed=0, grad_accum=grad_accum,
    )  # fmt: skip
    states = [jax.device_get(state)]  # the step donates its input
    for batch in batches:
        state, _ = step(state, mesh_lib.put_batch(batch, bshard))
        states.append(jax.device_get(state))
    return states


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_state_is_threaded_and_never_changes_the_gradients(grad_accum):
    plain = _run(_task(False), _batches(3), grad_accum)
    stateful = _run(_task(True), _batches(3), grad_accum)
    for a, b in zip(plain, stateful, strict=True):
        np.testing.assert_array_equal(a.params["w"], b.params["w"])
        assert a.model_state is None
    w_m = np.zeros(D, np.float32)
    for k in range(1, 4):  # one momentum update per micro-batch, in order
        for _ in range(grad_accum):
            w_m = 0.5 * w_m + 0.5 * np.asarray(plain[k - 1].params["w"])
        assert int(stateful[k].model_state["rows"]) == k * B
        np.testing.assert_allclose(stateful[k].model_state["w_m"], w_m, rtol=1e-6)


def test_non_finite_step_keeps_the_old_state():
    states = _run(_task(True), _batches(3, bad=1))
    assert int(states[2].model_state["rows"]) == int(states[1].model_state["rows"]) == B
    np.testing.assert_array_equal(states[2].model_state["w_m"], states[1].model_state["w_m"])
    assert int(states[3].model_state["rows"]) == 2 * B


def test_state_is_checkpointed(tmp_path):
    state = _run(_task(True), _batches(2))[-1]
    ckpt = Checkpointer(str(tmp_path), keep=1)
    ckpt.save(2, state)
    ckpt.wait()
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    got, step = Checkpointer(str(tmp_path), keep=1).restore(target)
    assert step == 2 and int(got.model_state["rows"]) == 2 * B
    np.testing.assert_array_equal(got.model_state["w_m"], state.model_state["w_m"])


def test_a_stateful_task_must_give_eval_fn():
    with pytest.raises(ValueError, match="eval_fn"):
        Task(init=None, loss_fn=_stateful_loss, train_data=None, init_model_state=lambda p: {})
