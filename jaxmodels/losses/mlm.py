"""BERT's masked-language-model objective (Devlin et al. 2019, sec. 3.1 "Task #1").

Choose ``mask_prob`` (15%) of the maskable positions; of those, replace 80% by ``[MASK]``, 10% by a
random token and keep 10%; predict the original token at every chosen position.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def bert_mask(
    rng: jax.Array,
    tokens_BxL: jax.Array,
    *,
    mask_id: int,
    random_vocab_size: int,
    maskable_BxL: jax.Array | None = None,
    mask_prob: float = 0.15,
    p_mask: float = 0.8,
    p_random: float = 0.1,
) -> tuple[jax.Array, jax.Array]:
    """Returns ``(inputs_BxL, chosen_BxL)``: corrupted inputs and the positions to predict.

    Random replacements are drawn uniformly from ``[0, random_vocab_size)`` (the ordinary
    tokens, no specials). ``maskable_BxL`` excludes padding/special positions.
    """
    k_choose, k_kind, k_tok = jax.random.split(rng, 3)
    chosen = jax.random.uniform(k_choose, tokens_BxL.shape) < mask_prob
    if maskable_BxL is not None:
        chosen = chosen & maskable_BxL.astype(bool)
    u = jax.random.uniform(k_kind, tokens_BxL.shape)
    random_tok = jax.random.randint(k_tok, tokens_BxL.shape, 0, random_vocab_size)
    replaced = jnp.where(u < p_mask, mask_id, jnp.where(u < p_mask + p_random, random_tok, -1))
    inputs = jnp.where(chosen & (replaced >= 0), replaced, tokens_BxL)
    return inputs.astype(tokens_BxL.dtype), chosen


def mlm_loss(
    logits_BxLxV: jax.Array, targets_BxL: jax.Array, chosen_BxL: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross entropy (nats) and accuracy over the chosen positions."""
    ce = optax.softmax_cross_entropy_with_integer_labels(
        logits_BxLxV.astype(jnp.float32), targets_BxL
    )
    w = chosen_BxL.astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1.0)
    loss = (ce * w).sum() / n
    acc = ((logits_BxLxV.argmax(-1) == targets_BxL) * w).sum() / n
    return loss, {"mlm_loss": loss, "mlm_accuracy": acc, "masked_fraction": w.mean()}
