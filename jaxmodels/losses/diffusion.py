"""The unified denoising loss (EDM eq. 8, Table 1 "Training").

``E_{sigma, y, n} [lambda(sigma) |D(y + sigma n; sigma) - y|^2]`` with sigma drawn from the
process's training distribution and ``lambda`` its loss weighting; with the matching
preconditioning this is DDPM's eps loss (VP, iDDPM), denoising score matching (VE), EDM's loss,
or the flow-matching velocity loss (Flow). The squared error is averaged over data dimensions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
