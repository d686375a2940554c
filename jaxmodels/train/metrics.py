"""Metric logging: one JSON line per logged step, TensorBoard events, and a progress bar.

Only process 0 writes. Lines look like ``{"step": 100, "loss": 2.31, "lr": 0.0003}``; eval
lines carry ``eval_``-prefixed names.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from jaxmodels.train import paths


def mean_metrics(history: Sequence[Mapping[str, jax.Array]]) -> dict[str, float]:
    """Averages a list of per-step metric dicts (fetched from device in one transfer)."""
    host = jax.device_get(list(history))
    return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


def first_nonfinite(history: Sequence[Mapping[str, jax.Array]], first_step: int) -> int | None:
    """Returns the first step in ``history`` (steps from ``first_step``) whose loss or update
    was non-finite (the train step reports ``finite``; without it the loss is checked)."""
    key = "finite" if "finite" in history[0] else "loss"
    values = np.asarray(jax.device_get([h[key] for h in history]), dtype=np.float64)
    bad = np.flatnonzero(values == 0) if key == "finite" else np.flatnonzero(~np.isfinite(values))
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
    """Writes metrics to ``workdir/metrics.jsonl`` and TensorBoard event files.

    ``resume_step`` (a resumed run's restored step) drops the lines logged after it by the
    interrupted run, so every step appears once. Non-finite values are written as ``null``
    (``NaN`` is not JSON). Local files are appended to; on an object store, which cannot
    append, the file is rewritten at most every ``flush_s`` seconds and on ``close``.
    """

    def __init__(self, workdir, resume_step: int | None = None, flush_s: float = 30.0):
        self.enabled = jax.process_index() == 0
        self.path = paths.path(workdir) / "metrics.jsonl"
        self._remote, self._flush_s, self._flushed = paths.is_uri(self.path), flush_s, 0.0
        self._lines: list[str] = []
        self._tb = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None or self._remote:
            self._lines = _kept_lines(self.path, resume_step)
            paths.write_text(self.path, "".join(self._lines))
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.fspath(self.path.parent / "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _py(v) for k, v in metrics.items()}}
        line = json.dumps(row, allow_nan=False) + "\n"
        if self._remote:
            self._lines.append(line)
            if time.monotonic() - self._flushed > self._flush_s:
                self.flush()
        else:
            with self.path.open("a") as f:
                f.write(line)
        for k, v in row.items():
            if k != "step" and isinstance(v, int | float):
                self._tb.add_scalar(k, v, step)
        self._tb.flush()

    def flush(self) -> None:
        if self.enabled and self._remote:
            paths.write_text(self.path, "".join(self._lines))
            self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush()
        if self._tb is not None:
            self._tb.close()


def _kept_lines(path, resume_step: int | None) -> list[str]:
    """The existing lines of ``path`` up to ``resume_step`` (all of them when it is None)."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a kill mid-write
        if resume_step is None or step <= resume_step:
            kept.append(line if line.endswith("\n") else line + "\n")
    return kept


def _py(v):
    v = np.asarray(v)
    if v.size != 1:
        return [_py(x) for x in v]
    v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


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
