"""Family-agnostic step builders: one jitted, sharded, donated train step and an eval step.

A family supplies ``loss_fn(params, batch, rng) -> (loss, metrics)`` (or, with non-gradient
model state, ``loss_fn(params, batch, rng, state) -> (loss, (metrics, state))``); everything
else here is shared: the per-step rng (``fold_in(key(seed), step)``, so a resumed run draws the same
randomness), gradient accumulation over micro-batches with ``lax.scan``, clipping and the
optimizer update (``optax``), the parameter EMA, and metric aggregation. A step whose loss,
gradients or model state hold a NaN/Inf returns the old state unchanged and ``finite=0``
(:func:`update_is_finite` says why the new parameters and optimizer moments need no check).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxmodels.parallel import mesh as mesh_lib
from jaxmodels.train import debug
from jaxmodels.train.state import TrainState
from jaxmodels.train.task import LossFn, Task


def in_mesh_context(jitted, mesh, rules) -> Callable:
    """Runs a jitted function (its tracing too) with ``mesh`` set and the logical rules active.

    The result also has ``.lower(*abstract_args)`` for ahead-of-time compilation.
    """

    def wrapped(*args):
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            return jitted(*args)

    def lower(*args):
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            return jitted.lower(*args)

    wrapped.lower = lower
    return wrapped


def _split_micro(x: jax.Array, n: int) -> jax.Array:
    """(B, ...) -> (n, B/n, ...) taking rows ``a::n`` for micro-batch ``a``, so each micro-batch
    keeps an equal share of every device's rows."""
    if x.shape[0] % n:
        raise ValueError(f"batch of {x.shape[0]} rows does not split into {n} micro-batches")
    return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)


def accumulate_gradients(
    loss_fn: LossFn, grad_accum: int, batch_shardings, *, stateful: bool = False
) -> Callable:
    """Returns ``(params, batch, rng, model_state) -> ((grads, metrics), model_state)``, the
    gradients and metrics averaged over micro-batches. A ``stateful`` loss takes and returns the
    model state, threaded through the micro-batches in order; otherwise it passes through."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def single(params, batch, rng, model_state):
        if stateful:
            (loss, (metrics, model_state)), grads = grad_fn(params, batch, rng, model_state)
        else:
            (loss, metrics), grads = grad_fn(params, batch, rng)
        return (grads, {**metrics, "loss": loss}), model_state

    if grad_accum == 1:
        return single

    def accumulated(params, batch, rng, model_state):
        micro = {k: _split_micro(v, grad_accum) for k, v in batch.items()}

        def body(carry, inputs):
            acc, model_state = carry
            mb, a = inputs
            mb = jax.lax.with_sharding_constraint(mb, batch_shardings)
            out, model_state = single(params, mb, jax.random.fold_in(rng, a), model_state)
            return (jax.tree.map(jnp.add, acc, out), model_state), None

        first = jax.tree.map(lambda v: v[0], micro)
        shapes = jax.eval_shape(single, params, first, rng, model_state)[0]
        zeros = jax.tree.map(jnp.zeros_like, shapes)
        (total, model_state), _ = jax.lax.scan(
            body, (zeros, model_state), (micro, jnp.arange(grad_accum))
        )
        return jax.tree.map(lambda t: t / grad_accum, total), model_state

    return accumulated


def all_finite(tree) -> jax.Array:
    """True when every floating-point leaf of ``tree`` is finite (one fused reduction)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves] or [jnp.array(True)]))


