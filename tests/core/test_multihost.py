"""Which launcher starts ``jax.distributed``: the project's variables, JAX's, SLURM, Open MPI."""

import pytest

from jaxmodels.parallel import multihost


def test_detect_launchers(monkeypatch):
    monkeypatch.setattr(multihost.importlib.util, "find_spec", lambda name: None)  # no libtpu
    own = {"JAXMODELS_COORDINATOR": "h:1", "JAXMODELS_NUM_PROCESSES": "2"}
    assert multihost.detect({}) is None
    assert multihost.detect({**own, "JAXMODELS_PROCESS_ID": "1"}) == (
        "jaxmodels",
        {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1},
    )
    with pytest.raises(ValueError, match="JAXMODELS_PROCESS_ID"):
        multihost.detect(own)
    jax_env = {"JAX_COORDINATOR_ADDRESS": "h:2", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert multihost.detect(jax_env) == (
        "jax",
        {"coordinator_address": "h:2", "num_processes": 4, "process_id": 3},
    )
    assert multihost.detect({"JAX_COORDINATOR_ADDRESS": "h:2"}) == (
        "jax",
        {"coordinator_address": "h:2"},  # the rest left to JAX's auto-detection
    )
    slurm = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"}
    assert multihost.detect(slurm) == ("slurm", {})
    assert multihost.detect({**slurm, "SLURM_NTASKS": "1"}) is None  # one task: no coordinator
    assert multihost.detect({"OMPI_MCA_orte_hnp_uri": "x"}) == ("openmpi", {})
    assert multihost.detect({**slurm, **own, "JAXMODELS_PROCESS_ID": "0"})[0] == "jaxmodels"
    assert multihost.detect({**slurm, "JAXMODELS_DISTRIBUTED": "0"}) is None
    monkeypatch.setattr(multihost.importlib.util, "find_spec", lambda name: object())
    assert multihost.detect({}) == ("tpu", {})


def test_initialize_passes_the_detected_arguments(monkeypatch):
    calls = []
    monkeypatch.setattr(multihost.jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(multihost.jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    multihost.initialize()
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    multihost.initialize()
    assert calls == [{}, {"coordinator_address": "10.0.0.1:1234"}]
