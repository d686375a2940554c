"""The template's evaluator chosen by name: in the task, and by `jaxmodels eval --config.evals`
on a saved run (where `evals` may differ from the run's config.json)."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxmodels.config import REPO_ROOT, load_config
from jaxmodels.evaluate.calibration import calibration
from jaxmodels.models.mlp.model import MLP
from jaxmodels.models.mlp.task import build_task, digits_arrays
from jaxmodels.train import loop

SMOKE = "experiments/mlp/digits.py:smoke"


def test_calibration_evaluator_scores_the_whole_held_out_split():
    config = load_config(SMOKE)
    assert build_task(config, None).evaluate is None  # default: nothing beyond eval_fn
    config.evals = ("calibration",)
    task = build_task(config, None)
    params = task.init(jax.random.key(0))
    got = task.evaluate(params, jax.random.key(1))
    held = digits_arrays("eval")  # 359 digits: chunks of 16, the last one padded
    m = config.model
    model = MLP(m.width, m.depth, m.dropout_rate)  # one pass over every digit
    probs = jax.nn.softmax(model.apply({"params": params}, held["image"], train=False))
    want = calibration(np.asarray(probs), held["label"])
    assert got == pytest.approx({f"calibration_{k}": v for k, v in want.items()}, rel=1e-5)


def test_cli_eval_runs_the_chosen_evaluators_on_a_saved_run(tmp_path):
    loop.train(load_config(SMOKE), str(tmp_path))  # saved with config.evals = ()
    assert json.loads((tmp_path / "config.json").read_text())["evals"] == []
    # a fresh process: absl binds --config.* overrides to the first config a process parses
    cmd = [sys.executable, "-m", "jaxmodels", "eval", f"--config={SMOKE}",
           f"--workdir={tmp_path}", "--config.evals=calibration"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"eval_calibration_ece", "eval_loss", "eval_accuracy"} <= set(last)
    assert 0 <= last["eval_calibration_ece"] <= 1
    config = load_config(SMOKE)
    config.evals = ("ece",)
    with pytest.raises(ValueError, match=r"unknown evaluator\(s\) \['ece'\]; offered: calibration"):
        loop.evaluate(config, str(tmp_path))
