r"""Sampler ablation on the trained digits model: offline FD / accuracy versus NFE.

PYTHONPATH=. python experiments/diffusion/ablation_digits.py --workdir runs/diffusion-digits \
    --out docs/diffusion_ablation_digits

Loads the newest checkpoint (EMA parameters) trained with ``experiments/diffusion/digits.py``,
draws ``--num`` class-conditional samples per (sampler, time steps, NFE) from the same seed and
writes a markdown table (``OUT.md``) and a plot (``OUT.png``) of the Frechet distance on the
digits classifier's features (lower is better; train-vs-held-out data scores ``fd_floor``).

Smallest run (a smoke-trained checkpoint): ``--config experiments/diffusion/digits.py:smoke
--num 20 --nfes 7``.
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from jaxmodels.config import load_config
from jaxmodels.data.image_data import image_data
from jaxmodels.evaluate.generative import digits_quality
from jaxmodels.models.diffusion.model import build_network, build_process
from jaxmodels.models.diffusion.sample import class_labels, make_generate
from jaxmodels.train import loop

NFES = (7, 15, 31, 63)  # Heun: n steps = 2n - 1 NFE; Euler/DPM++: n steps = n NFE
SAMPLERS = {  # label -> (sampler, schedule, steps for an NFE, extra sample options)
    "Euler, EDM steps": ("euler", "karras", lambda nfe: nfe, {}),
    "Heun, EDM steps": ("heun", "karras", lambda nfe: (nfe + 1) // 2, {}),
    "DPM-Solver++(2M), EDM steps": ("dpmpp_2m", "karras", lambda nfe: nfe, {}),
    "Heun, VE steps": ("heun", "ve", lambda nfe: (nfe + 1) // 2, {}),
    "Heun, VP steps": ("heun", "vp", lambda nfe: (nfe + 1) // 2, {}),
    "EDM stochastic (S_churn=10)": (
        "heun", "karras", lambda nfe: (nfe + 1) // 2,
        {"S_churn": 10.0, "S_tmin": 0.05, "S_tmax": 10.0, "S_noise": 1.003},
    ),
}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="workdir of a trained digits run")
    parser.add_argument("--out", default="docs/diffusion_ablation_digits")
    parser.add_argument("--num", type=int, default=500, help="samples per configuration")
    parser.add_argument("--config", default="experiments/diffusion/digits.py", help="FILE[:ARG]")
    parser.add_argument("--nfes", default=",".join(map(str, NFES)), help="comma-separated NFEs")
    args = parser.parse_args()
    args.nfes = tuple(int(n) for n in args.nfes.split(","))
    config = load_config(args.config)
    run = loop.build(config, args.workdir)
    state, step = loop.restore_or_init(run)
    if step == 0:
        raise FileNotFoundError(f"no checkpoint under {args.workdir}; train first")
    params = loop.inference_params(state)
    dataset = image_data(config.data)
    num_classes, shape = dataset.num_classes, dataset.shape
    net = build_network(config.model, jax.numpy.float32, num_classes, shape)
    process = build_process(config.model)
    labels = class_labels(args.num, num_classes)
    results, start = {}, time.time()
    for label, (sampler, schedule, steps, extra) in SAMPLERS.items():
        rows = []
        for nfe in args.nfes:
            s = config.sample.copy_and_resolve_references()
            s.update(dict(sampler=sampler, schedule=schedule, steps=steps(nfe), **extra))
            gen = make_generate(net, process, s, shape, num_classes)
            images = jax.device_get(gen(params, jax.random.key(1), labels))
            rows.append(digits_quality(images, labels, shape[0], dataset.split_seed))
            print(label, nfe, rows[-1], flush=True)
        results[label] = rows
    write(results, args, step, time.time() - start)


def write(results, args, step, seconds):
    floor = next(iter(results.values()))[0]["fd_floor"]
    nfes = args.nfes
    head = "| | " + " | ".join(f"NFE {n}" for n in nfes) + " |\n|---|" + "---|" * len(nfes)
    cell = lambda r: f"{r['fd']:.2f} / {100 * r['accuracy']:.0f}%"
    lines = ["# Sampler ablation on the trained digits model", ""]
    lines += ["```", __doc__.split("\n\n")[1].strip(), "```", ""]
    lines += [
        f"Checkpoint step {step}; {args.num} samples each; run time {seconds:.0f} s (CPU).",
        "",
    ]
    lines += [f"Cells: FD (train-vs-held-out floor {floor:.2f}) / classifier accuracy on the"]
    lines += ["conditioning labels.", "", head]
    lines += [f"| {k} | " + " | ".join(cell(r) for r in v) + " |" for k, v in results.items()]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(args.out + ".json", "w") as f:
        json.dump({"nfe": nfes, "results": results}, f, indent=1)
    plot(results, floor, nfes, args.out + ".png")


def plot(results, floor, nfes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=100)
    for k, v in results.items():
        ax.loglog(nfes, [r["fd"] for r in v], marker="o", ms=3, label=k)
    ax.axhline(floor, color="0.5", lw=0.8, label="train vs held-out data")
    ax.set(xlabel="NFE", ylabel="FD (classifier features)", title="Digits: FD vs NFE")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
