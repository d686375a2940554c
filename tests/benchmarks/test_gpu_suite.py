"""The GPU suite's dry run: every measurement's code path at toy size on the CPU, one JSON line
each with its step time and the throughput derived from it, the family lines' base-size
configs, the order and budgets, the summary table and the shell driver."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.config import REPO_ROOT

BENCH = REPO_ROOT / "experiments" / "benchmarks"
spec = importlib.util.spec_from_file_location("gpu_suite", BENCH / "gpu_suite.py")
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)


def check_rate(line):
    """step_ms is step_s in ms, and the throughput is the units of one step over it."""
    assert line["step_s"] > 0 and line["step_ms"] == pytest.approx(1e3 * line["step_s"])
    per_step = line.get("batch", 1) * line.get("seq", 1)  # the streamed line: one frame a step
    assert line["throughput"] * line["step_s"] == pytest.approx(per_step)
    assert line["unit"].endswith("/s")


@pytest.mark.parametrize("name", sorted(suite.RUNNERS))
def test_each_measurement_runs_at_toy_size(name):
    line = suite.measure(name, dry=True)
    json.dumps(line)  # one JSON line
    assert line["status"] == "ok" and line["dry_run"] and line["backend"] == "cpu"
    check_rate(line)
    if name.startswith("trn") or name == "siglip_loss":
        assert line["attention"] == {}  # a recurrent model, a loss: no attention kernel
    else:  # off GPU/TPU every attention call runs XLA's kernel, one record per traced layer
        assert set(line["attention"]) == {"xla"} and line["attention"]["xla"] >= 2
    if suite.LINES[name][1] is not None:
        assert line["target"] and line["meets_target"] is False  # a dry run never meets it
    if name == "lm_436m":  # the TFLOP/s follow from the FLOPs of a step and its time
        assert line["model_tflops"] == pytest.approx(line["flops_per_step"] / line["step_s"] / 1e12)


def test_the_core_step_is_timed_like_every_line():
    """The family lines' timing of the core's train step (here on the mlp template's step, the
    cheapest to compile; the family lines' own steps compile for minutes even at toy size)."""
    from jaxmodels.config import load_config
    from jaxmodels.train import loop

    run = loop.build(load_config("experiments/mlp/digits.py:smoke"), None)
    out = suite._core_step(run, next(run.task.train_data(0, 1)), dry=True)
    assert out["family"] == "mlp" and out["batch"] == 16 and out["attention"] == {}
    check_rate(out)


def test_family_lines_build_at_base_size(tmp_path):
    """BLIP-base, EDM's DDPM++ and Glow at the GPU sizes: their configs build the family's
    task and abstract state (nothing compiled), and the first batch has the batch's shape."""
    for name, images in (("blip_base", (224, 3)), ("diffusion_unet", (32, 3)), ("glow", (32, 3))):
        run, batch = suite.build_family(name, False, str(tmp_path))
        B = run.config.train.batch_size
        assert batch["image"].shape == (B, *images[:1] * 2, images[1]), name
        n = sum(x.size for x in jax.tree.leaves(run.abstract_state.params))
        assert n > 50e6, (name, n)  # base sizes, not the CPU configs'
        assert run.config.train.compute_dtype == "bfloat16", name  # BLIP's, the UNet's :bf16


spec = importlib.util.spec_from_file_location("hlo_stats", BENCH / "hlo_stats.py")
hlo_stats = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hlo_stats)


