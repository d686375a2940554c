"""The one training loop every family uses, plus ``eval`` and ``sample`` entry points.

Phases: checks (workdir, lock, config against the saved run) -> build (mesh, task, optimizer,
abstract state) -> restore or initialise -> loop (step, log, evaluate, checkpoint; SIGTERM,
Ctrl-C and non-finite updates handled) -> finish.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import pathlib
import time
from typing import Any

import jax
import optax

from jaxmodels import registry
from jaxmodels.convert.read import MissingHFError
from jaxmodels.parallel import mesh as mesh_lib
from jaxmodels.parallel import multihost
from jaxmodels.train import checkpoint as checkpoint_lib
from jaxmodels.train import lock as lock_lib
from jaxmodels.train import metrics as metrics_lib
from jaxmodels.train import optim, paths, preemption, resume, warmstart
from jaxmodels.train import state as state_lib
from jaxmodels.train import step as step_lib
from jaxmodels.train.checkpoint import Checkpointer
from jaxmodels.train.task import Task


class NonFiniteLossError(RuntimeError):
    """A step's loss, gradients or update were NaN/Inf; it was not applied and not saved."""


# Errors that are the user's to fix: the CLI prints them (and their causes) without a traceback.
USER_ERRORS = (
    NonFiniteLossError,
    FileNotFoundError,
    FileExistsError,  # export: the --out directory holds files
    NotADirectoryError,
    MissingHFError,
    ValueError,
    lock_lib.WorkdirLockedError,
    checkpoint_lib.CheckpointReadError,
    paths.MissingExtraError,
    paths.WriteError,
)


# What a signal outside the training steps prints (it stops at once: nothing unsaved to keep).
STARTING = "during start-up: stopped before the first step; rerun the same command to go on"
SAMPLING = "while sampling after training: stopped; every checkpoint is saved (`jaxmodels sample`)"


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


def build(config, workdir: str | None, *, read_only: bool = False) -> Run:
    """Builds mesh, task, optimizer and the sharded abstract state (nothing is allocated).

    Without a ``workdir`` there is no checkpointer (ahead-of-time compilation needs none);
    ``read_only`` (eval, sample) opens the checkpoints without ever changing them.
    """
    multihost.initialize()
    mesh = mesh_lib.make_mesh(config.mesh)
    rules = mesh_lib.rules_from_config(config.mesh.rules)
    mesh_lib.check_batch(config.train, mesh, rules)
    task = registry.family_module(config.family).build_task(config, mesh)
    task = dataclasses.replace(task, init=state_lib.with_param_dtype(task.init, config.train))
    tx = optim.make_optimizer(config.train)
    use_ema = config.train.ema_halflife_examples > 0
    with jax.set_mesh(mesh):
        abstract, sharding = state_lib.state_shardings(
            task.init,
            tx,
            _init_rng(config),
            mesh,
            rules,
            use_ema=use_ema,
            init_model_state=task.init_model_state,
        )
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, sharding
    )
    keep = config.train.keep_checkpoints
    ckpt = Checkpointer(workdir, keep=keep, read_only=read_only) if workdir else None
    schedule = optim.learning_rate_schedule(config.train)
    return Run(config, workdir, mesh, rules, task, tx, schedule, abstract, sharding, ckpt)


def _init_rng(config) -> jax.Array:
    return jax.random.split(jax.random.key(config.seed))[1]


def _start_params(run: Run):
    """The parameters a fresh run starts from: ``config.init.workdir``'s, else the family's
    ``Task.start_params`` (``init.hf``), else ``None`` (the family's own init)."""
    start = warmstart.start_params(run.config, run.abstract_state.params)
    if start is None and run.task.start_params is not None:
        key = "the imported checkpoint (config.init.hf)"
        start = warmstart.place(run.task.start_params(), run.abstract_state.params, key=key)
    return start


