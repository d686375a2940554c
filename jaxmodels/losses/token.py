"""Next-token negative log-likelihood and bits per byte (the LM loss and its evaluators)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

BYTES = 256  # byte-tokenizer ids below this are UTF-8 bytes (jaxmodels.data.tokenizers)


@jax.custom_vjp
def token_nll_top1(logits_BxLxV: jax.Array, targets_BxL: jax.Array):
    """``-log softmax(logits)[target]`` per position in float32 (logits of any dtype), and
    whether the target's logit is the largest (top-1; a tie counts as a hit).

    ``nll = lse - z_target`` with ``lse = m + log sum_v exp(z_v - m)``, ``m = max_v z_v``: the
    terms of ``jax.nn.log_softmax``, each taken in float32 from the logits as they come (the
    conversion fuses into the reductions, so bfloat16 logits get no float32 copy). The top-1
    test reuses ``m``, so the accuracy costs no ``argmax``. The gradient
    ``(softmax(z) - onehot(target)) * dnll`` is recomputed from the logits and ``lse`` in one
    elementwise pass and rounded once to the logits' dtype: nothing of size B x L x V is kept
    between the forward and backward passes but the logits themselves.
    """
    return _nll_top1_forward(logits_BxLxV, targets_BxL)[0]


def _nll_top1_forward(logits_BxLxV, targets_BxL):
    z_BxLxV = logits_BxLxV.astype(jnp.float32)
    m_BxL = jnp.max(z_BxLxV, axis=-1)
    lse_BxL = m_BxL + jnp.log(jnp.sum(jnp.exp(z_BxLxV - m_BxL[..., None]), axis=-1))
    z_target_BxL = jnp.take_along_axis(z_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    out = (lse_BxL - z_target_BxL, z_target_BxL >= m_BxL)
    return out, (logits_BxLxV, targets_BxL, lse_BxL)


def _nll_top1_backward(residuals, cotangents):
    logits_BxLxV, targets_BxL, lse_BxL = residuals
    dnll_BxL = cotangents[0]  # the top-1 flag is boolean: no gradient
    p_BxLxV = jnp.exp(logits_BxLxV.astype(jnp.float32) - lse_BxL[..., None])
    vocab_V = jnp.arange(logits_BxLxV.shape[-1], dtype=targets_BxL.dtype)
    onehot_BxLxV = vocab_V == targets_BxL[..., None]
    dz_BxLxV = (p_BxLxV - onehot_BxLxV) * dnll_BxL[..., None]
    return dz_BxLxV.astype(logits_BxLxV.dtype), None


token_nll_top1.defvjp(_nll_top1_forward, _nll_top1_backward)


def token_nll(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> jax.Array:
    """``-log softmax(logits)[target]`` per position, in float32."""
    return token_nll_top1(logits_BxLxV, targets_BxL)[0]


def byte_weights(targets_BxL: jax.Array, weights_BxL: jax.Array) -> jax.Array:
    """The weights of the targets that are bytes (BOS/EOS/PAD excluded)."""
    return weights_BxL.astype(jnp.float32) * (targets_BxL < BYTES)


def bits_per_byte(nll_BxL: jax.Array, targets_BxL: jax.Array, weights_BxL: jax.Array) -> jax.Array:
    """Mean NLL over byte targets in bits: ``sum w nll / (sum w * ln 2)`` (byte tokenizer)."""
    w = byte_weights(targets_BxL, weights_BxL)
    return (nll_BxL * w).sum() / jnp.maximum(w.sum(), 1.0) / math.log(2)
