"""The LM family's objective: next-token cross-entropy over packed rows (padding masked)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.losses.token import bits_per_byte, token_nll_top1


def lm_metrics(logits_BxLxV, batch, *, is_bytes: bool) -> tuple[jax.Array, dict]:
    """Weighted next-token cross-entropy, accuracy (the target's logit is the largest) and
    (byte tokenizer) bits per byte; the logits may be bfloat16, the loss is float32."""
    targets, w = batch["targets"], batch["weights"].astype(jnp.float32)
    nll_BxL, top1_BxL = token_nll_top1(logits_BxLxV, targets)
    denom = jnp.maximum(w.sum(), 1.0)
    loss = (nll_BxL * w).sum() / denom
    metrics = {"loss": loss, "accuracy": (top1_BxL * w).sum() / denom}
    if is_bytes:
        metrics["bits_per_byte"] = bits_per_byte(nll_BxL, targets, w)
    return loss, metrics
