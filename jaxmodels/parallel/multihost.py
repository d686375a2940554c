"""Multi-process start-up: ``jax.distributed`` on TPU pods, GPU clusters and CPU tests."""

from __future__ import annotations

import os

import jax

_ENV = ("JAXMODELS_COORDINATOR", "JAXMODELS_NUM_PROCESSES", "JAXMODELS_PROCESS_ID")


def _on_multihost_tpu() -> bool:
    """True on a TPU VM slice with several workers (the TPU runtime sets these variables)."""
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def initialize() -> None:
    """Initialises ``jax.distributed`` once when several processes take part, else does nothing.

    Explicit set-up (CPU tests, clusters without auto-detection) uses the environment
    variables ``JAXMODELS_COORDINATOR`` (host:port), ``JAXMODELS_NUM_PROCESSES`` and
    ``JAXMODELS_PROCESS_ID``; multi-host TPU slices are auto-detected.
    """
    if jax.distributed.is_initialized():
        return
    coordinator, num, pid = (os.environ.get(k) for k in _ENV)
    if coordinator:
        if num is None or pid is None:
            raise ValueError(f"set all of {_ENV} for a multi-process run")
        jax.distributed.initialize(coordinator, int(num), int(pid))
    elif _on_multihost_tpu():
        jax.distributed.initialize()