def restore_or_init(run: Run, data_iter=None):
    """Returns ``(state, step)`` from the newest verified checkpoint, or a fresh state (from
    ``config.init.workdir``'s parameters when it names another run, else from the family's
    ``Task.start_params`` when it has them)."""
    state, step = run.checkpointer.restore(run.abstract_state, data_iter)
    if state is not None:
        return state, step
    start = _start_params(run)
    use_ema = run.config.train.ema_halflife_examples > 0
    with jax.set_mesh(run.mesh):
        state = state_lib.create_state(
            run.task.init,
            run.tx,
            _init_rng(run.config),
            run.state_sharding,
            use_ema=use_ema,
            init_model_state=run.task.init_model_state,
            start=start,
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


def _every(step: int, n: int, last: int) -> bool:
    return step == last or (n > 0 and step % n == 0)


def train(config, workdir: str, *, allow_config_change: bool = False) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` (local or ``gs://``), resuming from its newest checkpoint.

    Refuses, before touching any checkpoint, a workdir another live run holds and a config
    whose keys differ from the run's ``config.json`` (unless ``allow_config_change``). SIGTERM
    and Ctrl-C stop cleanly from the first line (:mod:`~jaxmodels.train.preemption`); a start
    that fails leaves no empty workdir behind. Returns the last logged training and eval
    metrics.
    """
    with preemption.Stop(stage=STARTING) as stop:
        wd = paths.check_workdir(workdir, must_exist=False)
        multihost.initialize()
        stop.processes_started()
        created = not wd.exists()
        try:
            with _workdir_lock(wd):
                check_saved_config(config, wd, allow=allow_config_change)
                return _train(config, wd, stop)
        except BaseException:
            if created and jax.process_index() == 0:
                paths.remove_empty_dirs(wd)
            raise


@contextlib.contextmanager
def _workdir_lock(wd):
    """Process 0 holds the workdir's lock; every process learns whether it got it. The lock is
    released however this ends, an interrupted acquire included."""
    lock, error = lock_lib.WorkdirLock(wd), None
    try:
        if jax.process_index() == 0:
            try:
                lock.acquire()
            except lock_lib.WorkdirLockedError as e:
                error = e
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            got = multihost_utils.broadcast_one_to_all(int(error is None))
            if error is None and not got:
                error = lock_lib.WorkdirLockedError(f"process 0 could not lock {wd} (see its log)")
        if error is not None:
            raise error
        yield
    finally:
        if jax.process_index() == 0:
            lock.release()


def check_saved_config(config, wd, *, allow: bool) -> None:
    """Compares ``config`` with the run saved in ``wd`` (if it has checkpoints); logs changes."""
    saved_file, ckpts = wd / "config.json", wd / "checkpoints"
    if not (saved_file.exists() and ckpts.is_dir() and any(ckpts.iterdir())):
        return
    try:
        saved = json.loads(saved_file.read_text())
    except ValueError as e:
        saved = e
    if not isinstance(saved, dict):
        raise ValueError(
            f"{saved_file} is not the run's saved config (empty, cut short or not a JSON "
            f"object: {saved}), so the config cannot be checked against the saved run; nothing "
            f"was changed. If a full disk or a kill cut it short, move it aside (mv {saved_file} "
            f"{saved_file}.broken) and rerun with the run's --config: it is written again, and "
            "the parameter shapes are still checked against the checkpoint."
        )
    changes = resume.check_config(saved, config, allow=allow, where=str(saved_file))
    if changes and jax.process_index() == 0:
        print("Config changes since the saved run:\n  " + "\n  ".join(changes), flush=True)


def _train(config, wd, stop: preemption.Stop) -> dict[str, float]:
    run = build(config, wd)
    t = config.train
    data = run.task.train_data(jax.process_index(), jax.process_count())
    first = _first_batches(run, data)
    state, start = restore_or_init(run, data)
    _write_config(config, wd)
    if start == 0:
        _keep_init_hf(config, wd)
    _banner(run, state, start)
    if start >= t.steps:
        print(f"Already trained to step {start} (train.steps={t.steps}); nothing to do.")
        return {}
    if start:  # the restored iterator moved on: its next batch is the one to train on
        first = next(data)
    writer = metrics_lib.MetricsWriter(wd, resume_step=start)
    evaluator = Evaluator(run)
    stop.stage = None  # from the first step on, a signal saves a checkpoint and stops
    try:
        state, last = _loop(run, state, start, first, data, writer, evaluator, stop)
    finally:
        run.checkpointer.wait()
        writer.close()
    stop.stage = SAMPLING
    done = int(state.step) == t.steps and stop.requested is None
    if t.sample_at_end and run.task.sample is not None and done:
        _print_samples(run, state)
    return last


def _first_batches(run: Run, data):
    """Checks, before anything compiles, that the data yields a batch (and the eval data too)."""
    t = run.config.train
    first = next(data, None)
    if first is None:
        raise ValueError(
            f"the training data yields no batch: it has fewer examples than "
            f"config.train.batch_size={t.batch_size} (check config.data)"
        )
    if t.eval_every and run.task.eval_data is not None:
        eval_data = run.task.eval_data(jax.process_index(), jax.process_count())
        if next(iter(eval_data), None) is None:
            raise ValueError(
                f"the eval data yields no batch: it has fewer examples than "
                f"config.train.batch_size={t.batch_size}; use a larger eval split (config.data) "
                "or set config.train.eval_every=0. Nothing was trained or saved."
            )
    return first


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
        debug_checks=t.debug_checks,
    )
    return train_step, bshard


def _loop(run: Run, state, start, first, data, writer, evaluator, stop_signal):
    t, last = run.config.train, {}
    train_step, bshard = build_train_step(run, first)
    bar, history, tick = metrics_lib.progress_bar(start, t.steps), [], time.perf_counter()
    batch = first
    for step in range(start + 1, t.steps + 1):
        state, m = train_step(state, mesh_lib.put_batch(batch, bshard))
        history.append(m)
        stop = stop_signal.at(step)
        save = stop or _every(step, t.checkpoint_every, t.steps)
        if save or _every(step, t.log_every, t.steps) or _every(step, t.eval_every, t.steps):
            _check_finite(run, history, step)
            last = _log(history, step, tick, run.task, t.batch_size, writer, bar)
            history, tick = [], time.perf_counter()
        if t.eval_every and _every(step, t.eval_every, t.steps) and not stop:
            evals = evaluator(state, step)
            writer.write(step, evals)
            last.update(evals)
            bar.write(f"step {step}: " + _fmt(evals))
        if save:
            _save(run, step, state, data)
            writer.flush()  # on an object store: metrics as durable as the checkpoint
        if stop:
            who = stop_signal.requested or "SIGTERM (on one of the processes)"
            bar.write(f"{who} received: saved checkpoint at step {step}, exiting.")
            break
        if step < t.steps:
            batch = next(data)
    bar.close()
    return state, last


def _last_finite_checkpoint(run: Run) -> str:
    run.checkpointer.wait()
    saved = run.checkpointer.steps()
    if not saved:
        return "no checkpoint was saved yet, so a rerun starts from step 0"
    path = run.checkpointer.directory / str(saved[-1])
    return f"the last finite checkpoint is step {saved[-1]} ({path}); a rerun resumes there"


def _check_finite(run: Run, history, step: int) -> None:
    """Stops at the first non-finite step; its update was not applied and nothing is saved."""
    bad = metrics_lib.first_nonfinite(history, step - len(history) + 1)
    if bad is None:
        return
    m = jax.device_get(history[bad - (step - len(history) + 1)])
    raise NonFiniteLossError(
        f"step {bad} was non-finite (loss={float(m['loss']):.4g}, "
        f"grad_norm={float(m['grad_norm']):.4g}); its update was not applied and nothing after "
        f"it was saved: {_last_finite_checkpoint(run)}. Lower config.train.learning_rate (or "
        "check the data) and rerun."
    )


def _save(run: Run, step: int, state, data) -> None:
    """Saves a checkpoint; a state the optimizer overflowed (finite loss and gradients, but a
    step so large that a parameter became Inf: ``step_lib.update_is_finite``) is not saved."""
    try:
        run.checkpointer.save(step, state, data)
    except checkpoint_lib.NonFiniteStateError as e:
        raise NonFiniteLossError(
            f"{e}: an update at or before step {step} overflowed although its loss and gradients "
            f"were finite; nothing was saved: {_last_finite_checkpoint(run)}. Lower "
            "config.train.learning_rate and rerun."
        ) from e


def _log(history, step, tick, task, batch_size, writer, bar) -> dict[str, float]:
    """Writes the averaged metrics and throughput."""
    m = metrics_lib.mean_metrics(history)
    m.pop("finite", None)
    m.update(metrics_lib.throughput(task, len(history), batch_size, time.perf_counter() - tick))
    writer.write(step, m)
    bar.update(step - bar.n)
    bar.set_postfix(metrics_lib.progress_postfix(task, m))
    return m


def _fmt(metrics) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


def _write_config(config, wd) -> None:
    """Saves ``config.json`` when it changed (atomically: a kill never leaves it cut short)."""
    file, text = wd / "config.json", config.to_json_best_effort(indent=2)
    if jax.process_index() == 0 and not (file.exists() and file.read_bytes() == text.encode()):
        paths.write_text(file, text)


INIT_HF = "init_hf"  # a run's copy of its config.init.hf directory, the weights left out


def _keep_init_hf(config, wd) -> None:
    """Copies what describes ``config.init.hf``'s model (config.json, the tokenizer's files; not
    the weights) to ``DIR/init_hf``: eval, sample and export build the model from it, also after
    the HF directory moved."""
    src = (config.get("init") or {}).get("hf", "")
    if not src or jax.process_index() != 0:
        return
    from jaxmodels.convert.read import description_files

    for name, data in description_files(src, key="config.init.hf").items():
        dst = wd / INIT_HF / name
        with paths.naming_write_errors(dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)


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


def _restore_for_inference(config, workdir: str, allow_config_change: bool):
    """Opens ``workdir`` read-only: nothing is created, moved or deleted, except that a workdir
    without any checkpoint, when the config starts from elsewhere (``config.init.hf`` or
    ``init.workdir``), gives that start's parameters at step 0 (an imported checkpoint
    evaluated with no training run; the workdir is created for the metrics or samples)."""
    init = config.get("init") or {}
    key = next((k for k in ("hf", "workdir") if init.get(k)), None)
    wd = paths.check_workdir(workdir, must_exist=key is None)
    check_saved_config(config, wd, allow=allow_config_change)
    if key and not _has_checkpoints(wd):
        run = dataclasses.replace(build(config, None), workdir=wd)
        if jax.process_index() == 0:
            wd.mkdir(parents=True, exist_ok=True)
            print(f"no checkpoint in {wd}: config.init.{key}={init[key]!r} (step 0)", flush=True)
        return run, _initial_state(run), 0
    if init.get("hf") and (wd / INIT_HF / "config.json").exists():
        config = copy.deepcopy(config)  # the run's own copy of its HF model's description
        config.init.hf = os.fspath(wd / INIT_HF)
    run = build(config, wd, read_only=True)
    state, step = run.checkpointer.restore(run.abstract_state)
    if state is None:
        raise FileNotFoundError(
            f"no readable checkpoint under {run.checkpointer.directory}; train first with "
            f"`jaxmodels train --config ... --workdir {workdir}`"
        )
    return run, state, step


def _has_checkpoints(wd) -> bool:
    """Whether ``wd/checkpoints`` holds a step folder (finished or not, readable or not)."""
    folder = wd / "checkpoints"
    return folder.is_dir() and any(p.name.split(".")[0].isdigit() for p in folder.iterdir())


def _initial_state(run: Run):
    """The parameters a fresh run starts from (``init.hf``'s or ``init.workdir``'s), alone: no
    optimizer state, EMA or model state is made, so evaluating them costs one model in memory."""
    start = _start_params(run)
    sharding = run.state_sharding.replace(
        opt_state=optax.EmptyState(), ema_params=None, model_state=None
    )
    with jax.set_mesh(run.mesh):
        return state_lib.create_state(
            run.task.init, optax.identity(), _init_rng(run.config), sharding, use_ema=False,
            start=start,
        )  # fmt: skip


def evaluate(config, workdir: str, *, allow_config_change: bool = False) -> dict[str, float]:
    """Evaluates the newest checkpoint in ``workdir`` and appends the result to metrics.jsonl.

    A workdir with no checkpoint (or none yet) evaluates the parameters ``config.init.hf`` or
    ``init.workdir`` starts from, as step 0: an imported checkpoint with no training run.
    """
    run, state, step = _restore_for_inference(config, workdir, allow_config_change)
    out = Evaluator(run)(state, step)
    writer = metrics_lib.MetricsWriter(run.workdir)
    writer.write(step, out)
    writer.close()
    print(f"step {step}: " + _fmt(out))
    return out


def _print_samples(run: Run, state) -> str:
    rng = jax.random.fold_in(jax.random.key(run.config.seed), int(state.step))
    with _local_dir(run.workdir) as out, jax.set_mesh(run.mesh):
        summary = run.task.sample(inference_params(state), rng, out)
        summary = summary.replace(out, os.fspath(run.workdir))
    if jax.process_index() == 0:
        print(summary, flush=True)
    return summary


@contextlib.contextmanager
def _local_dir(wd):
    """A local folder for a family's sample files: ``wd`` itself, or for an object store a
    temporary folder whose files are copied to ``wd`` afterwards (families write local files)."""
    if not paths.is_uri(wd):
        yield os.fspath(wd)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        yield tmp
        if jax.process_index() == 0:
            for root, _, files in os.walk(tmp):
                for name in files:
                    local = os.path.join(root, name)
                    dst = wd / os.path.relpath(local, tmp)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(pathlib.Path(local).read_bytes())


def sample(config, workdir: str, *, allow_config_change: bool = False) -> str:
    """Samples from the newest checkpoint with the family's ``sample`` function."""
    run, state, _ = _restore_for_inference(config, workdir, allow_config_change)
    if run.task.sample is None:
        raise ValueError(f"family {config.family!r} has no sampler")
    return _print_samples(run, state)


def export(config, workdir: str, out: str, *, allow_config_change: bool = False) -> list[str]:
    """Writes the newest checkpoint of ``workdir`` as an HF ``from_pretrained`` directory
    ``out`` (new or empty) through the family's ``models/<family>/hf.py`` ``export``; the run
    is only read. Returns the names of the files written."""
    from jaxmodels import hf
    from jaxmodels.convert.write import check_out_dir

    check_out_dir(out)
    module = hf.family_hf(config.family)
    if module is None or not hasattr(module, "export"):
        raise ValueError(f"config.family={config.family!r} has no HF export")
    run, state, step = _restore_for_inference(config, workdir, allow_config_change)
    written = module.export(run.config, inference_params(state), out, run.task.tokenizer)
    if jax.process_index() == 0:
        print(f"step {step} of {workdir} -> {out}: {', '.join(written)}", flush=True)
    return written


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A trained run, read for use from Python (:func:`load`)."""

    module: Any  # the family's linen module (Task.model): module.apply({"params": params}, ...)
    params: Any  # the newest checkpoint's parameters (the EMA where the run keeps one)
    tokenizer: Any  # the run's tokenizer, when it has one
    config: Any  # the run's config (its config.json)
    step: int  # the checkpoint's step


def load(workdir: str, config=None) -> Loaded:
    """The module, parameters (EMA when kept) and tokenizer of the run in ``workdir``, read only.

    ``config`` defaults to the run's own ``config.json``.
    """
    from jaxmodels.config import saved_config

    config = saved_config(workdir) if config is None else config
    run, state, step = _restore_for_inference(config, workdir, allow_config_change=False)
    return Loaded(run.task.model, inference_params(state), run.task.tokenizer, run.config, step)