def update_is_finite(loss: jax.Array, grad_norm: jax.Array, model_state) -> jax.Array:
    """Whether a step may be applied, decided before the update from scalars the step has anyway.

    A NaN/Inf anywhere in the gradients makes their global norm non-finite (so does a norm
    above float32's 3.4e38, a diverged step too), and a finite norm bounds every ``g**2`` (a sum
    of non-negative terms is at least each term), so the optimizers cannot overflow on such
    gradients: Adam's moments are convex combinations of finite values and its step
    ``m / (sqrt(v) + eps)`` is at most ``|m| / eps`` (``eps > 0``, checked by
    ``config.validate``; with ``eps = 0`` a gradient that stays 0 gives 0 / 0); Lion's is
    ``lr * sign``; SGD's is ``lr`` times a finite momentum; weight decay and clipping scale by
    finite factors, and the EMA is a convex combination. So the new parameters, moments and EMA
    are not tested: the old guard tested each of them after the update and then selected old or
    new, two more passes over the whole state. What the argument leaves out (a learning rate so
    large that ``p - lr * g`` overflows) makes the next step's loss non-finite, and a checkpoint
    of such a state is refused (``Checkpointer.save``). The model state is not a function of
    the gradients, so it is tested itself (None, or small, for every family but BLIP, whose
    momentum encoders it holds).
    """
    return jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(model_state)


def build_train_step(
    task: Task,
    tx: optax.GradientTransformation,
    *,
    mesh,
    rules,
    state_sharding,
    batch_sharding,
    seed: int,
    grad_accum: int = 1,
    ema_decay: float = 0.0,
    schedule: optax.Schedule | None = None,
    debug_checks: bool = False,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Returns ``step(state, batch) -> (state, metrics)``: jitted, sharded, state donated.

    ``debug_checks`` adds the checks of ``jaxmodels.train.debug`` (``config.train.debug_checks``).
    """
    base_key = jax.random.key(seed)
    tx_update = optax.with_extra_args_support(tx).update  # grad_norm= for optim's clipping
    stateful = task.init_model_state is not None
    grads_and_metrics = accumulate_gradients(
        task.loss_fn, grad_accum, batch_sharding, stateful=stateful
    )
    if debug_checks:
        grads_and_metrics = debug.checked_gradients(grads_and_metrics)

    def step(state: TrainState, batch):
        rng = jax.random.fold_in(base_key, state.step)
        (grads, metrics), model_state = grads_and_metrics(
            state.params, batch, rng, state.model_state
        )
        metrics["grad_norm"] = optax.tree.norm(grads)
        ok = update_is_finite(metrics["loss"], metrics["grad_norm"], model_state)
        if schedule is not None:
            metrics["lr"] = schedule(state.step)
        metrics["finite"] = ok.astype(jnp.float32)

        def apply(state):
            updates, opt_state = tx_update(
                grads, state.opt_state, state.params, grad_norm=metrics["grad_norm"]
            )
            params = optax.apply_updates(state.params, updates)
            ema = state.ema_params
            if ema is not None:
                ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, ema, params)
            new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
            return new.replace(ema_params=ema, model_state=model_state)

        return jax.lax.cond(ok, apply, lambda old: old, state), metrics  # skip a bad update

    jit = dict(
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, mesh_lib.replicated(mesh)),
        donate_argnums=(0,),
    )
    if debug_checks:
        jitted = debug.jit_checked(step, error_sharding=mesh_lib.replicated(mesh), **jit)
    else:
        jitted = jax.jit(step, **jit)
    return in_mesh_context(jitted, mesh, rules)


def eval_metrics_fn(task: Task):
    """The family's ``eval_fn``, or its ``loss_fn`` metrics plus ``loss``."""
    if task.eval_fn is not None:
        return task.eval_fn

    def fn(params, batch, rng):
        loss, metrics = task.loss_fn(params, batch, rng)
        return {**metrics, "loss": loss}

    return fn


def build_eval_step(task: Task, *, mesh, rules, params_sharding, batch_sharding, seed: int):
    """Returns ``eval_step(params, batch, index) -> metrics``, jitted and sharded."""
    fn = eval_metrics_fn(task)
    key = jax.random.fold_in(jax.random.key(seed), 0x5EED)

    def step(params, batch, index):
        return fn(params, batch, jax.random.fold_in(key, index))

    jitted = jax.jit(
        step,
        in_shardings=(params_sharding, batch_sharding, None),
        out_shardings=mesh_lib.replicated(mesh),
    )
    return in_mesh_context(jitted, mesh, rules)
