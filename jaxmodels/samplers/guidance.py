"""Classifier-free guidance (Ho & Salimans 2022, eq. 6) as a denoiser wrapper."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def classifier_free_guidance(denoise_fn, cond, uncond, guidance_scale: float):
    """Returns ``D(x, sigma) = D_u + w (D_c - D_u)`` from a conditional ``denoise_fn(x, sigma, c)``.

    ``w = guidance_scale`` (``w = 1`` is the plain conditional model; Ho & Salimans' w is
    ``guidance_scale - 1``). ``cond``/``uncond`` are pytrees with a leading batch axis (e.g.
    class labels and the "null" label); both branches run as one doubled batch.
    """

    def guided(x, sigma):
        x2 = jnp.concatenate([x, x])
        sigma = jnp.asarray(sigma, x.dtype)
        sigma2 = sigma if sigma.ndim == 0 else jnp.concatenate([sigma, sigma])
        c2 = jax.tree.map(lambda c, u: jnp.concatenate([c, u]), cond, uncond)
        d_cond, d_uncond = jnp.split(denoise_fn(x2, sigma2, c2), 2)
        return d_uncond + guidance_scale * (d_cond - d_uncond)

    return guided
