"""The LM family's objective: next-token cross-entropy over packed rows (padding masked)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.losses.token import bits_per_byte, token_nll


def lm_metrics(logits_BxLxV, batch, *, is_bytes: bool) -> tuple[jax.Array, dict]:
    """Weighted next-token cross-entropy, accuracy and (byte tokenizer) bits per byte."""
    targets, w = batch["targets"], batch["weights"].astype(jnp.float32)
    nll_BxL = token_nll(logits_BxLxV, targets)
    denom = jnp.maximum(w.sum(), 1.0)
    loss = (nll_BxL * w).sum() / denom
    correct = (jnp.argmax(logits_BxLxV, -1) == targets).astype(jnp.float32)
    metrics = {"loss": loss, "accuracy": (correct * w).sum() / denom}
    if is_bytes:
        metrics["bits_per_byte"] = bits_per_byte(nll_BxL, targets, w)
    return loss, metrics
