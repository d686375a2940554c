"""The unified denoising loss (EDM eq. 8, Table 1 "Training").

``E_{sigma, y, n} [lambda(sigma) |D(y + sigma n; sigma) - y|^2]`` with sigma drawn from the
process's training distribution and ``lambda`` its loss weighting; with the matching
preconditioning this is DDPM's eps loss (VP, iDDPM), denoising score matching (VE), EDM's loss,
or the flow-matching velocity loss (Flow). The squared error is averaged over data dimensions.
:func:`make_loss_fn` and :func:`make_eval_fn` close it over the family's network and process.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.models.diffusion.data import dequantize
from jaxmodels.models.diffusion.model import make_denoiser


def denoising_loss(denoise_fn, process, x0, key, *cond):
    """Returns (loss, metrics) for a batch ``x0`` (B, ...); ``denoise_fn(x, sigma_B, *cond)``."""
    k_sigma, k_noise = jax.random.split(key)
    sigma_B = process.sample_sigma(k_sigma, x0.shape[:1], x0.dtype)
    sigma_b = sigma_B.reshape((-1,) + (1,) * (x0.ndim - 1))
    n = jax.random.normal(k_noise, x0.shape, x0.dtype)
    D = denoise_fn(x0 + sigma_b * n, sigma_B, *cond)
    mse_B = jnp.mean(((D - x0) ** 2).reshape(x0.shape[0], -1), axis=-1)
    loss = jnp.mean(process.loss_weight(sigma_B) * mse_B)
    low = sigma_B < 1.0
    metrics = {
        "loss": loss,
        "denoise_mse": jnp.mean(mse_B),
        # D's error at small/large noise, the two ends the loss weighting balances.
        "denoise_mse_sigma_lt_1": jnp.sum(mse_B * low) / jnp.maximum(jnp.sum(low), 1),
        "denoise_mse_sigma_ge_1": jnp.sum(mse_B * ~low) / jnp.maximum(jnp.sum(~low), 1),
    }
    return loss, metrics


def _clean_images(batch, bin_width: float, key):
    """The batch's images, dequantised afresh when ``bin_width`` > 0 (``data.dequantize``) with
    a key folded from ``key`` (the runs without dequantisation keep their random streams)."""
    if not bin_width:
        return batch["image"]
    return dequantize(batch["image"], bin_width, jax.random.fold_in(key, 1))


def make_loss_fn(net, process, label_dropout: float, num_classes: int, bin_width: float = 0.0):
    """The training ``loss_fn(params, batch, rng)``: eq. 8 with dropout in the network, and class
    labels replaced by the null label ``num_classes`` with prob. ``label_dropout`` (Ho &
    Salimans 2022, classifier-free guidance training); images dequantised when ``bin_width``."""

    def loss_fn(params, batch, rng):
        k_drop, k_label, k_loss = jax.random.split(rng, 3)
        denoise = make_denoiser(net, process, params, train=True, rng=k_drop)
        cond = ()
        if num_classes:
            drop = jax.random.bernoulli(k_label, label_dropout, batch["label"].shape)
            cond = (jnp.where(drop, num_classes, batch["label"]),)
        x0 = _clean_images(batch, bin_width, k_loss)
        return denoising_loss(denoise, process, x0, k_loss, *cond)

    return loss_fn


def make_eval_fn(net, process, num_classes: int, bin_width: float = 0.0):
    """The held-out ``eval_fn(params, batch, rng) -> metrics``: eq. 8 without dropout."""

    def eval_fn(params, batch, rng):
        denoise = make_denoiser(net, process, params)
        cond = (batch["label"],) if num_classes else ()
        x0 = _clean_images(batch, bin_width, rng)
        return denoising_loss(denoise, process, x0, rng, *cond)[1]

    return eval_fn
