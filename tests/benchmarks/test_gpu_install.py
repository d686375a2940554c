"""The GPU suite's install step: the pins are CI's versions, the constraints hold the accelerator
stack only, and every failure ends in one line that says what. The real install, in a venv
without setuptools, runs in CI as experiments/benchmarks/gpu_install_check.sh."""

import importlib.metadata
import importlib.util

import pytest

from jaxmodels.config import REPO_ROOT

BENCH = REPO_ROOT / "experiments" / "benchmarks"
spec = importlib.util.spec_from_file_location("gpu_install", BENCH / "gpu_install.py")
inst = importlib.util.module_from_spec(spec)
spec.loader.exec_module(inst)


def test_pins_are_the_versions_ci_tests():
    pins = inst.pins()
    assert {"flax", "optax", "ml-collections"} <= set(pins)
    assert not {"jax", "jaxlib", "numpy", "orbax-checkpoint", "tensorstore", "grain"} & set(pins)
    tested = {name: importlib.metadata.version(name) for name in pins}
    assert tested == pins  # bump gpu_suite.requirements.txt with CI's environment


def test_an_unpinned_requirement_is_refused(tmp_path):
    path = tmp_path / "req.txt"
    path.write_text("# comment\nflax==0.12.8  # pinned\noptax>=0.2\n")
    with pytest.raises(ValueError, match=r"req.txt: 'optax>=0.2' is not pinned"):
        inst.pins(str(path))


def test_constraints_hold_the_accelerator_stack_only():
    stack = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "nvidia-cudnn-cu13")
    have = {**dict.fromkeys(stack, "0.11.2"), "numpy": "2.5.2", "ml-dtypes": "0.7.0"}
    have.update({"flax": "0.10.0", "jaxtyping": "0.3.11", "torch": "2.11.0"})
    keep = inst.constraints(have)
    assert "flax==0.10.0" not in keep and "jaxtyping==0.3.11" not in keep
    assert "torch==2.11.0" not in keep and len(keep) == 7
    assert "jax-cuda13-plugin==0.11.2" in keep and "nvidia-cudnn-cu13==0.11.2" in keep


def test_check_only_installs_nothing_and_names_what_is_off_pin(tmp_path, monkeypatch):
    have = {"jax": "0.11.2", "jaxlib": "0.11.2", "flax": "0.10.0"}
    monkeypatch.setattr(inst, "installed", lambda: dict(have))
    monkeypatch.setattr(inst, "pip_install", lambda *a: pytest.fail("pip was called"))
    line = inst.install(str(tmp_path), str(tmp_path), check_only=True)
    assert line["status"] == "ok" and line["how"] == "check only" and line["installed"] == []
    assert line["off_pin"]["flax"] == "0.10.0" and line["off_pin"]["optax"] is None


def test_a_failed_pip_keeps_going_on_the_images_versions(tmp_path, monkeypatch):
    monkeypatch.setattr(inst, "installed", lambda: {"jax": "0.11.2", "jaxlib": "0.11.2"})
    tries = []

    def pip_fails(args, log):
        tries.append("--no-index" in args)
        with open(log, "a") as f:
            f.write("ERROR: No matching distribution found for flax==0.12.8\n")
        return False

    monkeypatch.setattr(inst, "pip_install", pip_fails)
    (tmp_path / "wheels").mkdir()
    line = inst.install(str(tmp_path / "wheels"), str(tmp_path))
    assert tries == [True, False]  # the wheelhouse first, then the index
    assert line["how"].startswith("not installed") and "flax==0.12.8" in line["pip_log_tail"]


def test_no_jax_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setattr(inst, "installed", lambda: {"flax": "0.12.8"})
    line = inst.install(str(tmp_path), str(tmp_path))
    assert line["status"] == "error" and "no jax in" in line["how"]


def test_the_reason_line_names_the_failing_import():
    failed = {"flax.linen": "ModuleNotFoundError: No module named 'msgpack'",
              "jaxmodels.train.loop": "ModuleNotFoundError: ..."}  # fmt: skip
    line = {"how": "wheelhouse .whl", "moved": [], "imports": {"failed": failed}}
    assert inst.reason(line) == (
        "import flax.linen fails: ModuleNotFoundError: No module named 'msgpack' (and 1 more); "
        "install: wheelhouse .whl"
    )
    assert "moved pinned accelerator wheels ['jax==0.11.2']" in inst.reason(
        {"how": "package index", "moved": ["jax==0.11.2"]}
    )
