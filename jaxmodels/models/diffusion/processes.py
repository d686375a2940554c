"""Diffusion processes in EDM's unified form (Karras et al. 2022, "Elucidating the Design
Space of Diffusion-Based Generative Models", Table 1).

A process is a noise level sigma(t) and a scale s(t): x_t = s(t) (x_0 + sigma(t) n). Its
network is wrapped by the preconditioning of eq. 7,
``D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))``, and trained
with the loss of eq. 8, ``E lambda(sigma) |D(y + sigma n; sigma) - y|^2`` with sigma drawn from
the process's training distribution. Samplers (:mod:`jaxmodels.samplers`) work on the scaled-out
``x / s(t)`` and only need ``D(x; sigma)``; ``jaxmodels.samplers.sample_heun_process`` integrates
the probability-flow ODE in a process's own (x, t) coordinates (Algorithm 1, general form) from
``sigma``, ``s`` and their derivatives alone (``jaxmodels.samplers.ProcessSchedule``).

The processes are this family's own (shared code never imports them): the samplers see only
their schedule, and the loss (:mod:`.loss`) only ``sample_sigma`` and ``loss_weight``.

Processes are frozen dataclasses (hashable, so they can be static arguments of ``jax.jit``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from jaxmodels.samplers import schedules


class Process:
    """Interface; subclasses implement the Table 1 entries."""

    def sigma(self, t):
        """sigma(t)."""
        return t

    def sigma_deriv(self, t):
        """d sigma / dt."""
        return jnp.ones_like(t)

    def sigma_inv(self, sigma):
        """t such that sigma(t) = sigma."""
        return sigma

    def s(self, t):
        """Scale s(t)."""
        return jnp.ones_like(t)

    def s_deriv(self, t):
        """d s / dt."""
        return jnp.zeros_like(t)

    def precond(self, sigma):
        """Returns (c_skip, c_out, c_in, c_noise) at ``sigma`` (Table 1 "Network and
        preconditioning")."""
        raise NotImplementedError

    def loss_weight(self, sigma):
        """lambda(sigma) of eq. 8."""
        return 1 / sigma**2

    def sample_sigma(self, key, shape, dtype=jnp.float32):
        """Draws training noise levels (Table 1 "Training", noise distribution)."""
        raise NotImplementedError

    def sampling_sigmas(self, n: int):
        """The process's own sampling discretisation (Table 1 "Time steps"), ending in 0."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class VP(Process):
    """Variance preserving (DDPM++, Song et al. 2021), EDM Table 1 column "VP"."""

    beta_d: float = 19.9
    beta_min: float = 0.1
    M: int = 1000  # c_noise = (M - 1) t
    epsilon_t: float = 1e-5  # training t ~ U(epsilon_t, 1)
    epsilon_s: float = 1e-3  # last sampling time step

    def sigma(self, t):
        return schedules.vp_sigma(t, self.beta_d, self.beta_min)

    def sigma_deriv(self, t):
        sigma = self.sigma(t)
        return 0.5 * (self.beta_min + self.beta_d * t) * (sigma**2 + 1) / sigma

    def sigma_inv(self, sigma):
        return schedules.vp_sigma_inv(sigma, self.beta_d, self.beta_min)

    def s(self, t):
        return jnp.exp(-0.5 * (0.5 * self.beta_d * t**2 + self.beta_min * t))

    def s_deriv(self, t):
        return -0.5 * (self.beta_d * t + self.beta_min) * self.s(t)

    def precond(self, sigma):
        c_in = 1 / jnp.sqrt(sigma**2 + 1)
        return jnp.ones_like(sigma), -sigma, c_in, (self.M - 1) * self.sigma_inv(sigma)

    def sample_sigma(self, key, shape, dtype=jnp.float32):
        t = jax.random.uniform(key, shape, dtype, self.epsilon_t, 1.0)
        return self.sigma(t)

    def sampling_sigmas(self, n: int):
        return schedules.get_sigmas_vp(n, self.beta_d, self.beta_min, self.epsilon_s)


@dataclasses.dataclass(frozen=True)
class VE(Process):
    """Variance exploding (NCSN++, Song et al. 2021), EDM Table 1 column "VE"."""

    sigma_min: float = 0.02
    sigma_max: float = 100.0

    def sigma(self, t):
        return jnp.sqrt(t)

    def sigma_deriv(self, t):
        return 0.5 / jnp.sqrt(t)

    def sigma_inv(self, sigma):
        return sigma**2

    def precond(self, sigma):
        one = jnp.ones_like(sigma)
        return one, sigma, one, jnp.log(0.5 * sigma)

    def sample_sigma(self, key, shape, dtype=jnp.float32):
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return jnp.exp(jax.random.uniform(key, shape, dtype, lo, hi))

    def sampling_sigmas(self, n: int):
        return schedules.get_sigmas_ve(n, self.sigma_min, self.sigma_max)


@functools.lru_cache(maxsize=8)
def _iddpm_u(M, C_1, C_2):
    return schedules.iddpm_u(M, C_1, C_2)


@dataclasses.dataclass(frozen=True)
class IDDPM(Process):
    """Improved DDPM (Nichol & Dhariwal 2021), EDM Table 1 column "iDDPM + DDIM"."""

    M: int = 1000
    C_1: float = 0.001
    C_2: float = 0.008
    j_0: int = 8

    def u(self, dtype=jnp.float32):
        """The M + 1 discrete noise levels u_0 > ... > u_M = 0."""
        return jnp.asarray(_iddpm_u(self.M, self.C_1, self.C_2), dtype)

    def precond(self, sigma):
        u = self.u(sigma.dtype)
        j = jnp.argmin(jnp.abs(sigma[..., None] - u[:-1]), axis=-1)
        c_in = 1 / jnp.sqrt(sigma**2 + 1)
        return jnp.ones_like(sigma), -sigma, c_in, (self.M - 1 - j).astype(sigma.dtype)

    def sample_sigma(self, key, shape, dtype=jnp.float32):
        j = jax.random.randint(key, shape, 0, self.M)
        return self.u(dtype)[j]

    def sampling_sigmas(self, n: int):
        return schedules.get_sigmas_iddpm(n, self.M, self.C_1, self.C_2, self.j_0)


@dataclasses.dataclass(frozen=True)
class EDM(Process):
    """EDM's own choices, Table 1 column "Ours (EDM)": sigma(t) = t, s(t) = 1."""

    sigma_data: float = 0.5
    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def precond(self, sigma):
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / jnp.sqrt(sigma**2 + sd2)
        c_in = 1 / jnp.sqrt(sigma**2 + sd2)
        return c_skip, c_out, c_in, 0.25 * jnp.log(sigma)

    def loss_weight(self, sigma):
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def sample_sigma(self, key, shape, dtype=jnp.float32):
        return jnp.exp(self.P_mean + self.P_std * jax.random.normal(key, shape, dtype))

    def sampling_sigmas(self, n: int):
        return schedules.get_sigmas_karras(n, self.sigma_min, self.sigma_max, self.rho)


@dataclasses.dataclass(frozen=True)
class Flow(Process):
    """Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023) in EDM form.

    x_t = (1 - t) x_0 + t n, so s(t) = 1 - t and sigma(t) = t / (1 - t). The network F predicts
    the velocity v = n - x_0 from x_t and t, which gives c_skip = c_in = 1/(1 + sigma),
    c_out = -sigma/(1 + sigma); lambda = ((1 + sigma)/sigma)^2 makes eq. 8 the flow-matching
    loss |F - v|^2, with t ~ U(0, t_max) (Liu et al.'s uniform time).

    Rectified flow's own sampler, Euler in t, is
    ``jaxmodels.samplers.sample_heun_process(Flow(), D, x, ts, second_order=False)`` with
    ``ts = Flow().sigma_inv(get_sigmas_flow(n, sigma_max))`` (uniform in t) and ``x`` the
    scaled-out noise x_t / s(t) = sigma_max n; ``ode_derivative(Flow(), D, x_t, t)`` is the
    velocity E[n - x_0 | x_t].
    """

    t_max: float = 1 - 1e-4  # keeps sigma finite in training
    M: int = 1000  # c_noise = (M - 1) t, the VP convention, so the same network fits
    sigma_max: float = 80.0  # sampling starts at sigma_max (t = 80/81)

    def sigma(self, t):
        return t / (1 - t)

    def sigma_deriv(self, t):
        return 1 / (1 - t) ** 2

    def sigma_inv(self, sigma):
        return sigma / (1 + sigma)

    def s(self, t):
        return 1 - t

    def s_deriv(self, t):
        return -jnp.ones_like(t)

    def precond(self, sigma):
        c = 1 / (1 + sigma)
        return c, -sigma * c, c, (self.M - 1) * sigma * c

    def loss_weight(self, sigma):
        return ((1 + sigma) / sigma) ** 2

    def sample_sigma(self, key, shape, dtype=jnp.float32):
        return self.sigma(jax.random.uniform(key, shape, dtype, 0.0, self.t_max))

    def sampling_sigmas(self, n: int):
        return schedules.get_sigmas_flow(n, self.sigma_max)


PROCESSES = {"vp": VP, "ve": VE, "iddpm": IDDPM, "edm": EDM, "flow": Flow}


def get_process(name: str, **kwargs) -> Process:
    """Builds a process by name (``vp``, ``ve``, ``iddpm``, ``edm``, ``flow``)."""
    if name not in PROCESSES:
        raise ValueError(f"unknown diffusion process {name!r}; choose one of {sorted(PROCESSES)}")
    return PROCESSES[name](**kwargs)


def _bcast(sigma, x):
    """Broadcasts a scalar or per-example sigma against ``x``."""
    sigma = jnp.asarray(sigma, x.dtype)
    if sigma.ndim == 0:
        sigma = jnp.full(x.shape[:1], sigma)
    return sigma, sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim))


def precondition(process: Process, net_fn):
    """EDM eq. 7: ``denoise_fn(x, sigma, *a) = c_skip x + c_out F(c_in x, c_noise, *a)``.

    ``net_fn(x_in, c_noise_B, *args)`` is the raw network; ``sigma`` is a scalar or per-example.
    """

    def denoise_fn(x, sigma, *args, **kwargs):
        sigma_B, sigma_b = _bcast(sigma, x)
        c_skip, c_out, c_in, _ = process.precond(sigma_b)
        c_noise_B = process.precond(sigma_B)[3]
        F = net_fn(c_in * x, c_noise_B, *args, **kwargs)
        return c_skip * x + c_out * F.astype(x.dtype)

    return denoise_fn
