"""Optimizers and learning-rate schedules built from ``config.train``."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax

from jaxmodels.config import parse_lr_multipliers


def learning_rate_schedule(t) -> optax.Schedule:
    """Linear warm-up to ``learning_rate``, then cosine/linear decay to ``min_lr_ratio`` or flat."""
    peak, warm, steps = t.learning_rate, t.warmup_steps, t.steps
    end = peak * t.min_lr_ratio
    decay_steps = max(steps - warm, 1)
    if t.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=t.min_lr_ratio)
    elif t.schedule == "linear":
        decay = optax.linear_schedule(peak, end, decay_steps)
    elif t.schedule == "constant":
        decay = optax.constant_schedule(peak)
    else:
        raise ValueError(f"config.train.schedule={t.schedule!r}: use cosine, linear or constant")
    if warm == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), decay], [warm])


def _decay_mask(params):
    """Weight decay on matrices and kernels only, never on biases (per-head and fused
    projections' biases are 2-D or 3-D), norms or scalars."""
    return jax.tree_util.tree_map_with_path(
        lambda path, p: p.ndim >= 2 and getattr(path[-1], "key", None) != "bias", params
    )


def make_optimizer(t) -> optax.GradientTransformation:
    """Returns the clipped optimizer named by ``config.train.optimizer``."""
    lr = learning_rate_schedule(t)
    if t.optimizer == "adamw":
        opt = optax.adamw(lr, t.b1, t.b2, t.eps, weight_decay=t.weight_decay, mask=_decay_mask)
    elif t.optimizer == "adam":  # weight_decay is an L2 term on every param, as torch.optim.Adam
        opt = optax.chain(
            optax.add_decayed_weights(t.weight_decay), optax.adam(lr, t.b1, t.b2, t.eps)
        )
    elif t.optimizer == "lion":
        opt = optax.lion(lr, t.b1, t.b2, weight_decay=t.weight_decay, mask=_decay_mask)
    elif t.optimizer == "sgd":
        opt = optax.sgd(lr, momentum=t.b1 or None)
    else:
        raise ValueError(f"config.train.optimizer={t.optimizer!r}: use adamw, adam, lion or sgd")
    multipliers = parse_lr_multipliers(t.get("lr_multipliers", ""))
    if multipliers:
        opt = optax.chain(opt, scale_by_name(multipliers))
    if t.grad_clip:
        opt = optax.chain(clip_by_global_norm(t.grad_clip), opt)
    return with_state_dtype(opt, t.get("opt_state_dtype", "float32"))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformationExtraArgs:
    """``optax.clip_by_global_norm`` (Pascanu et al. 2013: ``g * max_norm / |g|`` when the
    global norm ``|g| >= max_norm``), bit for bit, except that it takes ``|g|`` from the
    ``grad_norm`` extra argument when its caller has it: the train step computes the norm for
    its finite check and skips the update in a ``lax.cond``, across which XLA would not reuse it,
    so the gradients would be read once more."""

    def update(updates, state, params=None, *, grad_norm=None, **extra_args):
        del params, extra_args
        norm = optax.tree.norm(updates) if grad_norm is None else grad_norm
        keep = norm < max_norm

        def clip(g):
            return jax.lax.select(keep, g, (g / norm.astype(g.dtype)) * max_norm)

        return jax.tree.map(clip, updates), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def scale_by_name(multipliers: dict[str, float]) -> optax.GradientTransformation:
    """Multiplies the final update of each parameter whose name matches a key of
    ``multipliers`` (see :func:`parse_lr_multipliers`): a per-parameter learning-rate factor,
    applied after the optimizer so that it scales the step (and decoupled weight decay) alone."""
    patterns = [(re.compile(name), m) for name, m in multipliers.items()]

    def factor(path) -> float:
        full = _path_name(path)
        last = full.rsplit("/", 1)[-1]
        for pattern, m in patterns:
            if pattern.fullmatch(full) or pattern.fullmatch(last):
                return m
        return 1.0

    def update(updates, state, params=None):
        del params
        scaled = jax.tree_util.tree_map_with_path(lambda p, u: u * factor(p), updates)
        return scaled, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def cast_floats(tree, dtype):
    """Casts the floating leaves of ``tree`` to ``dtype`` (integer leaves stay as they are)."""

    def cast(x):
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def with_state_dtype(tx: optax.GradientTransformation, dtype) -> optax.GradientTransformation:
    """Stores ``tx``'s floating state (Adam's m and v, momenta) in ``dtype``.

    Each update computes in the promoted dtype of state and gradients and rounds the new state
    to ``dtype`` for storage; integer state (step counts) is untouched. With ``float32`` and
    float32 parameters every cast is the identity, so the default is bit-identical to ``tx``;
    with bfloat16 parameters it keeps float32 moments (optax would store them in bfloat16).
    """

    tx = optax.with_extra_args_support(tx)

    def init(params):
        return cast_floats(tx.init(params), dtype)

    def update(updates, state, params=None, **extra_args):
        updates, state = tx.update(updates, state, params, **extra_args)
        return updates, cast_floats(state, dtype)

    return optax.GradientTransformationExtraArgs(init, update)
