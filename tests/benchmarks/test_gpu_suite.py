"""The GPU suite's dry run: every measurement's code path at toy size on the CPU, one JSON line
each, the kernel that ran, and the shell driver's install, skip and failure lines."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from jaxmodels.config import REPO_ROOT

BENCH = REPO_ROOT / "experiments" / "benchmarks"
spec = importlib.util.spec_from_file_location("gpu_suite", BENCH / "gpu_suite.py")
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)


@pytest.mark.parametrize("name", sorted(suite.RUNNERS))
def test_each_measurement_runs_at_toy_size(name):
    line = suite.measure(name, dry=True)
    json.dumps(line)  # one JSON line
    assert line["status"] == "ok" and line["dry_run"] and line["backend"] == "cpu"
    numbers = [v for k, v in line.items() if k.endswith(("_s", "_per_s", "tflops", "frame"))]
    assert numbers and all(v > 0 for v in numbers)
    if name.startswith("trn"):
        assert line["attention"] == {}  # a recurrent model: no attention kernel
    else:  # off GPU/TPU every attention call runs XLA's kernel, one record per traced layer
        assert set(line["attention"]) == {"xla"} and line["attention"]["xla"] >= 2
    if suite.MEASUREMENTS[name] is not None:
        assert line["target"] and line["meets_target"] is False  # a dry run never meets it


def test_family_steps_are_skipped_until_the_family_exists(monkeypatch):
    monkeypatch.setitem(suite.FAMILY_STEPS, "blip_step", ("no_such_family", "x.py"))
    line = suite.measure("blip_step", dry=True)
    assert line["status"] == "skipped" and "no_such_family" in line["reason"]
    monkeypatch.setitem(suite.FAMILY_STEPS, "glow_step", ("mlp", "experiments/mlp/none.py"))
    assert "no config" in suite.measure("glow_step", dry=True)["reason"]


def test_a_present_family_is_timed_through_the_core():
    out = suite._core_step("experiments/mlp/digits.py:smoke", dry=True)
    assert out["step_s"] > 0 and out["batch"] == 16 and out["attention"] == {}


def test_failure_lines_carry_the_log_tail(tmp_path):
    log, out = tmp_path / "x.log", tmp_path / "out.jsonl"
    log.write_text("Traceback ...\nRuntimeError: cuDNN refused\n")
    suite.main(["lm_436m", "--failed", "timeout", "--rc", "124", "--log", str(log),
                "--timeout", "120", "--out", str(out)])  # fmt: skip
    line = json.loads(out.read_text())
    assert line["status"] == "timeout" and "cuDNN refused" in line["log_tail"]


def test_shell_driver_dry_run(tmp_path):
    out = tmp_path / "suite.jsonl"
    cmd = ["bash", str(BENCH / "gpu_suite.sh"), "--dry-run", "--out", str(out)]
    cmd += ["--only", "blip_step,glow_step"]
    env = {**os.environ, "PYTHON": sys.executable, "XLA_FLAGS": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["name"] for x in lines] == ["install", "blip_step", "glow_step"]
    assert lines[0]["status"] == "ok" and not lines[0]["moved"], lines[0]
    assert all(x["status"] in ("ok", "skipped") for x in lines[1:]), lines
