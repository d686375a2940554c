"""The diffusion family: UNet, offline metrics, and smoke training/sampling through the trainer."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxmodels.config import load_config
from jaxmodels.data import toy2d
from jaxmodels.data.image_data import data_config, image_data
from jaxmodels.evaluate import generative
from jaxmodels.layers.unet import UNet, fit_levels
from jaxmodels.models.diffusion import data, sample, task
from jaxmodels.models.diffusion.model import build_network
from jaxmodels.samplers import analytic


def _config(name, arg="smoke"):
    return load_config(f"experiments/diffusion/{name}.py:{arg}")


def _digits(split="eval", size=0):
    """The family's digits ``split`` as it trains on them: float32 in [-1, 1], and labels."""
    d = data_config()
    d.image_size = size
    rows = image_data(d).split(split)
    return data.scale(rows.images, 17, 0.0), rows.labels


def test_frechet_distance_closed_form():
    """Diagonal covariances: FD = |mu1 - mu2|^2 + sum (s1 - s2)^2."""
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    fd = generative.frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2))
    np.testing.assert_allclose(fd, 5.0 + 2.0, rtol=1e-9)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3)) + [0.5, 0, 0]
    np.testing.assert_allclose(generative.frechet_distance_of(a, b), 0.25, atol=0.05)


def test_digits_quality_separates_real_from_noise():
    images, labels = _digits()
    real = generative.digits_quality(images[:300], labels[:300])
    noise = generative.digits_quality(np.random.default_rng(0).uniform(-1, 1, (300, 8, 8, 1)))
    assert real["fd"] < 0.2 * noise["fd"] and real["accuracy"] > 0.9
    assert real["class_entropy"] > 2.2  # all ten classes present (log 10 = 2.303)
    assert real["sample_entropy"] < noise["sample_entropy"]


def test_digits_arrays_are_the_evaluators_convention():
    """The family trains on what the evaluator compares against: shared digits, x / 8 - 1."""
    held, held_labels = _digits()
    images, labels = generative.digits_images("eval")
    np.testing.assert_array_equal(held, images)
    np.testing.assert_array_equal(held_labels, labels)
    assert images.shape[1:] == (8, 8, 1) and images.dtype == np.float32
    assert images.min() == -1 and images.max() == 1
    levels = np.unique((images + 1) * 8)
    np.testing.assert_array_equal(levels, np.round(levels))  # the 17 grey levels, exactly
    big = _digits(size=16)[0]
    np.testing.assert_array_equal(big[:, ::2, ::2], images)  # nearest-neighbour upsampling


def test_unet_shapes_and_logical_axes():
    """Abstract evaluation only (no compilation): the digits smoke run executes the UNet."""
    net = UNet(channels=8, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,), num_classes=10)
    x = jnp.ones((2, 8, 8, 1))
    args = (x, jnp.zeros((2,)), jnp.array([3, 10]))
    variables = jax.eval_shape(net.init, jax.random.key(0), *args)
    specs = nn.get_partition_spec(variables)["params"]
    assert specs["Conv_0"]["kernel"] == jax.sharding.PartitionSpec(None, None, None, "channels")
    assert specs["NoiseEmbedding_0"]["label_embedding"][0] == "classes"
    assert "SelfAttention_0" in specs["ResBlock_2"]  # attention at 4x4 only
    assert not any("SelfAttention" in k for k in specs["ResBlock_0"])
    out = jax.eval_shape(net.apply, nn.unbox(variables), *args)
    assert out.shape == x.shape and out.dtype == jnp.float32


@pytest.mark.parametrize("arg", ["bf16,smoke", "smoke"])
def test_unet_attention_chooses_cudnn_on_a_gpu_in_bf16(arg, gpu_kernel_choices):
    """The ``:bf16`` config's UNet computes in bfloat16 (float32 params, float32 out), so its
    self-attention (at 8x8 in the smoke config) chooses cuDNN on a GPU; float32 does not."""
    config = _config("digits", arg)
    net = build_network(config.model, jnp.dtype(config.train.compute_dtype), 10, (8, 8, 1))
    args = (jnp.zeros((2, 8, 8, 1)), jnp.zeros((2,)), jnp.zeros((2,), jnp.int32))
    out, variables = jax.eval_shape(net.init_with_output, jax.random.key(0), *args)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert out.dtype == jnp.float32
    kernels = [c.kernel for c in gpu_kernel_choices]
    assert kernels and set(kernels) == {"cudnn" if "bf16" in arg else "xla"}, kernels


