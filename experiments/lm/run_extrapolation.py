"""Length-extrapolation study: train the same small LM per position encoding, tabulate bpb.

Trains ``experiments/lm/rope_lm.py:extrapolation`` (the LM config at the study's size, with
the ``extrapolation`` evaluator) once per encoding through the shared trainer (resuming
finished runs), reads each run's final ``eval_bpb_x{k}`` metrics (validation bits per byte at
k times the training length, RoPE also with each scaling at inference) and writes a markdown
table and a PNG plot:

    python experiments/lm/run_extrapolation.py --workdir runs/extrapolation
    python experiments/lm/run_extrapolation.py --workdir /tmp/x --smoke --out /tmp/x
"""

from __future__ import annotations

import argparse
import json
import os
import time

from jaxmodels.config import REPO_ROOT, load_config
from jaxmodels.layers.positions import POSITIONS

CONFIG = "experiments/lm/rope_lm.py"
ENCODINGS = POSITIONS


def study_config(smoke: bool):
    """The LM config at the study's size (``:extrapolation``), tiny with ``smoke``."""
    return load_config(f"{CONFIG}:extrapolation" + (",smoke" if smoke else ""))


def final_metrics(workdir: str) -> dict[str, float]:
    """The last metrics.jsonl line that holds the length sweep."""
    last = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "eval_bpb_x1" in record:
                last = record
    if not last:
        raise ValueError(f"{workdir}/metrics.jsonl has no eval_bpb_x1 line; did training finish?")
    return last


def run_all(workdir: str, encodings, smoke: bool) -> tuple[dict, dict]:
    """Trains each encoding (or resumes a finished run); returns (results, wall seconds)."""
    from jaxmodels.config import validate
    from jaxmodels.train import loop

    results, seconds = {}, {}
    for name in encodings:
        config = study_config(smoke)
        config.model.position.name = name
        validate(config)
        wd = os.path.join(workdir, name)
        tic = time.perf_counter()
        loop.train(config, wd)
        seconds[name] = time.perf_counter() - tic
        results[name] = final_metrics(wd)
    return results, seconds


def rows(results: dict, factors) -> list[tuple[str, list[float | None]]]:
    """Table rows: one per encoding, plus one per RoPE scaling applied at inference."""
    out = []
    for name, m in results.items():
        out.append((name, [m.get(f"eval_bpb_x{k}") for k in factors]))
        if name == "rope":
            scaled = [k for k in m if k.startswith("eval_bpb_x") and k.count("_") == 3]
            scalings = sorted({k.split("_")[-1] for k in scaled})
            for s in scalings:
                vals = [m.get(f"eval_bpb_x{k}_{s}", m.get("eval_bpb_x1")) for k in factors]
                out.append((f"rope + {s}", vals))
    return out


def write_table(path: str, table, factors, L: int, command: str, seconds: dict) -> None:
    head = "| encoding | " + " | ".join(f"{k}L = {k * L}" for k in factors) + " |"
    lines = [head, "|" + "---|" * (len(factors) + 1)]
    for name, vals in table:
        cells = " | ".join("—" if v is None else f"{v:.3f}" for v in vals)
        lines.append(f"| {name} | {cells} |")
    total = sum(seconds.values())
    with open(path, "w") as f:
        f.write("Validation bits per byte (lower is better) of the same decoder LM trained at ")
        f.write(f"L = {L} bytes, evaluated at longer lengths.\n\n")
        f.write("\n".join(lines) + "\n\n")
        f.write(f"Made by `{command}` in {total / 60:.1f} min.\n")


def write_plot(path: str, table, factors, L: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lengths = [k * L for k in factors]
    colors = plt.get_cmap("tab20").colors
    for i, (name, vals) in enumerate(table):
        style = "--" if name.startswith("rope +") else "-"
        ax.plot(lengths, vals, style, marker="o", label=name, color=colors[(2 * i) % 20 + i // 10])
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel(f"evaluation length (bytes); trained at L = {L}")
    ax.set_ylabel("validation bits per byte")
    ax.set_title("Length extrapolation by position encoding")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="one subdirectory per encoding")
    ap.add_argument("--out", default=str(REPO_ROOT / "docs"), help="table/plot directory")
    ap.add_argument("--encodings", default=",".join(ENCODINGS), help="comma-separated names")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    args = ap.parse_args(argv)
    encodings = [e for e in args.encodings.split(",") if e]
    unknown = sorted(set(encodings) - set(ENCODINGS))
    if unknown:
        ap.error(f"--encodings: unknown {unknown}; choose from {ENCODINGS}")
    results, seconds = run_all(args.workdir, encodings, args.smoke)
    config = study_config(args.smoke)
    factors, L = list(config.extrapolation.factors), config.data.seq_len
    table = rows(results, factors)
    os.makedirs(args.out, exist_ok=True)
    command = "python experiments/lm/run_extrapolation.py --workdir runs/extrapolation"
    if args.smoke:
        command += " --smoke"
    write_table(os.path.join(args.out, "positions_extrapolation.md"), table, factors, L,
                command, seconds)  # fmt: skip
    write_plot(os.path.join(args.out, "positions_extrapolation.png"), table, factors, L)
    with open(os.path.join(args.out, "positions_extrapolation.md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