@pytest.mark.parametrize("name", ["blip_base", "diffusion_unet"])
def test_bf16_family_lines_compute_in_bf16_and_train(name, tmp_path):
    """BLIP and the UNet from their configs' ``bf16`` variant (the dry run's toy size): float32
    params, every token- or pixel-level dot and convolution of the lowered step in bfloat16
    (attention's q, k, v included: what cuDNN needs), and three steps with a finite loss."""
    run, batch = suite.build_family(name, True, str(tmp_path))
    assert run.config.train.compute_dtype == "bfloat16"
    step, state, placed = suite.prepare_step(run, batch)
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    lowered = step.lower(state, placed)
    ops = hlo_stats.matmuls(lowered.as_text())
    assert sum(a[1] == b[1] == "bf16" for _, a, b, _ in ops) >= 10, ops
    # two float32 operands only on per-example rows (BLIP's ITC similarities of normalised
    # features); jax's XLA attention takes bf16 q, k, v into a float32 softmax (on a GPU, cuDNN)
    f32 = [(op, a, b) for op, a, b, _ in ops if a[1] == b[1] == "f32"]
    assert all(max(a[0], b[0]) <= 2 for _, a, b in f32), f32
    if name == "diffusion_unet":
        assert {(a[1], b[1]) for op, a, b, _ in ops if op == "conv"} == {("bf16", "bf16")}
    compiled = lowered.compile()
    for _ in range(3):
        state, m = compiled(state, placed)
        assert np.isfinite(float(m["loss"])) and float(m["finite"]) == 1.0, m


def test_lines_run_in_the_issues_order_within_the_budget():
    out = subprocess.run([sys.executable, str(BENCH / "gpu_suite.py"), "--list"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    order = [line.split()[0] for line in out.splitlines()]
    assert order == ["lm_436m", "vit_b16", "siglip_loss", "trn_train_step", "trn_streaming",
                     "blip_base", "diffusion_unet", "glow", "siglip_b16_step"]  # fmt: skip
    shell = (BENCH / "gpu_suite.sh").read_text()
    budget = int(shell.split("\nBUDGET=")[1].split()[0])
    assert budget < 600  # the suite ends inside one 10-minute device call
    assert all(0 < int(line.split()[1]) < budget for line in out.splitlines())


def test_failure_lines_carry_the_log_tail(tmp_path):
    log, out = tmp_path / "x.log", tmp_path / "out.jsonl"
    log.write_text("Traceback ...\nRuntimeError: cuDNN refused\n")
    suite.main(["lm_436m", "--failed", "timeout", "--rc", "124", "--log", str(log),
                "--timeout", "120", "--out", str(out)])  # fmt: skip
    line = json.loads(out.read_text())
    assert line["status"] == "timeout" and "cuDNN refused" in line["log_tail"]


def test_summary_puts_step_time_beside_throughput(tmp_path):
    lines = [
        {"name": "install", "status": "ok"},
        {"name": "lm_436m", "status": "ok", "step_ms": 250.0, "throughput": 131072.0,
         "unit": "tokens/s", "model_tflops": 512.25, "target": "model_tflops >= 540.0",
         "meets_target": False, "attention": {"cudnn": 24}},
        {"name": "vit_b16", "status": "timeout", "timeout_s": 90.0, "rc": 124},
    ]  # fmt: skip
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    table = suite.summary(str(path)).splitlines()
    assert len(table) == 4 and "install" not in "".join(table)
    assert "| lm_436m | ok | 250.000 | 131,072.0 tokens/s (512.2 model TFLOP/s) |" in table[2]
    assert "| no |" in table[2] and table[3].startswith("| vit_b16 | timeout (90 s) |")


def test_shell_driver_dry_run(tmp_path):
    out = tmp_path / "suite.jsonl"
    cmd = ["bash", str(BENCH / "gpu_suite.sh"), "--dry-run", "--out", str(out)]
    cmd += ["--only", "trn_streaming"]
    env = {**os.environ, "PYTHON": sys.executable, "XLA_FLAGS": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["name"] for x in lines] == ["install", "trn_streaming"]
    install = lines[0]  # the dry run installs nothing: it checks what the suite imports
    assert install["status"] == "ok" and install["how"] == "check only", install
    assert not install["moved"] and install["imports"]["failed"] == {}, install
    assert lines[1]["status"] == "ok" and lines[1]["unit"] == "frames/s"
    assert "| trn_streaming | ok |" in proc.stdout  # the summary table