def _abstract_params(net, shape, num_classes):
    """The parameter shapes of ``net`` on (1, *shape) inputs, and its output's abstract value."""
    args = (
        jnp.zeros((1, *shape)),
        jnp.zeros((1,)),
        jnp.zeros((1,), jnp.int32) if num_classes else None,
    )
    out, variables = jax.eval_shape(net.init_with_output, jax.random.key(0), *args)
    return jax.tree.map(lambda x: x.shape, nn.unbox(variables)["params"]), out


def test_unet_levels_fit_the_image():
    """The digits config sizes its UNet from the image: on 8x8 digits the network documented in
    docs/diffusion.md (the explicit (1, 2) widths with attention at 4x4, 659,937 parameters),
    on 28x28 grey and 32x32 RGB images three and four levels with attention at 14/7 and 16/4."""
    m = load_config("experiments/diffusion/digits.py").model
    assert (tuple(m.channel_mult), tuple(m.attn_resolutions)) == ((), ())  # fitted
    assert fit_levels(8, 8) == ((1, 2), (4,))
    assert fit_levels(28, 28) == ((1, 2, 2), (14, 7))
    assert fit_levels(32, 32) == ((1, 2, 2, 2), (16, 4))  # DDPM's CIFAR-10 levels
    assert fit_levels(27, 27) == ((1,), ())  # an odd side: one level
    digits, _ = _abstract_params(build_network(m, jnp.float32, 10, (8, 8, 1)), (8, 8, 1), 10)
    explicit = UNet(32, (1, 2), 1, (4,), 2, 0.1, "positional", 10)
    assert digits == _abstract_params(explicit, (8, 8, 1), 10)[0]
    assert sum(np.prod(s) for s in jax.tree.leaves(digits, is_leaf=_is_shape)) == 659_937
    for shape, low, high in (((28, 28, 1), 0.8e6, 1.6e6), ((32, 32, 3), 1.0e6, 2.2e6)):
        params, out = _abstract_params(build_network(m, jnp.float32, 0, shape), shape, 0)
        assert low < sum(np.prod(s) for s in jax.tree.leaves(params, is_leaf=_is_shape)) < high
        assert out.shape == (1, *shape)
        attends = [k for k, v in params.items() if "SelfAttention_0" in v]
        assert len(attends) == 7  # both attended levels: 1 block down + 2 up; the lowest + middle
    m.channel_mult = (1, 2, 2, 2)
    with pytest.raises(
        ValueError, match=r"channel_mult=\(1, 2, 2, 2\) has 4 levels.*28 -> 14 -> 7"
    ):
        build_network(m, jnp.float32, 0, (28, 28, 1))
    m.channel_mult, m.attn_resolutions = (), (4,)  # the digits' attention side, not MNIST's
    with pytest.raises(ValueError, match=r"attn_resolutions=\(4,\).*sides \(28, 14, 7\)"):
        build_network(m, jnp.float32, 0, (28, 28, 1))
    m.attn_resolutions = (0,)  # no attention
    params, _ = _abstract_params(build_network(m, jnp.float32, 0, (28, 28, 1)), (28, 28, 1), 0)
    assert not [k for k, v in params.items() if "SelfAttention_0" in v]


def _is_shape(x):
    return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def _train(name, workdir):
    from jaxmodels.train import loop

    config = _config(name)
    loop.train(config, str(workdir))
    lines = [json.loads(s) for s in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in x for x in lines) and any("eval_fd" in x for x in lines)
    assert all(np.isfinite(x["loss"]) for x in lines if "loss" in x)
    # train.sample_at_end: the family's sampler wrote its PNG and metrics after training
    metrics = json.loads((workdir / "sample_metrics.json").read_text())
    assert (workdir / "samples.png").exists() and np.isfinite(metrics["fd"])
    return metrics


def test_digits_smoke_trains(tmp_path):
    """The UNet family trains, evaluates (FD, accuracy) and samples through the trainer."""
    assert 0 <= _train("digits", tmp_path)["accuracy"] <= 1


def test_toy2d_quality():
    gm = toy2d.mixture("ring")
    real = np.asarray(gm.sample(jax.random.key(0), 2000))
    good = generative.mixture_quality(np.asarray(gm.sample(jax.random.key(1), 2000)), gm, real)
    blurred = generative.mixture_quality(
        real + np.random.default_rng(0).normal(0, 0.3, real.shape), gm, real
    )
    # FD on coordinates sees only moments; the data log-density sees the blur.
    assert good["fd"] < blurred["fd"] and good["mode_error"] < 0.02
    # Mode occupancy is measured against the weights, not 1/K.
    skewed = analytic.GaussianMixture((0.2, 0.8), ((-3.0, 0.0), (3.0, 0.0)), (0.5, 0.5))
    draws = np.asarray(skewed.sample(jax.random.key(2), 4000))
    assert generative.mixture_quality(draws, skewed, draws)["mode_error"] < 0.02
    assert (
        abs(good["sample_logp"] - good["data_logp"])
        < 0.1
        < good["data_logp"] - blurred["sample_logp"]
    )


