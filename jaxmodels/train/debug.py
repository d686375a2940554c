"""The train step's debug checks (``config.train.debug_checks``), off by default.

On, every step checks on the host, with chex, that the batch has the first batch's keys,
shapes and dtypes (``jax.jit`` would otherwise quietly compile a second program for it), and,
inside the jitted step with ``jax.experimental.checkify`` (what ``chex.chexify`` is built on),
that the batch, the loss and metrics and the gradients hold no NaN or Inf. A failing step
raises :class:`DebugCheckError` naming the step and the first leaf that failed, instead of
returning the unchanged state with ``finite=0``. Each step then waits for its check, so a run is
slower. Off, nothing here is traced: the step compiles to the same program as without it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from jaxmodels.train.integrity import leaf_name

KEY = "config.train.debug_checks"


class DebugCheckError(ValueError):
    """A batch, loss, metric or gradient failed a check of ``config.train.debug_checks``."""


def check_finite(tree, what: str) -> None:
    """One ``checkify.check`` per floating-point leaf of ``tree``, its message naming the leaf."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    for path, x in flat:
        if jnp.issubdtype(x.dtype, jnp.inexact):
            name = f"{what} {leaf_name(path)}".replace("{", "{{").replace("}", "}}")
            checkify.check(jnp.isfinite(x).all(), f"{name} holds NaN or Inf")


def checked_gradients(grads_and_metrics: Callable) -> Callable:
    """``grads_and_metrics`` (``step.accumulate_gradients``) with the batch checked finite
    before it, and the loss, metrics and gradients after it."""

    def fn(params, batch, rng, model_state):
        check_finite(batch, "batch")
        (grads, metrics), model_state = grads_and_metrics(params, batch, rng, model_state)
        check_finite(metrics, "metric")
        check_finite(grads, "the gradient of")
        return (grads, metrics), model_state

    return fn


def jit_checked(step: Callable, *, error_sharding, out_shardings, **jit_options) -> Callable:
    """``jax.jit`` of ``step(state, batch) -> (state, metrics)`` with its checks functionalised:
    the returned ``fn(state, batch)`` compares the batch with the first one it was given and
    raises :class:`DebugCheckError` when a check inside the step failed. ``fn.lower`` lowers
    the checked program (for ahead-of-time compilation)."""
    jitted = jax.jit(
        checkify.checkify(step, errors=checkify.user_checks),
        out_shardings=(error_sharding, out_shardings),
        **jit_options,
    )
    import chex  # only with the checks on: the trainer imports without it (the GPU suite's image)

    first = []

    def fn(state, batch):
        if not first:
            first.append(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch))
        number = int(state.step) + 1  # the step this call computes, as the loop counts
        try:
            chex.assert_trees_all_equal_shapes_and_dtypes(first[0], batch)
        except AssertionError as e:
            raise DebugCheckError(
                f"{KEY}: step {number}: the batch differs from the first batch (tree 0) in its "
                f"keys, shapes or dtypes: {e}"
            ) from None
        err, out = jitted(state, batch)
        message = err.get()
        if message is not None:
            message = message.removesuffix(" (`check` failed)")
            raise DebugCheckError(f"{KEY}: step {number}: {message}")
        return out

    fn.lower = lambda *args: jitted.lower(*args)
    return fn
