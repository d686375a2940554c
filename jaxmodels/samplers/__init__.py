"""Samplers written as jitted ODE/SDE integrators, under one namespace as in k-diffusion.

``from jaxmodels.samplers import sample_heun, get_sigmas_karras`` gives every sampler
(:mod:`.ode`: probability-flow ODE; :mod:`.sde`: stochastic) and every noise schedule
(:mod:`.schedules`); ``SAMPLERS`` / :func:`get_sampler` look samplers up by the names configs
use. Guidance, likelihood, analytic test densities and token decoding stay in their modules.
Importing this package imports only JAX.
"""

from jaxmodels.samplers.integrate import odeint_rk45, scan_steps
from jaxmodels.samplers.ode import (
    ProcessSchedule,
    ode_derivative,
    sample_dpmpp_2m,
    sample_edm_stochastic,
    sample_euler,
    sample_heun,
    sample_heun_process,
    sample_rk45,
    to_d,
)
from jaxmodels.samplers.schedules import (
    SCHEDULES,
    append_zero,
    get_sigmas,
    get_sigmas_exponential,
    get_sigmas_flow,
    get_sigmas_iddpm,
    get_sigmas_karras,
    get_sigmas_ve,
    get_sigmas_vp,
)
from jaxmodels.samplers.sde import (
    get_ancestral_step,
    sample_ddim,
    sample_ddpm,
    sample_euler_ancestral,
    sample_euler_maruyama,
)

SAMPLERS = {
    "euler": sample_euler,
    "heun": sample_heun,
    "edm_stochastic": sample_edm_stochastic,
    "dpmpp_2m": sample_dpmpp_2m,
    "rk45": sample_rk45,
    "euler_ancestral": sample_euler_ancestral,
    "ddim": sample_ddim,
    "ddpm": sample_ddpm,
    "euler_maruyama": sample_euler_maruyama,
}

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "ProcessSchedule",
    "append_zero",
    "get_ancestral_step",
    "get_sampler",
    "get_sigmas",
    "get_sigmas_exponential",
    "get_sigmas_flow",
    "get_sigmas_iddpm",
    "get_sigmas_karras",
    "get_sigmas_ve",
    "get_sigmas_vp",
    "ode_derivative",
    "odeint_rk45",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_edm_stochastic",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_euler_maruyama",
    "sample_heun",
    "sample_heun_process",
    "sample_rk45",
    "scan_steps",
    "to_d",
]


def get_sampler(name: str):
    """Returns the sampler function registered as ``name``."""
    if name not in SAMPLERS:
        raise ValueError(
            f"sample.sampler={name!r} is not a sampler; choose one of {sorted(SAMPLERS)}"
        )
    return SAMPLERS[name]
