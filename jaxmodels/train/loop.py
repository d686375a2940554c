"""The one training loop every family uses, plus ``eval`` and ``sample`` entry points.

Phases: build (mesh, task, optimizer, abstract state) -> restore or initialise -> loop
(step, log, evaluate, checkpoint; SIGTERM and non-finite losses handled) -> finish.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from typing import Any

import jax
import numpy as np

from jaxmodels import registry
from jaxmodels.parallel import mesh as mesh_lib
from jaxmodels.parallel import multihost
from jaxmodels.train import metrics as metrics_lib
from jaxmodels.train import optim
from jaxmodels.train import state as state_lib
from jaxmodels.train import step as step_lib
from jaxmodels.train.checkpoint import Checkpointer
from jaxmodels.train.task import Task


class NonFiniteLossError(RuntimeError):
    """Raised when a training loss is NaN or Inf; no checkpoint is written after it."""


@dataclasses.dataclass
class Run:
    """Everything built from a config before any step runs."""

    config: Any
    workdir: str
    mesh: Any
    rules: tuple
    task: Task
    tx: Any
    schedule: Any
    abstract_state: Any
    state_sharding: Any
    checkpointer: Checkpointer | None


# ----------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------


def build(config, workdir: str | None) -> Run:
    """Builds mesh, task, optimizer and the sharded abstract state (nothing is allocated).

    Without a ``workdir`` there is no checkpointer (ahead-of-time compilation needs none).
    """
    multihost.initialize()
    mesh = mesh_lib.make_mesh(config.mesh)
    rules = mesh_lib.rules_from_config(config.mesh.rules)
    task = registry.family_module(config.family).build_task(config, mesh)
    task = dataclasses.replace(task, init=state_lib.with_param_dtype(task.init, config.train))
    tx = optim.make_optimizer(config.train)
    use_ema = config.train.ema_halflife_examples > 0
    with jax.set_mesh(mesh):
        abstract, sharding = state_lib.state_shardings(
            task.init, tx, _init_rng(config), mesh, rules, use_ema=use_ema
        )
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, sharding
    )
    ckpt = Checkpointer(workdir, keep=config.train.keep_checkpoints) if workdir else None
    schedule = optim.learning_rate_schedule(config.train)
    return Run(config, workdir, mesh, rules, task, tx, schedule, abstract, sharding, ckpt)


def _init_rng(config) -> jax.Array:
    return jax.random.split(jax.random.key(config.seed))[1]


def restore_or_init(run: Run, data_iter=None):
    """Returns ``(state, step)`` from the newest good checkpoint, or a fresh state at step 0."""
    state, step = run.checkpointer.restore(run.abstract_state, data_iter)
    if state is not None:
        return state, step
    use_ema = run.config.train.ema_halflife_examples > 0
    with jax.set_mesh(run.mesh):
        state = state_lib.create_state(
            run.task.init, run.tx, _init_rng(run.config), run.state_sharding, use_ema=use_ema
        )
    return state, 0


def inference_params(state):
    """Parameters used for evaluation and sampling: the EMA when one is kept."""
    return state.ema_params if state.ema_params is not None else state.params


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


class Evaluator:
    """Averages the family's eval metrics over its eval data and runs its evaluators."""

    def __init__(self, run: Run):
        self.run = run
        self._step = None
        self._params_sharding = run.state_sharding.params

    def __call__(self, state, step: int) -> dict[str, float]:
        run, out = self.run, {}
        params = inference_params(state)
        if run.task.eval_data is not None:
            out.update(self._eval_data_metrics(params))
        if run.task.evaluate is not None:
            rng = jax.random.fold_in(jax.random.key(run.config.seed), step)
            with jax.set_mesh(run.mesh):
                extra = jax.device_get(run.task.evaluate(params, rng))
            out.update({_eval_name(k): float(v) for k, v in extra.items()})
        return out

    def _eval_data_metrics(self, params) -> dict[str, float]:
        run, limit = self.run, self.run.config.train.eval_batches
        history = []
        data = run.task.eval_data(jax.process_index(), jax.process_count())
        for i, batch in enumerate(data):
            if limit and i >= limit:
                break
            if self._step is None:
                shardings = mesh_lib.batch_shardings(
                    batch, run.mesh, run.rules, run.task.batch_axes
                )
                self._shardings = shardings
                self._step = step_lib.build_eval_step(
                    run.task,
                    mesh=run.mesh,
                    rules=run.rules,
                    params_sharding=self._params_sharding,
                    batch_sharding=shardings,
                    seed=run.config.seed,
                )
            history.append(self._step(params, mesh_lib.put_batch(batch, self._shardings), i))
        if not history:
            raise ValueError(f"config.family={run.config.family!r}: the eval data is empty")
        return {_eval_name(k): v for k, v in metrics_lib.mean_metrics(history).items()}


def _eval_name(name: str) -> str:
    return name if name.startswith("eval_") else f"eval_{name}"


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


class _Preemption:
    """Turns SIGTERM (TPU preemption, `kill`) into a flag checked between steps."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._old)

    def agreed(self) -> bool:
        """True when any process was asked to stop (all processes must stop together)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))


def _every(step: int, n: int, last: int) -> bool:
    return step == last or (n > 0 and step % n == 0)