def test_save_grid(tmp_path):
    import matplotlib.image

    images = np.linspace(-1, 1, 12 * 64).reshape(12, 8, 8, 1)
    sample.save_grid(images, str(tmp_path / "g.png"), nrow=5, scale=2)
    png = matplotlib.image.imread(tmp_path / "g.png")
    assert png.shape[:2] == (2 * (3 * 9 + 1), 2 * (5 * 9 + 1))


def test_every_process_gives_a_finite_loss_and_gradient():
    """Each Table 1 process plugs into the family with a finite loss and gradient."""
    batch = {"image": np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)}
    batch["label"] = np.zeros(8, np.int32)
    tasks = {}
    for name in ["vp", "ve", "iddpm", "edm", "flow"]:
        config = _config("toy2d")
        config.model.variant = name
        tasks[name] = task.build_task(config, None)

    @jax.jit  # one compilation for all five
    def losses(key):
        out = {}
        for name, t in tasks.items():
            params = nn.unbox(t.init(key))
            loss_fn = lambda p, t=t: t.loss_fn(p, batch, key)[0]
            loss, grads = jax.value_and_grad(loss_fn)(params)
            out[name] = (loss, sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
        return out

    for name, (loss, grad_sq) in losses(jax.random.key(0)).items():
        assert np.isfinite(loss) and np.isfinite(grad_sq) and grad_sq > 0, name


def _mixed_size_folder(root, n, classes=("",)):
    """``n`` random RGB PNGs of sizes 6x5 .. 10x11, spread over ``classes`` subfolders."""
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = 6 + i % 5, 5 + (3 * i) % 7
        path = root / classes[i % len(classes)] / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return str(root)


def test_class_conditional_smoke_config_on_a_folder_of_mixed_sizes(tmp_path):
    """Labelled subfolders are the classes of the class-conditional UNet; images of any size
    are brought to data.image_size; a gradient step on a training batch, the held-out loss and
    the pixel FD evaluator run. (The trainer's loop itself is test_digits_smoke_trains': a
    second full run would only repeat its compilations.)"""
    config = _config("digits")
    config.data.path = _mixed_size_folder(tmp_path / "images", 40, ("cat", "dog"))
    config.data.image_size = 8
    config.train.batch_size = 8
    config.sample.eval_num = 8
    t = task.build_task(config, None)
    batch = next(t.train_data(0, 1))
    assert batch["image"].shape == (8, 8, 8, 3) and set(batch["label"]) <= {0, 1}
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    params = nn.unbox(jax.jit(t.init)(jax.random.key(0)))
    assert params["NoiseEmbedding_0"]["label_embedding"].shape[0] == 3  # 2 classes + null

    @jax.jit
    def step(params, batch, eval_batch, key):
        loss, grads = jax.value_and_grad(lambda p: t.loss_fn(p, batch, key)[0])(params)
        grad_sq = sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))
        return loss, grad_sq, t.eval_fn(params, eval_batch, key)["loss"]

    eval_batch = next(iter(t.eval_data(0, 1)))
    loss, grad_sq, eval_loss = step(params, batch, eval_batch, jax.random.key(1))
    assert np.isfinite(loss) and np.isfinite(eval_loss) and np.isfinite(grad_sq) and grad_sq > 0
    metrics = t.evaluate(params, jax.random.key(2))
    assert np.isfinite(metrics["fd_pixels"]) and 0 <= metrics["fd_floor"] < metrics["fd_pixels"]
    config.data.path = _mixed_size_folder(tmp_path / "flat", 4)
    with pytest.raises(ValueError, match="class_conditional=True needs labelled data"):
        task.build_task(config, None)


def test_evaluators_by_name():
    config = _config("toy2d")
    config.evals = ("nope",)
    with pytest.raises(ValueError, match="offered: likelihood, quality, reflow"):
        task.build_task(config, None)
    config.evals = ("reflow",)  # not a reflow config
    with pytest.raises(ValueError, match="'reflow'.*config.reflow"):
        task.build_task(config, None)
    config.evals = ()
    assert task.build_task(config, None).evaluate is None
