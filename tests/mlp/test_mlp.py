"""The template family: shared digits split, template module, and its task's pure functions."""

import jax
import numpy as np
import pytest

from jaxmodels.config import config_args, load_config
from jaxmodels.data import digits
from jaxmodels.models.mlp.task import build_task, digits_arrays


def test_digits_splits_are_disjoint_and_cover_the_set():
    train, held = digits_arrays("train"), digits_arrays("eval")
    assert len(train["image"]) + len(held["image"]) == 1797
    assert len(held["image"]) == int(1797 * 0.2)
    assert train["image"].shape[1] == 64 and 0 <= train["image"].min() < train["image"].max() == 1
    rows = {r.tobytes() for r in digits.digits("eval")[0]}
    assert not any(r.tobytes() in rows for r in digits.digits("train")[0][:200])


def test_task_loss_and_eval_are_finite_and_deterministic_in_eval():
    config = load_config("experiments/mlp/digits.py:smoke")
    task = build_task(config, None)
    params = task.init(jax.random.key(0))
    batch = next(task.train_data(0, 1))
    assert batch["image"].shape == (config.train.batch_size, 64)
    loss, metrics = task.loss_fn(params, batch, jax.random.key(1))
    assert np.isfinite(loss) and 0 <= metrics["accuracy"] <= 1
    a = task.eval_fn(params, batch, jax.random.key(2))
    b = task.eval_fn(params, batch, jax.random.key(3))
    np.testing.assert_array_equal(a["loss"], b["loss"])  # no dropout at eval


def test_config_args_reject_typos_naming_the_allowed():
    assert config_args("smoke", ("smoke",)) == {"smoke"}
    assert config_args(None, ("smoke",)) == frozenset()
    with pytest.raises(ValueError, match="'smok'.*allowed: smoke"):
        load_config("experiments/mlp/digits.py:smok")
