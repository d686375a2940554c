"""Multi-process start-up: ``jax.distributed`` on TPU pods, GPU clusters and CPU tests.

Every launcher JAX knows works, checked in this order (the first that applies wins):

1. ``JAXMODELS_COORDINATOR`` (host:port), ``JAXMODELS_NUM_PROCESSES``,
   ``JAXMODELS_PROCESS_ID``: the project's own explicit set-up (CPU tests, any cluster).
2. JAX's standard variables: ``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` and
   ``JAX_PROCESS_ID`` (the last two may be left to JAX's auto-detection).
3. SLURM (``srun`` with more than one task) and Open MPI (``mpirun``): JAX reads the
   coordinator, process count and id from the launcher's environment.
4. A TPU VM (libtpu installed): JAX finds the slice's workers through the TPU metadata; on a
   single-host VM it is one process and harmless.

``JAXMODELS_DISTRIBUTED=0`` turns all of it off.
"""

from __future__ import annotations

import importlib.util
import os

import jax

_ENV = ("JAXMODELS_COORDINATOR", "JAXMODELS_NUM_PROCESSES", "JAXMODELS_PROCESS_ID")
_JAX_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _explicit(names: tuple[str, str, str], env, required: bool) -> dict:
    coordinator, num, pid = (env.get(k) for k in names)
    if required and (num is None or pid is None):
        raise ValueError(f"set all of {names} for a multi-process run")
    kw = {"coordinator_address": coordinator}
    if num is not None:
        kw["num_processes"] = int(num)
    if pid is not None:
        kw["process_id"] = int(pid)
    return kw


def detect(env=None) -> tuple[str, dict] | None:
    """Returns ``(launcher, kwargs for jax.distributed.initialize)``, or None for one process."""
    env = os.environ if env is None else env
    if env.get("JAXMODELS_DISTRIBUTED") == "0":
        return None
    if env.get(_ENV[0]):
        return "jaxmodels", _explicit(_ENV, env, required=True)
    if env.get(_JAX_ENV[0]):
        return "jax", _explicit(_JAX_ENV, env, required=False)
    if "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return "slurm", {}
    if "OMPI_MCA_orte_hnp_uri" in env:
        return "openmpi", {}
    if importlib.util.find_spec("libtpu") is not None:
        return "tpu", {}
    return None


def initialize() -> None:
    """Initialises ``jax.distributed`` once, before any other JAX call, when a launcher applies."""
    if jax.distributed.is_initialized():
        return
    found = detect()
    if found is not None:
        jax.distributed.initialize(**found[1])
