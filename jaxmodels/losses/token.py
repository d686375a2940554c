"""Next-token negative log-likelihood and bits per byte (the LM loss and its evaluators)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

BYTES = 256  # byte-tokenizer ids below this are UTF-8 bytes (jaxmodels.data.tokenizers)


def token_nll(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> jax.Array:
    """``-log softmax(logits)[target]`` per position, in float32."""
    logp = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, targets_BxL[..., None], axis=-1)[..., 0]


def byte_weights(targets_BxL: jax.Array, weights_BxL: jax.Array) -> jax.Array:
    """The weights of the targets that are bytes (BOS/EOS/PAD excluded)."""
    return weights_BxL.astype(jnp.float32) * (targets_BxL < BYTES)


def bits_per_byte(nll_BxL: jax.Array, targets_BxL: jax.Array, weights_BxL: jax.Array) -> jax.Array:
    """Mean NLL over byte targets in bits: ``sum w nll / (sum w * ln 2)`` (byte tokenizer)."""
    w = byte_weights(targets_BxL, weights_BxL)
    return (nll_BxL * w).sum() / jnp.maximum(w.sum(), 1.0) / math.log(2)
