"""Sigmoid (SigLIP) versus softmax (CLIP) loss at small batch, compared fairly.

Every run uses the same towers (siglip.py's: MAP image pooling, bidirectional text, last-token
pooling), the same embedded data, optimizer and learning rate, and the same number of examples
seen (steps = examples / batch, warm-up a sixth of the steps). Only the loss and its scalars
differ:

- ``softmax``: CLIP's loss, t = 1/0.07 (Radford et al., 2021, Sec. 2.5);
- ``sigmoid-10``: SigLIP's loss with the paper's t = 10, b = -10 (Zhai et al., 2023, Sec. 3.2);
- ``sigmoid-auto``: SigLIP's loss, t = 10, b = -log(batch - 1) (``model.b_init = "auto"``);
- ``sigmoid-auto-lr10``: as ``sigmoid-auto`` with a 10x learning rate for t' and b
  (``train.lr_multipliers = "t_prime=10,b=10"``), so that the scalars can move within the run.

Each (variant, batch, seed) run appends one line to ``OUT/results.jsonl`` and a rerun skips
the runs already there, so the grid can be run in pieces; ``--report`` prints mean ± sample
standard deviation over seeds per cell:

  nice -n 10 python experiments/contrastive/loss_study.py --out runs/loss_study
  python experiments/contrastive/loss_study.py --out runs/loss_study --report
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile

VARIANTS = {  # name -> (model.variant, t_prime_init, b_init, train.lr_multipliers)
    "softmax": ("clip", math.log(1 / 0.07), 0.0, ""),
    "sigmoid-10": ("siglip", math.log(10.0), -10.0, ""),
    "sigmoid-auto": ("siglip", math.log(10.0), "auto", ""),
    "sigmoid-auto-lr10": ("siglip", math.log(10.0), "auto", "t_prime=10,b=10"),
}
METRICS = {  # column -> key in the trainer's metrics
    "digits top-1": "eval_zeroshot_digits_top1",
    "shapes top-1": "eval_zeroshot_shapes_top1",
    "i2t R@1": "eval_i2t_recall@1",
    "t2i R@1": "eval_t2i_recall@1",
    "final t": "t",
    "final b": "b",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder of results.jsonl")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--batches", default="16,32,128,512")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--examples", type=int, default=38_400, help="examples seen per run")
    p.add_argument("--report", action="store_true", help="only print the table")
    return p.parse_args(argv)


def study_config(variant: str, batch: int, seed: int, examples: int):
    """siglip.py with one variant's loss and scalars, at ``batch`` for ``examples`` examples."""
    from jaxmodels.config import load_config

    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "siglip.py"))
    c.model.variant, c.model.t_prime_init, c.model.b_init, c.train.lr_multipliers = VARIANTS[
        variant
    ]
    c.model.loss_impl = "dense"
    c.seed = seed  # initialisation and shuffling; the data themselves stay fixed
    t = c.train
    t.batch_size, t.steps = batch, examples // batch
    t.warmup_steps = max(1, t.steps // 6)
    t.log_every = t.eval_every = t.steps  # evaluate once, at the end
    t.checkpoint_every = 0
    return c


def run_one(variant: str, batch: int, seed: int, examples: int) -> dict:
    """Trains one run in a temporary workdir; returns its final train and eval metrics."""
    from jaxmodels.train import loop

    config = study_config(variant, batch, seed, examples)
    with tempfile.TemporaryDirectory() as workdir:
        loop.train(config, workdir)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            lines = [json.loads(line) for line in f]
    if lines[-1].get("step") != config.train.steps:  # stopped early (SIGTERM, Ctrl-C)
        raise SystemExit(f"{variant} batch {batch} seed {seed} stopped early; not recorded")
    final = {}
    for line in lines:
        final.update({k: v for k, v in line.items() if k in METRICS.values()})
    return final


def load(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def report(results: list[dict]) -> str:
    """A markdown table: mean ± sample std over seeds per (batch, variant, examples).

    A cell with one seed shows its value alone.
    """
    cells: dict[tuple, list[dict]] = {}
    for r in results:
        cells.setdefault((r["batch"], r["variant"], r["examples"]), []).append(r)
    head = "| batch | loss | examples | seeds | " + " | ".join(METRICS) + " |"
    rows = [head, "|" + " --- |" * (len(METRICS) + 4)]
    for (batch, variant, examples), runs in sorted(cells.items()):
        vals = []
        for key in METRICS.values():
            xs = [r["metrics"][key] for r in runs if key in r["metrics"]]
            if not xs:
                vals.append("—")
                continue
            spread = f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else ""
            vals.append(f"{statistics.fmean(xs):.3f}{spread}")
        rows.append(
            f"| {batch} | {variant} | {examples} | {len(runs)} | " + " | ".join(vals) + " |"
        )
    return "\n".join(rows)


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    path = os.path.join(args.out, "results.jsonl")
    if not args.report:
        os.makedirs(args.out, exist_ok=True)
        done = {(r["variant"], r["batch"], r["seed"], r["examples"]) for r in load(path)}
        for seed in map(int, args.seeds.split(",")):
            for batch in map(int, args.batches.split(",")):
                for variant in args.variants.split(","):
                    if (variant, batch, seed, args.examples) in done:
                        continue
                    metrics = run_one(variant, batch, seed, args.examples)
                    rec = dict(variant=variant, batch=batch, seed=seed, examples=args.examples)
                    with open(path, "a") as f:
                        f.write(json.dumps({**rec, "metrics": metrics}) + "\n")
    print(report(load(path)))


if __name__ == "__main__":
    main()
