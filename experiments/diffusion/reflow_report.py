"""Table and plot of reflow rounds from their workdirs' last evaluation (metrics.jsonl).

python experiments/diffusion/reflow_report.py runs/rf1 runs/rf2 runs/rf2_distill \
  --names 1-RF 2-RF "2-RF + distill" --plot docs/flows_reflow_toy2d.png
"""

from __future__ import annotations

import argparse
import json
import os

KEYS = (
    "eval_straightness",
    "eval_euler1_fd",
    "eval_euler2_fd",
    "eval_fd",
)
LOGP_KEYS = ("eval_euler1_sample_logp", "eval_euler2_sample_logp", "eval_sample_logp")


def last_eval(workdir: str) -> dict[str, float]:
    """The last metrics line of ``workdir`` that holds the reflow evaluation."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [r for r in map(json.loads, f) if "eval_straightness" in r]
    if not rows:
        raise ValueError(f"{workdir}: no evaluation with eval_straightness in metrics.jsonl")
    return rows[-1]


def table(names, rows) -> str:
    cols = ["straightness", "FD 1 step", "FD 2 steps", "FD Heun"]
    keys = KEYS + tuple(k for k in LOGP_KEYS if k in rows[0])
    cols += ["log p 1 step", "log p 2 steps", "log p Heun"][: len(keys) - len(KEYS)]
    lines = ["| round | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, r in zip(names, rows, strict=True):
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4g}" for k in keys) + " |")
    return "\n".join(lines)


def plot(names, rows, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    x = range(len(names))
    axes[0].plot(x, [r["eval_straightness"] for r in rows], "o-")
    axes[0].set(title="straightness (lower is straighter)", xticks=list(x), xticklabels=names)
    for k, label in (("eval_euler1_fd", "1 step"), ("eval_euler2_fd", "2 steps")):
        axes[1].plot(x, [r[k] for r in rows], "o-", label=label)
    axes[1].set(title="Frechet distance (Euler)", yscale="log", xticks=list(x), xticklabels=names)
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdirs", nargs="+")
    p.add_argument("--names", nargs="+")
    p.add_argument("--plot", default="")
    a = p.parse_args()
    names = a.names or a.workdirs
    rows = [last_eval(w) for w in a.workdirs]
    print(table(names, rows))
    if a.plot:
        plot(names, rows, a.plot)


if __name__ == "__main__":
    main()
