"""The length-extrapolation evaluator and study script at smoke size (RoPE + scalings)."""

import importlib.util

import pytest

from jaxmodels import evaluate
from jaxmodels.config import REPO_ROOT, load_config
from jaxmodels.models.lm.task import build_task


def _script():
    path = REPO_ROOT / "experiments" / "lm" / "run_extrapolation.py"
    spec = importlib.util.spec_from_file_location("run_extrapolation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_smoke_writes_table_and_plot(tmp_path):
    _script().main(["--workdir", str(tmp_path / "runs"), "--out", str(tmp_path),
                    "--smoke", "--encodings", "rope"])  # fmt: skip
    table = (tmp_path / "positions_extrapolation.md").read_text()
    for row in ("| rope |", "| rope + yarn |", "| rope + llama3 |", "| rope + ntk |"):
        assert row in table
    assert "| 1L = 16 | 4L = 64 |" in table
    assert (tmp_path / "positions_extrapolation.png").stat().st_size > 1000
    # every cell is a number: the sweep ran at every length
    body = [line for line in table.splitlines() if line.startswith("| rope")]
    assert all("—" not in line for line in body)


def test_evaluators_are_chosen_by_name():
    config = load_config("experiments/lm/rope_lm.py:smoke")
    assert build_task(config).evaluate is None  # no config.evals: nothing scheduled
    config.evals = ("bogus",)
    with pytest.raises(ValueError, match="unknown evaluator.*'bogus'.*offered: extrapolation"):
        build_task(config)
    built = []

    def builder(name):
        def build():
            built.append(name)
            return lambda params, rng: {name: 1.0}

        return build

    offered = {n: builder(n) for n in "abc"}
    run = evaluate.select("a,b", offered)
    assert built == ["a", "b"] and run(None, None) == {"a": 1.0, "b": 1.0}  # c never built
    assert evaluate.select((), offered) is None
