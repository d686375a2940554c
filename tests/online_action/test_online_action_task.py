"""The online_action family on the shared trainer: smoke training, losses, evaluation, sharding."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from jaxmodels import registry
from jaxmodels.config import DEFAULT_RULES, load_config
from jaxmodels.models.online_action import model as oa
from jaxmodels.models.online_action.detectors import build_model


def experiment_config(name, arg="smoke"):
    return load_config(f"experiments/online_action/{name}.py:{arg}")


def test_smoke_training_through_the_trainer(tmp_path):
    from jaxmodels.train import loop

    config = experiment_config("gru", "smoke")
    loop.train(config, str(tmp_path))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if "loss" in r]
    evals = [r for r in lines if "eval_mAP" in r]
    assert train and all(np.isfinite(r["loss"]) for r in train)
    assert evals[-1]["step"] == config.train.steps
    assert 0.0 <= evals[-1]["eval_mAP"] <= 1.0 and 0.0 <= evals[-1]["eval_mcAP"] <= 1.0
    assert "eval_frame_loss" in evals[-1]


@pytest.mark.parametrize("name", ["trn", "idn", "mlp"])
def test_other_detectors_build_train_step_and_evaluate(name):
    config = experiment_config(name, "smoke")
    task = registry.family_module(config.family).build_task(config, None)
    params = nn.unbox(jax.jit(task.init)(jax.random.key(0)))
    batch = next(task.train_data(0, 1))
    frames = 16 + (2 if name == "trn" else 0)  # TRN: + dec_steps + future_offset - 1
    assert batch["features"].shape == (8, 16, 16) and batch["targets"].shape == (8, frames, 12)
    grad_fn = jax.value_and_grad(lambda p: task.loss_fn(p, batch, jax.random.key(1))[0])
    loss, grads = jax.jit(grad_fn)(params)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    result = task.evaluate(params, jax.random.key(2))
    future = {f"future_mAP_{j}" for j in (0, 1, 2)} if name == "trn" else set()
    assert set(result) == {"mAP", "mcAP"} | future
    assert all(0 <= v <= 1 for v in result.values())


def test_bad_model_and_source_names_are_reported():
    config = experiment_config("trn", "smoke")
    config.model.name = "lstm"
    with pytest.raises(ValueError, match="config.model.name='lstm'"):
        build_model(config.model, 4, 3)
    config = experiment_config("gru", "smoke")
    config.data.source = "thumos"
    with pytest.raises(ValueError, match="config.data.source='thumos'"):
        registry.family_module("online_action").build_task(config, None)


def test_trn_sharded_over_data_fsdp_tensor_matches_one_device():
    """Logical names on params/activations shard TRN on a 2x2x2 mesh; outputs are unchanged."""
    model = oa.TRN(8, 5, hidden_size=16, fusion_size=8, dec_steps=2)
    x = jax.random.normal(jax.random.key(0), (4, 6, 8))
    boxed = jax.jit(model.init)(jax.random.key(1), x)["params"]
    params = nn.unbox(boxed)
    expected, _ = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, x)
    mesh = jax.make_mesh(
        (2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3
    )
    specs = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, DEFAULT_RULES)
    sharded = jax.device_put(params, specs)
    assert any(len(a.sharding.device_set) > 1 for a in jax.tree.leaves(sharded))
    x_sharded = jax.device_put(x, NamedSharding(mesh, jax.P(("data", "fsdp"))))

    def forward(p, x):
        with nn.logical_axis_rules(DEFAULT_RULES):
            return model.apply({"params": p}, x)[0]

    with jax.set_mesh(mesh):
        got = jax.jit(forward)(sharded, x_sharded)
    np.testing.assert_allclose(got["scores"], expected["scores"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        got["future_scores"], expected["future_scores"], rtol=1e-4, atol=1e-5
    )
    assert jnp.isfinite(got["scores"]).all()
