"""Metric logging: one JSON line per logged step, TensorBoard events, and a progress bar.

Only process 0 writes. Lines look like ``{"step": 100, "loss": 2.31, "lr": 0.0003}``; eval
lines carry ``eval_``-prefixed names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np


def mean_metrics(history: Sequence[Mapping[str, jax.Array]]) -> dict[str, float]:
    """Averages a list of per-step metric dicts (fetched from device in one transfer)."""
    host = jax.device_get(list(history))
    return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


def first_nonfinite(history: Sequence[Mapping[str, jax.Array]], first_step: int) -> int | None:
    """Returns the step of the first non-finite loss in ``history`` (steps from ``first_step``)."""
    losses = np.asarray(jax.device_get([h["loss"] for h in history]), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(losses))
    return first_step + int(bad[0]) if bad.size else None


_SHORT = {"examples": "ex_s", "tokens": "tok_s", "images": "img_s"}


def throughput(task, steps: int, batch_size: int, seconds: float) -> dict[str, float]:
    """Steps/s, examples/s, the task's units/s (``tokens_per_sec``, ...) and model TFLOP/s."""
    examples = steps * batch_size / seconds
    out = {"steps_per_sec": steps / seconds, "examples_per_sec": examples}
    if task.units != "examples":
        out[f"{task.units}_per_sec"] = examples * task.units_per_example
    if task.flops_per_example:
        out["model_tflops"] = examples * task.flops_per_example / 1e12
    return out


def progress_postfix(task, m: Mapping[str, float]) -> dict[str, str]:
    """The progress bar's loss, rate in the task's units and (when known) model TFLOP/s."""
    short = _SHORT.get(task.units, f"{task.units}_s")
    out = {"loss": f"{m['loss']:.4f}", short: f"{m[f'{task.units}_per_sec']:.0f}"}
    if "model_tflops" in m:
        out["TFLOP_s"] = f"{m['model_tflops']:.3g}"
    return out


class MetricsWriter:
    """Appends metrics to ``workdir/metrics.jsonl`` and TensorBoard event files."""

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            os.makedirs(workdir, exist_ok=True)
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        line = {"step": int(step), **{k: _py(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        for k, v in line.items():
            if k != "step" and isinstance(v, int | float):
                self._tb.add_scalar(k, v, step)
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _py(v):
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()


def progress_bar(start: int, total: int):
    """A tqdm bar over steps (silent on processes other than 0)."""
    from tqdm.auto import tqdm

    return tqdm(
        initial=start,
        total=total,
        unit="step",
        dynamic_ncols=True,
        disable=jax.process_index() != 0,
    )
