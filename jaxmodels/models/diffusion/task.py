"""The diffusion family: EDM-unified processes, a UNet (images) or MLP (2-D points) denoiser,
training on embedded data (scikit-learn's 8x8 digits, 2-D toy distributions) and sampling with
any sampler of :mod:`jaxmodels.samplers` into PNG grids.

``config.model.process`` picks VP, VE, iDDPM, EDM or flow matching (:mod:`processes`); the
network is wrapped by that process's preconditioning and trained with its loss weighting and
noise distribution (EDM Table 1). Sampling uses the EMA parameters when the trainer keeps them.
"""

from __future__ import annotations

import inspect
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.layers.unet import NoiseEmbedding, UNet
from jaxmodels.losses.diffusion import denoising_loss
from jaxmodels.models.diffusion import processes
from jaxmodels.samplers import analytic, get_sampler, guidance, schedules
from jaxmodels.train.task import Task

NUM_DIGIT_CLASSES = 10


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def digits_arrays(split: str, size: int = 8, holdout: float = 0.2, seed: int = 0):
    """scikit-learn's digits as (N, size, size, 1) float32 in [-1, 1] plus int32 labels.

    ``size`` > 8 upsamples bilinearly; the held-out split is a fixed random ``holdout`` fraction.
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    n_eval = int(len(x) * holdout)
    rows = order[n_eval:] if split == "train" else order[:n_eval]
    images = x[rows].reshape(-1, 8, 8) / 8.0 - 1.0
    if size != 8:
        from scipy.ndimage import zoom

        images = np.clip(zoom(images, (1, size / 8, size / 8), order=1), -1, 1)
    return {"image": images[..., None].astype(np.float32), "label": y[rows].astype(np.int32)}


def toy2d_mixture(name: str) -> analytic.GaussianMixture:
    """The analytic 2-D toy distributions (exact log-density known)."""
    if name == "ring":
        return analytic.ring_mixture(8, radius=2.0, std=0.1)
    if name == "grid":
        means = tuple((float(i), float(j)) for i in (-2, 0, 2) for j in (-2, 0, 2))
        return analytic.GaussianMixture((1.0,) * 9, means, (0.15,) * 9)
    raise ValueError(f"data.toy={name!r}: choose ring or grid")


def toy2d_arrays(name: str, num: int, seed: int):
    """``num`` points drawn from a toy distribution."""
    points = toy2d_mixture(name).sample(jax.random.key(seed), num)
    return {"image": np.asarray(points, np.float32), "label": np.zeros(num, np.int32)}


def _arrays(d, split: str, seed: int):
    if d.name == "digits":
        return digits_arrays(split, d.size, d.holdout)
    if d.name == "toy2d":
        return toy2d_arrays(d.toy, d.num_points, seed + (split != "train"))
    raise ValueError(f"data.name={d.name!r}: choose digits or toy2d")


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


class DenoiserMLP(nn.Module):
    """F(c_in x; c_noise) for points (B, D): a residual SiLU MLP conditioned additively."""

    width: int = 128
    depth: int = 3
    embedding: str = "positional"
    num_classes: int = 0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxD, c_noise_B, label_B=None, *, train: bool = False):
        del train
        dense = lambda f, axes: nn.Dense(
            f,
            dtype=self.dtype,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
        )
        emb = NoiseEmbedding(self.width, self.embedding, self.num_classes, self.dtype)(
            c_noise_B, label_B
        )
        h = dense(self.width, (None, "mlp"))(x_BxD.astype(self.dtype))
        for _ in range(self.depth):
            u = nn.silu(
                nn.LayerNorm(dtype=self.dtype)(h) + dense(self.width, ("embed", "mlp"))(emb)
            )
            h = h + dense(self.width, ("mlp", "embed"))(u)
        return dense(x_BxD.shape[-1], ("embed", None))(nn.silu(h)).astype(jnp.float32)


def build_network(m, dtype, num_classes: int):
    """The raw network F from ``config.model``."""
    if m.arch == "unet":
        return UNet(
            m.channels, tuple(m.channel_mult), m.num_blocks, tuple(m.attn_resolutions),
            m.num_heads, m.dropout, m.embedding, num_classes, dtype,
        )  # fmt: skip
    if m.arch == "mlp":
        return DenoiserMLP(m.width, m.depth, m.embedding, num_classes, dtype)
    raise ValueError(f"model.arch={m.arch!r}: choose unet or mlp")


def build_process(m) -> processes.Process:
    """The diffusion process from ``config.model.process`` (EDM gets ``model.sigma_data``)."""
    kwargs = {"sigma_data": m.sigma_data} if m.process == "edm" else {}
    return processes.get_process(m.process, **kwargs)


def make_denoiser(net, process, params, *, train=False, rng=None):
    """D(x; sigma, label) = the preconditioned network (EDM eq. 7)."""

    def raw(x_in, c_noise, label=None):
        rngs = {"dropout": rng} if train else None
        return net.apply({"params": params}, x_in, c_noise, label, train=train, rngs=rngs)

    return processes.precondition(process, raw)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


def sampling_sigmas(s, process):
    """``config.sample.schedule``: ``process`` (Table 1 time steps) or a named schedule."""
    if s.schedule == "process":
        return process.sampling_sigmas(s.steps)
    kwargs = {"karras": dict(sigma_min=s.sigma_min, sigma_max=s.sigma_max, rho=s.rho)}
    return schedules.get_sigmas(s.schedule, s.steps, **kwargs.get(s.schedule, {}))


def sampler_kwargs(fn, s) -> dict:
    """The ``config.sample`` options (S_churn, S_tmin, S_tmax, S_noise, eta) ``fn`` accepts."""
    params = inspect.signature(fn).parameters
    return {k: s[k] for k in ("S_churn", "S_tmin", "S_tmax", "S_noise", "eta") if k in params}


def make_generate(net, process, s, shape, num_classes: int):
    """Returns jitted ``generate(params, key, labels) -> samples`` (labels: (N,) or None)."""
    fn = get_sampler(s.sampler)
    kwargs = sampler_kwargs(fn, s)
    sigmas = sampling_sigmas(s, process)

    def generate(params, key, labels):
        k_x, k_s = jax.random.split(key)
        x = sigmas[0] * jax.random.normal(k_x, (labels.shape[0],) + shape)
        denoise = make_denoiser(net, process, params)
        if not num_classes:
            cond = lambda x, sigma: denoise(x, sigma)
        elif s.guidance_scale == 1:
            cond = lambda x, sigma: denoise(x, sigma, labels)
        else:
            null = jnp.full_like(labels, num_classes)
            cond = guidance.classifier_free_guidance(denoise, labels, null, s.guidance_scale)
        return fn(cond, x, sigmas, key=k_s, **kwargs)

    return jax.jit(generate)


def save_grid(images, path: str, nrow: int = 10, scale: int = 4) -> None:
    """Writes (N, H, W, 1) images in [-1, 1] as a PNG grid, each pixel ``scale`` x ``scale``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.clip(np.asarray(images)[..., 0], -1, 1)
    n, h, w = images.shape
    rows = -(-n // nrow)
    grid = np.full((rows * (h + 1) + 1, nrow * (w + 1) + 1), -1.0)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = img
    grid = np.kron(grid, np.ones((scale, scale)))
    plt.imsave(path, -grid, cmap="gray", vmin=-1, vmax=1)  # dark digits on white, like the data


def save_scatter(points, path: str, reference=None) -> None:
    """Writes 2-D samples (and optionally reference data) as a scatter-plot PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(*np.asarray(reference).T, s=2, c="0.7", label="data")
    ax.scatter(*np.asarray(points).T, s=2, c="C0", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def toy2d_quality(samples, toy: str, reference) -> dict[str, float]:
    """FD on raw coordinates, mean data log-density of samples vs of real points (higher is
    sharper; equal means matched), and the largest deviation of mode occupancy from uniform."""
    from jaxmodels.evaluate.generative import frechet_distance_of

    gm = toy2d_mixture(toy)
    samples = np.asarray(samples, np.float64)
    logits = gm._component_logp(jnp.asarray(samples), 0.0)
    occupancy = np.bincount(np.asarray(logits.argmax(-1)), minlength=len(gm.weights)) / len(samples)
    return {
        "fd": frechet_distance_of(samples, reference),
        "sample_logp": float(np.mean(gm.log_prob(jnp.asarray(samples)))),
        "data_logp": float(np.mean(gm.log_prob(jnp.asarray(reference, jnp.float32)))),
        "mode_error": float(np.max(np.abs(occupancy - 1 / len(gm.weights)))),
    }


def quality(config, samples, labels, reference) -> dict[str, float]:
    """The offline quality metrics of ``samples`` for the configured dataset."""
    if config.data.name == "digits":
        from jaxmodels.evaluate.generative import digits_quality

        return digits_quality(
            samples, labels if config.model.class_conditional else None, config.data.size
        )
    return toy2d_quality(samples, config.data.toy, reference)


def _labels(n: int, num_classes: int):
    return jnp.arange(n, dtype=jnp.int32) % max(num_classes, 1)


# ----------------------------------------------------------------------------------------------
# Task
# ----------------------------------------------------------------------------------------------


def _data_fn(config, split: str, train: bool):
    from jaxmodels.data import pipeline

    source = pipeline.ArraySource(_arrays(config.data, split, config.seed))

    def make(index, count):
        return pipeline.make_iterator(
            source, global_batch_size=config.train.batch_size, seed=config.seed,
            process_index=index, process_count=count, shuffle=train, repeat=train,
        )  # fmt: skip

    return make


def _loss_fn(net, process, m, num_classes):
    """Eq. 8 loss; class labels are replaced by the null label with prob. ``label_dropout``."""

    def loss_fn(params, batch, rng):
        k_drop, k_label, k_loss = jax.random.split(rng, 3)
        denoise = make_denoiser(net, process, params, train=True, rng=k_drop)
        cond = ()
        if num_classes:
            drop = jax.random.bernoulli(k_label, m.label_dropout, batch["label"].shape)
            cond = (jnp.where(drop, num_classes, batch["label"]),)
        return denoising_loss(denoise, process, batch["image"], k_loss, *cond)

    return loss_fn


def _eval_fn(net, process, num_classes):
    def eval_fn(params, batch, rng):
        denoise = make_denoiser(net, process, params)
        cond = (batch["label"],) if num_classes else ()
        return denoising_loss(denoise, process, batch["image"], rng, *cond)[1]

    return eval_fn


def build_task(config, mesh) -> Task:
    """Builds the diffusion task from ``config.model``, ``config.data`` and ``config.sample``."""
    del mesh  # data parallelism and parameter sharding come from the logical rules alone
    m, s = config.model, config.sample
    num_classes = NUM_DIGIT_CLASSES if m.class_conditional else 0
    net = build_network(m, jnp.dtype(config.train.compute_dtype), num_classes)
    process = build_process(m)
    shape = (config.data.size, config.data.size, 1) if config.data.name == "digits" else (2,)
    reference = _arrays(config.data, "eval", config.seed)["image"]
    generate = make_generate(net, process, s, shape, num_classes)

    def init(rng):
        x = jnp.zeros((1,) + shape)
        label = jnp.zeros((1,), jnp.int32) if num_classes else None
        return net.init(rng, x, jnp.zeros((1,)), label)["params"]

    def evaluate(params, rng):
        labels = _labels(s.eval_num, num_classes)
        return quality(config, jax.device_get(generate(params, rng, labels)), labels, reference)

    def sample(params, rng, workdir):
        labels = _labels(s.num, num_classes)
        images = jax.device_get(generate(params, rng, labels))
        path = os.path.join(workdir, "samples.png")
        if config.data.name == "digits":
            save_grid(images, path)
        else:
            save_scatter(images, path, reference)
        metrics = evaluate(params, jax.random.fold_in(rng, 1))
        with open(os.path.join(workdir, "sample_metrics.json"), "w") as f:
            json.dump({"sampler": s.sampler, "steps": s.steps, **metrics}, f, indent=1)
        summary = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        return f"wrote {path} ({s.sampler}, {s.steps} steps); {summary}"

    return Task(
        units="images",
        init=init,
        loss_fn=_loss_fn(net, process, m, num_classes),
        train_data=_data_fn(config, "train", True),
        eval_data=_data_fn(config, "eval", False),
        eval_fn=_eval_fn(net, process, num_classes),
        evaluate=evaluate if s.eval_num else None,
        sample=sample,
        batch_axes={"image": ("batch",) + (None,) * len(shape), "label": ("batch",)},
    )
