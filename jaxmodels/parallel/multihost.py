"""Multi-process start-up: ``jax.distributed`` on TPU pods, GPU clusters and CPU tests."""

from __future__ import annotations

import importlib.util
import os

import jax

_ENV = ("JAXMODELS_COORDINATOR", "JAXMODELS_NUM_PROCESSES", "JAXMODELS_PROCESS_ID")


def initialize() -> None:
    """Initialises ``jax.distributed`` once, before any other JAX call, when it applies.

    - ``JAXMODELS_DISTRIBUTED=0`` turns it off.
    - Explicit set-up (CPU tests, clusters without auto-detection): the environment variables
      ``JAXMODELS_COORDINATOR`` (host:port), ``JAXMODELS_NUM_PROCESSES``, ``JAXMODELS_PROCESS_ID``.
    - On a TPU VM (libtpu installed) ``jax.distributed.initialize()`` finds the slice's workers
      through the TPU metadata; on a single-host VM it is one process and harmless.
    """
    if jax.distributed.is_initialized() or os.environ.get("JAXMODELS_DISTRIBUTED") == "0":
        return
    coordinator, num, pid = (os.environ.get(k) for k in _ENV)
    if coordinator:
        if num is None or pid is None:
            raise ValueError(f"set all of {_ENV} for a multi-process run")
        jax.distributed.initialize(coordinator, int(num), int(pid))
    elif importlib.util.find_spec("libtpu") is not None:
        jax.distributed.initialize()
