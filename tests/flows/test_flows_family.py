"""The flows family: exact bits/dim against a direct computation, configs, one short run."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from jaxmodels.config import load_config
from jaxmodels.layers import bijectors as bj
from jaxmodels.models.flows import loss, sample
from jaxmodels.models.flows.model import build_flow, sized
from jaxmodels.models.flows.task import build_task
from jaxmodels.train import loop

CONFIGS = ("nice", "realnvp", "glow")


def test_dequantize_stays_in_the_pixel_cell():
    x = jnp.arange(17, dtype=jnp.uint8).repeat(20).reshape(-1, 1)
    u = loss.dequantize(x, 17, jax.random.key(0))
    assert np.all(u >= x / 17) and np.all(u < (x + 1.0) / 17)


def test_bits_per_dim_equals_a_direct_computation():
    """A fixed tiny flow z = exp(s) * (u - 1/2) with a logistic prior, by hand with scipy."""
    flow = bj.Chain([bj.Shift(-0.5), bj.DiagonalScaling()])
    s = np.array([0.3, -0.2, 0.1], np.float32)
    params = {"layers_1": {"s": s}}
    x = np.random.default_rng(0).integers(0, 17, (7, 3)).astype(np.uint8)
    u = np.asarray(loss.dequantize(x, 17, jax.random.key(1)), np.float64)
    log_p = stats.logistic.logpdf(np.exp(s) * (u - 0.5)).sum(-1) + s.sum()
    expected = -(log_p - 3 * math.log(17)) / (3 * math.log(2))
    got = loss.bits_per_dim(loss.log_prob(flow, "logistic", params, jnp.asarray(u)), 17, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The held-out evaluator: every row once (chunks of 3 over 7 rows: padded and masked).
    heldout = sample.make_heldout_bpd(flow, "logistic", 17, x, chunk=3, seed=2)(params)
    keys = jax.random.split(jax.random.key(2), 3)
    rows = np.concatenate([x, x[:2]]).reshape(3, 3, 3)
    per_row = np.concatenate([
        loss.bits_per_dim(
            loss.log_prob(flow, "logistic", params, loss.dequantize(r, 17, k)), 17, 3
        ) for r, k in zip(rows, keys, strict=True)
    ])  # fmt: skip
    np.testing.assert_allclose(heldout, per_row[:7].mean(), rtol=1e-5)


def test_realnvp_fits_a_density_1_256_wide():
    """One pixel that is always 128 of 256 levels: u is uniform on [1/2, 1/2 + 1/256), which a
    perfect model scores at 0 bits/dim (a Gaussian of the right width at 0.26). RealNVP must
    expand that interval about 256-fold: couplings whose scale can only contract, with no
    normalisation after them, cannot (they stay above 7 bits/dim)."""
    m = load_config("experiments/flows/realnvp.py").model
    flow = build_flow(m, (1,))
    x = np.full((256, 1), 128, np.uint8)
    params = flow.init(jax.random.key(0), loss.dequantize(x, 256, jax.random.key(1)))["params"]
    loss_fn, opt = loss.nll_loss(flow, m.prior, 256, 1), optax.adam(1e-3)

    def step(carry, key):
        params, opt_state = carry
        grads, _ = jax.grad(loss_fn, has_aux=True)(params, {"image": x}, key)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), None

    keys = jax.random.split(jax.random.key(2), 200)
    train = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), keys)[0][0])
    bpd = sample.make_heldout_bpd(flow, m.prior, 256, x, 256, seed=3)(train(params))
    assert bpd < 0.5, bpd


@pytest.mark.parametrize(
    "name, shape, levels, width",
    [("nice", (8, 8, 1), None, 256), ("nice", (28, 28, 1), None, 1000),
     ("realnvp", (8, 8, 1), 2, 32), ("realnvp", (28, 28, 1), 3, 16),
     ("realnvp", (32, 32, 3), 3, 16), ("glow", (8, 8, 1), 2, 64), ("glow", (28, 28, 1), 2, 32),
     ("glow", (32, 32, 3), 3, 32)],
)  # fmt: skip
def test_default_sizes_follow_the_input(name, shape, levels, width):
    """The default configs leave levels and widths to the input's shape (model.sized)."""
    m = sized(load_config(f"experiments/flows/{name}.py").model, shape)
    assert m.width == width and (levels is None or m.num_levels == levels)
    explicit = load_config(f"experiments/flows/{name}.py").model
    explicit.width, explicit.num_levels = 7, 1
    assert (sized(explicit, shape).width, sized(explicit, shape).num_levels) == (7, 1)


