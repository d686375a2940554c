"""``config.train.debug_checks``: off, the train step is the same program; on, it computes the
same step, and a batch of another shape or with a NaN stops it with a message naming the step
and the leaf."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.config import load_config
from jaxmodels.parallel import mesh as mesh_lib
from jaxmodels.train import loop
from jaxmodels.train import state as state_lib
from jaxmodels.train.debug import DebugCheckError


@pytest.fixture(scope="module")
def run():
    return loop.build(load_config("experiments/mlp/digits.py:smoke"), None)


def _step(run, debug_checks=None):
    """The run's train step and first batch (``debug_checks`` None: the key at its default)."""
    train = run.config.train
    default = train.debug_checks
    if debug_checks is not None:
        train.debug_checks = debug_checks
    try:
        first = next(run.task.train_data(0, 1))
        step, bshard = loop.build_train_step(run, first)
    finally:
        train.debug_checks = default
    return step, mesh_lib.put_batch(first, bshard)


def test_off_by_default_and_then_the_same_program(run):
    assert run.config.train.debug_checks is False
    off, batch = _step(run, False)
    lower = lambda step: step.lower(run.abstract_state, batch).as_text()  # noqa: E731
    assert lower(off) == lower(_step(run)[0])  # the default builds exactly this program
    assert lower(off) != lower(_step(run, True)[0])  # which the checks, when on, change


def test_checks_pass_the_same_step_and_name_a_bad_batch(run):
    with jax.set_mesh(run.mesh):
        state = state_lib.create_state(
            run.task.init, run.tx, jax.random.key(0), run.state_sharding, use_ema=False
        )
    (plain, batch), (checked, _) = _step(run, False), _step(run, True)
    copy = jax.tree.map(jnp.copy, state)  # each step donates its state
    want, got = plain(copy, batch), checked(state, batch)
    chex.assert_trees_all_equal(jax.device_get(got), jax.device_get(want))
    state = got[0]

    short = {k: v[:8] for k, v in batch.items()}
    with pytest.raises(DebugCheckError, match=r"step 2: the batch differs from the first.*image"):
        checked(state, short)  # refused on the host: nothing compiled, the state kept

    image = np.array(batch["image"])
    image[3, 5] = np.nan
    bad = {**batch, "image": jax.device_put(image, batch["image"].sharding)}
    with pytest.raises(DebugCheckError, match=r"debug_checks: step 2: batch image holds NaN"):
        checked(state, bad)
