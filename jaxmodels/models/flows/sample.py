"""Sampling at temperature T (z ~ T-scaled prior, u = f^-1(z)) and the held-out evaluator."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.layers import bijectors as bj
from jaxmodels.models.flows import loss


def make_generate(flow, prior: str, event_shape):
    """Jitted ``generate(params, key, num, temperature) -> u`` (num is static)."""

    def generate(params, key, num, temperature):
        z = bj.priors.sample(prior, key, (num,) + tuple(event_shape), temperature)
        return flow.apply({"params": params}, z, inverse=True)[0]

    return jax.jit(generate, static_argnums=2)


def make_heldout_bpd(flow, prior: str, levels: int, x_eval, chunk: int, seed: int):
    """``params -> bits/dim`` averaged over every held-out example, in fixed-size chunks (the
    last padded and masked), with a dequantisation noise fixed by ``seed``. ``x_eval`` is an
    array or anything indexed like one (:class:`jaxmodels.data.image_data.LazyImages`): each
    chunk is read when it is evaluated."""
    dims = int(np.prod(x_eval.shape[1:]))
    n = len(x_eval)
    chunk = min(chunk, n)
    rows = np.arange(n + (-n % chunk))
    chunks = rows.reshape(-1, chunk) % n
    weight = (rows < n).reshape(-1, chunk) / n

    @jax.jit
    def chunk_sum(params, x_chunk, w_chunk, key):
        u = loss.dequantize(x_chunk, levels, key)
        bpd = loss.bits_per_dim(loss.log_prob(flow, prior, params, u), levels, dims)
        return jnp.sum(w_chunk * bpd)

    def heldout_bpd(params) -> float:
        keys = jax.random.split(jax.random.key(seed), len(chunks))
        parts = zip(chunks, weight, keys, strict=True)
        return float(sum(chunk_sum(params, x_eval[r], wc, k) for r, wc, k in parts))

    return heldout_bpd


def write_samples(u, path: str, levels: int, reference) -> None:
    """A PNG grid of images u in [0, 1) (shown as the level each falls in), or a scatter."""
    from jaxmodels.data.images import save_grid, save_scatter

    u = np.nan_to_num(np.asarray(u), nan=0.0)
    if not levels:
        save_scatter(u, path, reference)
        return
    save_grid(np.floor(np.clip(u, 0, 1 - 1e-6) * levels) / (levels - 1), path)


def temperature_path(workdir: str, temperature: float) -> str:
    return os.path.join(workdir, f"samples_T{temperature:g}.png")
