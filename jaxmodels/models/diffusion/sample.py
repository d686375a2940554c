"""Sampling for the diffusion family: a jitted ``generate`` built from ``config.sample`` (any
sampler and schedule of :mod:`jaxmodels.samplers`, optional classifier-free guidance) and the
PNG writers (digit grids, 2-D scatter plots)."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.data.images import save_scatter
from jaxmodels.models.diffusion.model import make_denoiser
from jaxmodels.samplers import get_sampler, get_sigmas, guidance

__all__ = ["class_labels", "make_generate", "save_grid", "save_scatter", "sampling_sigmas"]

SAMPLER_OPTIONS = ("S_churn", "S_tmin", "S_tmax", "S_noise", "eta")  # config.sample keys


def sampling_sigmas(s, process):
    """``config.sample.schedule``: ``process`` (Table 1 time steps) or a named schedule."""
    if s.schedule == "process":
        return process.sampling_sigmas(s.steps)
    kwargs = {"karras": dict(sigma_min=s.sigma_min, sigma_max=s.sigma_max, rho=s.rho)}
    return get_sigmas(s.schedule, s.steps, **kwargs.get(s.schedule, {}))


def sampler_kwargs(fn, s) -> dict:
    """The ``config.sample`` options (:data:`SAMPLER_OPTIONS`) that sampler ``fn`` accepts."""
    params = inspect.signature(fn).parameters
    return {k: s[k] for k in SAMPLER_OPTIONS if k in params}


def class_labels(n: int, num_classes: int):
    """Labels 0, 1, ..., num_classes - 1, 0, 1, ... (all 0 when unconditional)."""
    return jnp.arange(n, dtype=jnp.int32) % max(num_classes, 1)


def make_generate(net, process, s, shape, num_classes: int):
    """Returns jitted ``generate(params, key, labels) -> samples`` (labels: (N,) int32).

    Unconditional models ignore ``labels`` beyond their count; with ``s.guidance_scale != 1``
    a class-conditional model is guided against the null label ``num_classes``.
    """
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_grid(images, path: str, nrow: int = 10, scale: int = 4) -> None:
    """Writes (N, H, W, 1) images in [-1, 1] as a PNG grid, each pixel ``scale`` x ``scale``."""
    images = np.clip(np.asarray(images)[..., 0], -1, 1)
    n, h, w = images.shape
    rows = -(-n // nrow)
    grid = np.full((rows * (h + 1) + 1, nrow * (w + 1) + 1), -1.0)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = img
    grid = np.kron(grid, np.ones((scale, scale)))
    # dark digits on white, like the data
    _pyplot().imsave(path, -grid, cmap="gray", vmin=-1, vmax=1)
