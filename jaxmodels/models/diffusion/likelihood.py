"""Held-out bits/dim of a diffusion model through its probability-flow ODE.

The PF ODE turns the denoiser into an exact density at sigma_min (Song et al. 2021, eq. 39 and
App. D.2; :func:`jaxmodels.samplers.likelihood.pf_ode_log_likelihood`). On integer images the
held-out points are dequantised as the model was trained (``data.dequantize``): level x of L
becomes z = 2 (x + v) / L - 1, v ~ U[0, 1), and

    bits/dim = -(log p(z) + D log(2 / L)) / (D log 2),

the same bound on the discrete negative log-likelihood as the flows family's -(log p(u) - D log L)
/ (D log 2) with u = (z + 1) / 2, so the two families' numbers share one table. A
class-conditional model is evaluated with the null label, i.e. as the unconditional density it
learns under classifier-free-guidance training.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.models.diffusion.data import dequantize
from jaxmodels.models.diffusion.model import make_denoiser
from jaxmodels.samplers import likelihood


def make_log_likelihood(net, process, num_classes: int, s):
    """Jitted ``(params, z_B, key) -> (log p(z) per example, mean NFE)`` with the options of
    ``config.sample``: ``likelihood_probes`` (0: exact divergence, else Hutchinson probes),
    ``likelihood_sigma_min``, ``sigma_max``, ``likelihood_rtol`` (= atol)."""

    def log_likelihood(params, z, key):
        denoise = make_denoiser(net, process, params)
        null = jnp.full(z.shape[:1], num_classes, jnp.int32)
        fn = (lambda x, sigma: denoise(x, sigma, null)) if num_classes else denoise
        logp, stats = likelihood.pf_ode_log_likelihood(
            fn,
            z,
            sigma_min=s.likelihood_sigma_min,
            sigma_max=s.sigma_max,
            key=key,
            num_probes=s.likelihood_probes,
            rtol=s.likelihood_rtol,
            atol=s.likelihood_rtol,
        )
        return logp, stats["nfe"]

    return jax.jit(log_likelihood)


def heldout_bits_per_dim(log_likelihood, params, images, bin_width: float, key, batch: int):
    """Mean bits/dim, its standard error over images, and the mean NFE of ``images`` (the
    bins' lower edges when ``bin_width`` > 0, else continuous points) in chunks of ``batch``."""
    dims = math.prod(images.shape[1:])
    bpd, nfe = [], []
    for i, start in enumerate(range(0, len(images), batch)):
        k_deq, k_probe = jax.random.split(jax.random.fold_in(key, i))
        z = jnp.asarray(images[start : start + batch])
        if bin_width:
            z = dequantize(z, bin_width, k_deq)
        logp, n = log_likelihood(params, z, k_probe)
        bpd.append(np.asarray(likelihood.bits_per_dim(logp, dims, bin_width or None)))
        nfe.append(float(n))
    bpd = np.concatenate(bpd)
    stderr = float(bpd.std(ddof=1) / math.sqrt(len(bpd))) if len(bpd) > 1 else 0.0
    return {
        "bits_per_dim": float(bpd.mean()),
        "bits_per_dim_se": stderr,
        "likelihood_nfe": float(np.mean(nfe)),
    }
