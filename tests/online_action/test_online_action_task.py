"""The online_action family on the shared trainer: smoke training, losses, evaluation, sharding."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import NamedSharding

from jaxmodels import registry
from jaxmodels.config import DEFAULT_RULES, load_config
from jaxmodels.models.online_action import detectors
from jaxmodels.models.online_action import model as oa
from jaxmodels.models.online_action.config import experiment_config as experiment_config_of
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


def test_config_evals_choose_the_evaluators():
    config = experiment_config("gru", "smoke")
    assert tuple(config.evals) == ("map",)  # what the tests above evaluate
    build = registry.family_module(config.family).build_task
    config.evals = ()
    assert build(config, None).evaluate is None
    config.evals = ("mAP",)
    with pytest.raises(ValueError, match=r"\['mAP'\]; offered: map"):
        build(config, None)


@pytest.mark.parametrize("spec", ["trn.py:smok", "gru.py:smoke,sensr", "idn.py:thumos"])
def test_configs_reject_unknown_args(spec):
    with pytest.raises(ValueError, match="unknown config arg"):
        load_config(f"experiments/online_action/{spec}")


def test_a_new_detector_is_one_table_entry(monkeypatch):
    """An entry with its own option and loss is built, configured and trained by the family."""
    calls = []

    def loss(m, ambiguous):
        calls.append(m.scale)
        return lambda out, y: (m.scale * jnp.mean(out["scores"] ** 2), {})

    entry = detectors.Detector(
        oa.MLPDetector, {"scale": detectors.Option(2.0, "loss scale", smoke=3.0)}, loss
    )
    monkeypatch.setitem(detectors.DETECTORS, "probe", entry)
    config = experiment_config_of("probe", {"smoke"})
    assert config.model.scale == 3.0 and config.model.variant == "probe"
    task = registry.family_module(config.family).build_task(config, None)
    params = nn.unbox(jax.jit(task.init)(jax.random.key(0)))
    loss_value, _ = task.loss_fn(params, next(task.train_data(0, 1)), jax.random.key(1))
    assert calls == [3.0] and np.isfinite(loss_value)


def test_thumos_preset_is_trn_pytorch_recipe(tmp_path):
    """Adam 5e-4 with L2 5e-4 (as torch.optim.Adam), batch 32, 21 epochs of per-epoch offset
    windows, offset-0 decoder targets, N(0, 0.001) linear init; train.steps checked."""
    from jaxmodels.train import optim

    c = load_config("experiments/online_action/trn.py:thumos")
    m, d, t = c.model, c.data, c.train
    assert (m.width, m.dec_steps, m.future_offset, m.linear_init_std) == (4096, 8, 0, 0.001)
    assert (d.name, d.enc_steps, d.epochs, d.ambiguous) == ("files", 64, 21, 21)
    assert (t.optimizer, t.learning_rate, t.weight_decay, t.batch_size) == ("adam", 5e-4, 5e-4, 32)
    assert (t.grad_clip, t.schedule, t.warmup_steps, t.b2) == (0.0, "constant", 0, 0.999)
    # The optimizer is torch.optim.Adam(lr, weight_decay=L2) step for step.
    w0 = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    grads = [np.random.default_rng(i).normal(size=(3, 4)).astype(np.float32) for i in (1, 2, 3)]
    tx = optim.make_optimizer(t)
    w, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
    ref = torch.nn.Parameter(torch.tensor(w0))
    torch_opt = torch.optim.Adam([ref], lr=5e-4, weight_decay=5e-4)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, w)
        w = w + updates
        ref.grad = torch.tensor(g)
        torch_opt.step()
    np.testing.assert_allclose(w, ref.detach().numpy(), rtol=1e-5, atol=1e-7)
    # On a small TRN/LSTR layout: the step count for 21 epochs is named, then windows flow.
    rng = np.random.default_rng(0)
    for folder in (*d.feature_dirs, d.target_dir):
        (tmp_path / folder).mkdir()
    for s, n in (("a", 90), ("b", 70)):
        for folder in d.feature_dirs:
            np.save(tmp_path / folder / f"{s}.npy", rng.normal(size=(n, 3)).astype(np.float32))
        np.save(tmp_path / d.target_dir / f"{s}.npy", np.eye(22)[rng.integers(0, 22, n)])
    (tmp_path / "info.json").write_text(
        json.dumps({"THUMOS": {"train_session_set": ["a", "b"], "test_session_set": ["b"]}})
    )
    d.data_root, d.split_file, d.enc_steps = str(tmp_path), str(tmp_path / "info.json"), 16
    m.width, t.batch_size = 8, 2
    build = registry.family_module("online_action").build_task
    with pytest.raises(ValueError, match="pass --config.train.steps=73") as error:
        build(c, None)  # windows per epoch: (90-7-31)//16+1 = 4, (70-7-31)//16+1 = 3
    assert "of 7 windows" in str(error.value)
    t.steps = 73  # 21 epochs x 7 windows // batch 2
    batch = next(build(c, None).train_data(0, 1))
    assert batch["features"].shape == (2, 16, 6) and batch["targets"].shape == (2, 23, 22)


def test_bad_model_and_source_names_are_reported():
    config = experiment_config("trn", "smoke")
    config.model.variant = "tcn"
    with pytest.raises(ValueError, match="config.model.variant='tcn'"):
        build_model(config.model, 4, 3)
    config = experiment_config("gru", "smoke")
    config.data.name = "thumos"
    with pytest.raises(ValueError, match="config.data.name='thumos'"):
        registry.family_module("online_action").build_task(config, None)


def test_trn_sharded_over_data_fsdp_tensor_matches_one_device():
    """Logical names on params/activations shard TRN on a 2x2x2 mesh; outputs are unchanged."""
    model = oa.TRN(8, 5, width=16, fusion_size=8, dec_steps=2)
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
