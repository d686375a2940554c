"""Samplers written as jitted ODE/SDE integrators (k-diffusion convention, see ``ode``)."""

from jaxmodels.samplers import ode, sde

SAMPLERS = {
    "euler": ode.sample_euler,
    "heun": ode.sample_heun,
    "edm_stochastic": ode.sample_edm_stochastic,
    "dpmpp_2m": ode.sample_dpmpp_2m,
    "rk45": ode.sample_rk45,
    "euler_ancestral": sde.sample_euler_ancestral,
    "ddim": sde.sample_ddim,
    "ddpm": sde.sample_ddpm,
    "euler_maruyama": sde.sample_euler_maruyama,
}


def get_sampler(name: str):
    """Returns the sampler function registered as ``name``."""
    if name not in SAMPLERS:
        raise ValueError(
            f"sample.sampler={name!r} is not a sampler; choose one of {sorted(SAMPLERS)}"
        )
    return SAMPLERS[name]
