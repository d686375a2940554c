"""TRN's future prediction, ablated: TRN, TRN without its decoder (LSTM) and a GRU at equal
parameter count and equal tuning budget, several seeds, on two kinds of synthetic stream.

Streams: ``synthetic`` (the default: a 2-6-frame precursor before half of the actions) and
``cued`` (every action announced by a 2-frame cue ``--cue_lead`` frames before its onset).
Widths: TRN at ``--trn_hidden``; the LSTM and the GRU get the width whose parameter count is
closest to TRN's. Tuning budget: every model gets the same learning-rate grid, tried with the
first seed on the cued streams; the best rate (by mAP) is then run with every seed on both
kinds of stream. Each run goes through the trainer CLI (see compare.py); every finished run is
appended to ``<workdir>/runs.jsonl``, so an interrupted study resumes where it stopped.

python experiments/online_action/ablation.py --steps 600 --seeds 0,1,2 --lrs 1e-3,3e-3
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from compare import train

from jaxmodels.config import load_config
from jaxmodels.models.online_action.detectors import build_model

WIDTH_KEYS = {
    "trn": ("width",),
    "lstm": ("width",),
    "gru": ("width", "embed_dim"),
}


def num_params(model: str, width: int, dim: int = 64, classes: int = 12) -> int:
    """Parameters of ``model`` at ``width`` on the synthetic streams' shapes (abstract init)."""
    m = load_config(f"experiments/online_action/{model}.py").model
    for key in WIDTH_KEYS[model]:
        m[key] = width
    module = build_model(m, dim, classes)
    params = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 2, dim)))
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def matched_width(model: str, target: int) -> int:
    """The width of ``model`` whose parameter count is closest to ``target`` (bisection: the
    count grows with the width)."""
    lo, hi = 1, 4096
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if num_params(model, mid) <= target else (lo, mid)
    return min((lo, hi), key=lambda w: abs(num_params(model, w) - target))


def run(model, width, dataset, seed, lr, steps, workdir, cue_lead, done):
    """One training run (skipped when ``done`` has it); returns its evaluation line."""
    key = f"{dataset}-{model}-w{width}-lr{lr}-s{seed}"
    if key in done:
        return done[key]
    flags = [f"--config.model.{k}={width}" for k in WIDTH_KEYS[model]]
    flags += [f"--config.seed={seed}", f"--config.train.learning_rate={lr}"]
    flags += ["--config.train.checkpoint_every=0"]
    if dataset == "cued":
        flags += [f"--config.data.cue_lead=({cue_lead[0]}, {cue_lead[1]})"]
    result, seconds = train(model, "synthetic", os.path.join(workdir, key), steps, flags)
    row = dict(key=key, model=model, width=width, data=dataset, seed=seed, lr=lr, seconds=seconds)
    row.update({k[len("eval_") :]: v for k, v in result.items() if "AP" in k})
    with open(os.path.join(workdir, "runs.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    done[key] = row
    return row


def summary(rows, widths, params) -> str:
    """Markdown: mean ± standard deviation over seeds per (streams, model)."""
    ahead = sorted({k for r in rows for k in r if k.startswith("future_mAP_")})
    lines = [
        "| streams | model | width | params | lr | seeds | mAP | mcAP | "
        + " | ".join(f"TRN t+{k.split('_')[-1]}" for k in ahead)
        + " |",
        "|" + "---|" * (8 + len(ahead)),
    ]
    for (data, model), group in sorted(_groups(rows).items()):
        cells = [_mean_std([r[k] for r in group]) for k in ("mAP", "mcAP")]
        cells += [_mean_std([r[k] for r in group]) if k in group[0] else "" for k in ahead]
        lines.append(
            f"| {data} | {model} | {widths[model]} | {params[model]:,} | {group[0]['lr']} "
            f"| {len(group)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def _groups(rows):
    out = {}
    for r in rows:
        out.setdefault((r["data"], r["model"]), []).append(r)
    return out


def _mean_std(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="trn,lstm,gru")
    p.add_argument("--trn_hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--lrs", default="1e-3,3e-3")
    p.add_argument("--cue_lead", default="4,16", help="lo,hi frames between cue and onset")
    p.add_argument("--streams", default="cued,synthetic", help="which streams to run")
    p.add_argument("--workdir", default="runs/oad-ablation")
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    models, seeds = a.models.split(","), [int(s) for s in a.seeds.split(",")]
    lrs, cue_lead = [float(x) for x in a.lrs.split(",")], [int(x) for x in a.cue_lead.split(",")]
    target = num_params("trn", a.trn_hidden)
    widths = {m: a.trn_hidden if m == "trn" else matched_width(m, target) for m in models}
    params = {m: num_params(m, w) for m, w in widths.items()}
    print("widths", widths, "params", params, flush=True)
    log = os.path.join(a.workdir, "runs.jsonl")
    done = {}
    if os.path.exists(log):
        with open(log) as f:
            done = {r["key"]: r for r in map(json.loads, f)}
    common = dict(steps=a.steps, workdir=a.workdir, cue_lead=cue_lead, done=done)
    best = {}
    for m in models:  # equal tuning budget: the same grid, first seed, cued streams
        tried = {lr: run(m, widths[m], "cued", seeds[0], lr, **common)["mAP"] for lr in lrs}
        best[m] = max(tried, key=tried.get)
        print(m, "lr grid", tried, "->", best[m], flush=True)
    rows = [
        run(m, widths[m], data, seed, best[m], **common)
        for data in a.streams.split(",")
        for seed in seeds
        for m in models
    ]
    print(summary(rows, widths, params))


if __name__ == "__main__":
    main()
