"""Trains TRN, IDN, GRU and the per-frame MLP on the embedded streams and writes the table.

Each run goes through the shared trainer CLI; the final evaluation (whole eval streams) gives
per-frame mAP (THUMOS'14 protocol), mcAP (TVSeries) and TRN's anticipation mAP per decoder step.

python experiments/online_action/compare.py --out docs/online_action.md
python experiments/online_action/compare.py --datasets synthetic --models trn,mlp --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def train(model: str, dataset: str, workdir: str, steps: int, overrides=()) -> tuple[dict, float]:
    """Runs one training job (CLI) and returns its last evaluation line and wall time.

    ``overrides`` are extra ``--config.KEY=VALUE`` flags.
    """
    arg = ":sensor" if dataset == "sensor" else ""
    cmd = [
        sys.executable,
        "-m",
        "jaxmodels",
        "train",
        "--config",
        os.path.join(HERE, f"{model}.py{arg}"),
        "--workdir",
        workdir,
    ]
    if steps:
        cmd += [f"--config.train.steps={steps}", f"--config.train.eval_every={steps}"]
    cmd += list(overrides)
    start = time.time()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "train.log"), "w") as log:
        subprocess.run(cmd, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if "eval_mAP" in r]
    if not evals:
        raise RuntimeError(f"{workdir}/metrics.jsonl has no evaluation line")
    return evals[-1], time.time() - start


def horizons(rows) -> list[int]:
    """The anticipation horizons (frames ahead) that any of the evaluation lines reports."""
    prefix = "eval_future_mAP_"
    return sorted({int(k[len(prefix) :]) for r in rows for k in r if k.startswith(prefix)})


def table(results) -> str:
    """Markdown table: one row per (dataset, model)."""
    ahead = horizons([r for r, _ in results.values()])
    head = ["data", "model", "mAP", "mcAP"] + [f"TRN t+{j}" for j in ahead] + ["train+eval time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (dataset, model), (r, seconds) in results.items():
        future = [r.get(f"eval_future_mAP_{j}") for j in ahead]
        cells = [dataset, model, f"{r['eval_mAP']:.3f}", f"{r['eval_mcAP']:.3f}"]
        cells += [f"{v:.3f}" if v is not None else "" for v in future]
        lines.append("| " + " | ".join(cells + [f"{seconds / 60:.1f} min"]) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="trn,idn,lstm,gru,mlp")
    p.add_argument("--datasets", default="synthetic,sensor")
    p.add_argument("--steps", type=int, default=0, help="override train.steps (0: config's)")
    p.add_argument("--workdir", default="runs/oad-compare")
    p.add_argument("--out", default="", help="write the table into this markdown file")
    a = p.parse_args()
    results = {}
    for dataset in a.datasets.split(","):
        for model in a.models.split(","):
            wd = os.path.join(a.workdir, f"{dataset}-{model}")
            results[dataset, model] = train(model, dataset, wd, a.steps)
            print(dataset, model, results[dataset, model], flush=True)
    text = table(results)
    print(text)
    if a.out:
        command = "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:])
        marker = "<!-- comparison table -->"
        block = f"{marker}\n\nMade with `{command}` ({time.strftime('%Y-%m-%d')}):\n\n{text}\n"
        old = ""
        if os.path.exists(a.out):
            with open(a.out) as f:
                old = f.read()
        new = old.split(marker)[0] + block if marker in old else old + "\n" + block
        with open(a.out, "w") as f:
            f.write(new)


if __name__ == "__main__":
    main()
