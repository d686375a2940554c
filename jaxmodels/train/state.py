"""The train state pytree and its sharded creation from abstract shapes."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxmodels.parallel import mesh as mesh_lib
from jaxmodels.train import optim, warmstart


@flax.struct.dataclass
class TrainState:
    """Everything a step changes. ``ema_params`` is None unless an EMA half-life is set;
    ``model_state`` is None unless the task keeps non-gradient state (``Task.init_model_state``)."""

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any = None
    model_state: Any = None


def ema_decay(halflife_examples: float, batch_size: int) -> float:
    """Per-step decay for an EMA whose half-life is given in examples (EDM, Karras et al. 2022)."""
    return 0.5 ** (batch_size / halflife_examples) if halflife_examples > 0 else 0.0


def _init_fn(init, tx: optax.GradientTransformation, use_ema: bool, init_model_state=None):
    def fn(rng):
        params = init(rng)  # may hold nn.Partitioned boxes; optax keeps the boxes in its state
        ema = jax.tree.map(jnp.copy, params) if use_ema else None
        model_state = init_model_state(params) if init_model_state is not None else None
        return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), ema, model_state)

    return fn


def with_param_dtype(init, t):
    """Wraps ``init`` to store floating parameters in ``config.train.param_dtype``.

    ``float32`` returns ``init`` itself. With bfloat16 the gradients and the update are
    bfloat16 too (``optax.apply_updates`` rounds to the parameter dtype): half the parameter
    memory, at the cost of updates smaller than bfloat16's resolution being lost.
    """
    dtype = jnp.dtype(t.get("param_dtype", "float32"))
    if dtype == jnp.float32:
        return init
    return lambda rng: optim.cast_floats(init(rng), dtype)


def state_shardings(init, tx, rng, mesh, rules, *, use_ema: bool, init_model_state=None):
    """Returns ``(abstract_state, shardings)`` from the logical names on the boxed params."""
    fn = _init_fn(init, tx, use_ema, init_model_state)
    boxed = jax.eval_shape(fn, rng)
    shardings = mesh_lib.logical_sharding(nn.get_partition_spec(boxed), mesh, rules)
    return nn.unbox(boxed), shardings


def create_state(
    init, tx, rng, shardings, *, use_ema: bool, init_model_state=None, start=None
) -> TrainState:
    """Initialises the state directly into its shardings (never whole on one device).

    ``start`` (``{path: array}``, :func:`jaxmodels.train.warmstart.start_params`) replaces
    those parameters of ``init``'s before the EMA, optimizer and model state derive from them.
    """

    def make(r, start):
        fn = _init_fn(lambda k: warmstart.overlay(init(k), start), tx, use_ema, init_model_state)
        return nn.unbox(fn(r))

    return jax.jit(make, out_shardings=shardings)(rng, start or {})


def param_count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