def test_config_args_are_checked():
    with pytest.raises(ValueError, match="smok"):
        load_config("experiments/flows/glow.py:smok")
    config = load_config("experiments/flows/glow.py:smoke")
    config.model.unroll = -1
    with pytest.raises(ValueError, match="config.model.unroll=-1"):
        build_flow(config.model, (8, 8, 1))


@pytest.mark.parametrize("name", CONFIGS)
def test_task_shapes(name):
    """Every config builds; init and loss trace (shapes only: cheap)."""
    task = build_task(load_config(f"experiments/flows/{name}.py:smoke"), None)
    params = jax.eval_shape(task.init, jax.random.key(0))
    batch = next(task.train_data(0, 1))
    assert batch["image"].shape == (16, 8, 8, 1) and batch["image"].dtype == np.uint8
    value, metrics = jax.eval_shape(task.loss_fn, params, batch, jax.random.key(1))
    assert value.shape == () and metrics["bits_per_dim"].shape == ()


def test_glow_loss_and_samples():
    config = load_config("experiments/flows/glow.py:smoke")
    task = build_task(config, None)
    params = jax.jit(task.init)(jax.random.key(0))
    value, _ = jax.jit(task.loss_fn)(params, next(task.train_data(0, 1)), jax.random.key(1))
    assert 3 < float(value) < 8  # near the uniform 4.09 bits at init (actnorm-initialised)
    flow = build_flow(config.model, (8, 8, 1))
    u = sample.make_generate(flow, config.model.prior, (8, 8, 1))(params, jax.random.key(2), 4, 0.7)
    assert u.shape == (4, 8, 8, 1) and np.all(np.isfinite(u))


def test_train_eval_sample_from_user_files(tmp_path):
    """A NICE smoke run on an .npy of 4x4 RGB images: metrics.jsonl gets eval_bits_per_dim
    and `sample` writes one grid per temperature."""
    images = np.random.default_rng(0).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    config = load_config("experiments/flows/nice.py:smoke")
    config.data.path = str(tmp_path / "images.npy")
    config.train.steps = 2
    config.train.eval_every = 2
    workdir = str(tmp_path / "run")
    loop.train(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if "eval_bits_per_dim" in r]
    # Without its scaling, NICE at init maps z = u - 1/2 under the logistic prior (density ~1/4):
    # 2 + log2(256) = 10 bits. The data-initialised scaling standardises u (std 0.29 for these
    # uniform pixels) and gains on that; no model beats the uniform data's own 8 bits.
    assert evals and 8.0 < evals[-1]["eval_bits_per_dim"] < 9.5
    for t in config.sample.temperatures:
        assert os.path.exists(sample.temperature_path(workdir, t))


def test_smoke_trains_on_a_folder_of_mixed_sizes(tmp_path):
    """Grey and RGB PNGs of sizes 6x5 .. 10x11 read lazily as 8x8 RGB: the smoke config trains,
    logs eval_bits_per_dim and samples."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(30):
        shape = (6 + i % 5, 5 + (3 * i) % 7) + ((3,) if i % 3 else ())
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    config = load_config("experiments/flows/nice.py:smoke")
    config.data.update({"path": str(tmp_path), "image_size": 8, "channels": 3})
    config.train.steps = config.train.eval_every = config.train.checkpoint_every = 2
    workdir = str(tmp_path / "run")
    loop.train(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        evals = [r["eval_bits_per_dim"] for r in map(json.loads, f) if "eval_bits_per_dim" in r]
    # uniform pixels: no model beats their 8 bits; the identity flow's 10 (logistic prior) is
    # the ceiling the data-initialised scaling starts below
    assert evals and 8 < evals[-1] < 9.5
    assert all(
        os.path.exists(sample.temperature_path(workdir, t)) for t in config.sample.temperatures
    )


def test_evaluators_by_name():
    config = load_config("experiments/flows/nice.py:smoke,toy2d")
    assert config.evals == ("bits_per_dim",)
    config.evals = ("fd",)
    with pytest.raises(ValueError, match="offered: bits_per_dim"):
        build_task(config, None)
    config.evals = ()
    assert build_task(config, None).evaluate is None