def train(config, workdir: str) -> dict[str, float]:
    """Trains ``config`` in ``workdir``, resuming from its newest checkpoint if there is one.

    Returns the last logged training and eval metrics.
    """
    run = build(config, workdir)
    t = config.train
    data = run.task.train_data(jax.process_index(), jax.process_count())
    state, start = restore_or_init(run, data)
    _write_config(config, workdir)
    _banner(run, state, start)
    if start >= t.steps:
        print(f"Already trained to step {start} (train.steps={t.steps}); nothing to do.")
        return {}
    writer = metrics_lib.MetricsWriter(workdir)
    evaluator = Evaluator(run)
    try:
        state, last = _loop(run, state, start, data, writer, evaluator)
    finally:
        run.checkpointer.wait()
        writer.close()
    if t.sample_at_end and run.task.sample is not None and int(state.step) == t.steps:
        _print_samples(run, state)
    return last


def build_train_step(run: Run, example_batch):
    """Returns the run's jitted train step and the batch shardings it expects."""
    t = run.config.train
    bshard = mesh_lib.batch_shardings(example_batch, run.mesh, run.rules, run.task.batch_axes)
    train_step = step_lib.build_train_step(
        run.task,
        run.tx,
        mesh=run.mesh,
        rules=run.rules,
        state_sharding=run.state_sharding,
        batch_sharding=bshard,
        seed=run.config.seed,
        grad_accum=t.grad_accum,
        ema_decay=state_lib.ema_decay(t.ema_halflife_examples, t.batch_size),
        schedule=run.schedule,
    )
    return train_step, bshard


def _loop(run: Run, state, start, data, writer, evaluator) -> dict[str, float]:
    t, last = run.config.train, {}
    first = next(data)
    train_step, bshard = build_train_step(run, first)
    bar, history, tick = metrics_lib.progress_bar(start, t.steps), [], time.perf_counter()
    batch = first
    with _Preemption() as preempt:
        for step in range(start + 1, t.steps + 1):
            state, m = train_step(state, mesh_lib.put_batch(batch, bshard))
            history.append(m)
            stop = preempt.requested or (step % max(t.log_every, 1) == 0 and preempt.agreed())
            save = stop or _every(step, t.checkpoint_every, t.steps)
            if save or _every(step, t.log_every, t.steps) or _every(step, t.eval_every, t.steps):
                last = _log(history, step, tick, run.task, t.batch_size, writer, bar)
                history, tick = [], time.perf_counter()
            if t.eval_every and _every(step, t.eval_every, t.steps) and not stop:
                evals = evaluator(state, step)
                writer.write(step, evals)
                last.update(evals)
                bar.write(f"step {step}: " + _fmt(evals))
            if save:
                run.checkpointer.save(step, state, data)
            if stop:
                bar.write(f"SIGTERM received: saved checkpoint at step {step}, exiting.")
                break
            if step < t.steps:
                batch = next(data)
    bar.close()
    return state, last


def _log(history, step, tick, task, batch_size, writer, bar) -> dict[str, float]:
    """Checks losses are finite, then writes the averaged metrics and throughput."""
    bad = metrics_lib.first_nonfinite(history, step - len(history) + 1)
    if bad is not None:
        raise NonFiniteLossError(
            f"loss became non-finite at step {bad}; stopping. The last good checkpoint is "
            "kept; lower train.learning_rate or check the data, then rerun to resume."
        )
    m = metrics_lib.mean_metrics(history)
    m.update(metrics_lib.throughput(task, len(history), batch_size, time.perf_counter() - tick))
    writer.write(step, m)
    bar.update(step - bar.n)
    bar.set_postfix(metrics_lib.progress_postfix(task, m))
    return m


def _fmt(metrics) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


def _write_config(config, workdir: str) -> None:
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))


def _banner(run: Run, state, start: int) -> None:
    n = state_lib.param_count(state.params)
    mesh = dict(run.mesh.shape)
    how = f"resumed from step {start}" if start else "initialised"
    print(
        f"jaxmodels: family={run.config.family} params={n:,} mesh={mesh} "
        f"devices={jax.device_count()} processes={jax.process_count()} state {how}",
        flush=True,
    )


# ----------------------------------------------------------------------------------------------
# Eval and sample commands
# ----------------------------------------------------------------------------------------------


def _restore_for_inference(config, workdir: str):
    run = build(config, workdir)
    state, step = run.checkpointer.restore(run.abstract_state)
    if state is None:
        raise FileNotFoundError(
            f"no checkpoint under {run.checkpointer.directory}; train first with "
            f"`jaxmodels train --config ... --workdir {workdir}`"
        )
    return run, state, step


def evaluate(config, workdir: str) -> dict[str, float]:
    """Evaluates the newest checkpoint in ``workdir`` and appends the result to metrics.jsonl."""
    run, state, step = _restore_for_inference(config, workdir)
    out = Evaluator(run)(state, step)
    metrics_lib.MetricsWriter(workdir).write(step, out)
    print(f"step {step}: " + _fmt(out))
    return out


def _print_samples(run: Run, state) -> str:
    rng = jax.random.fold_in(jax.random.key(run.config.seed), int(state.step))
    with jax.set_mesh(run.mesh):
        summary = run.task.sample(inference_params(state), rng, run.workdir)
    if jax.process_index() == 0:
        print(summary, flush=True)
    return summary


def sample(config, workdir: str) -> str:
    """Samples from the newest checkpoint with the family's ``sample`` function."""
    run, state, _ = _restore_for_inference(config, workdir)
    if run.task.sample is None:
        raise ValueError(f"family {config.family!r} has no sampler")
    return _print_samples(run, state)
