"""BLIP's image-text matching and captioning objectives (Li et al., ICML 2022, Sec. 3.2).

- :func:`hard_negatives`: for every image a negative text, and for every text a negative image,
  drawn from the softmax of the ITC similarities with the positives masked out (ALBEF Sec. 3.2's
  contrastive-similarity hard-negative mining, which BLIP adopts). The arrays are the *global*
  batch: under ``jax.jit`` with the batch sharded over the mesh, the draw ranges over every
  device's examples (BLIP all-gathers the features for the same effect).
- :func:`itm_loss`: binary cross-entropy (2-way softmax) over the positives and both kinds of
  hard negatives.
- :func:`lm_loss`: the captioning language-modelling loss, next-token cross-entropy with label
  smoothing 0.1 over the target tokens (BLIP Sec. 3.2: "label smoothing of 0.1").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def hard_negatives(
    key: jax.Array,
    sim_i2t_BxB: jax.Array,
    positives_BxB: jax.Array,
    sim_t2i_BxB: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Returns ``(neg_text_B, neg_image_B)`` global indices, never a positive.

    ``sim_i2t_BxB[i, j]`` is the ITC logit (similarity / temperature) of image i and text j;
    ``positives_BxB[i, j]`` marks matching pairs (the diagonal, plus texts equal to image i's
    caption). Each row needs at least one negative. Texts draw their negative images from
    ``sim_t2i_BxB[j, i]`` when given (with momentum distillation BLIP scores online text
    features against momentum image features there), else from ``sim_i2t_BxB.T``.
    """
    k_txt, k_img = jax.random.split(key)
    sim_t2i_BxB = sim_i2t_BxB.T if sim_t2i_BxB is None else sim_t2i_BxB

    def draw(k, sim, positives):  # one draw per row, over the columns that are not positives
        sim = jax.lax.stop_gradient(sim).astype(jnp.float32)
        return jax.random.categorical(k, jnp.where(positives, -jnp.inf, sim), axis=1)

    neg_text_B = draw(k_txt, sim_i2t_BxB, positives_BxB)  # per image, over texts
    neg_image_B = draw(k_img, sim_t2i_BxB, positives_BxB.T)  # per text, over images
    return neg_text_B.astype(jnp.int32), neg_image_B.astype(jnp.int32)


def itm_loss(logits_pos_Bx2: jax.Array, logits_neg_Gx2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """ITM cross-entropy: class 1 (match) for positives, 0 for negatives; also returns accuracy.

    ``G`` (a letter beyond the shape legend) counts the negative pairs: 2B in BLIP.
    """
    logits = jnp.concatenate([logits_pos_Bx2, logits_neg_Gx2]).astype(jnp.float32)
    labels = jnp.concatenate(
        [
            jnp.ones(logits_pos_Bx2.shape[0], jnp.int32),
            jnp.zeros(logits_neg_Gx2.shape[0], jnp.int32),
        ]
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def lm_loss(
    logits_BxLxV: jax.Array,
    targets_BxL: jax.Array,
    weights_BxL: jax.Array,
    label_smoothing: float = 0.1,
) -> jax.Array:
    """Token-mean cross-entropy against ``(1 - eps) onehot + eps / V`` over weighted targets.

    ``logits_BxLxV[:, t]`` predicts ``targets_BxL[:, t]`` (already shifted); weights zero out
    padding and prompt tokens. Matches ``torch.nn.CrossEntropyLoss(label_smoothing=eps)``.
    """
    V = logits_BxLxV.shape[-1]
    onehot = jax.nn.one_hot(targets_BxL, V, dtype=jnp.float32)
    soft = optax.smooth_labels(onehot, label_smoothing)
    ce_BxL = optax.softmax_cross_entropy(logits_BxLxV.astype(jnp.float32), soft)
    w = weights_BxL.astype(jnp.float32)
    return jnp.sum(ce_BxL * w) / jnp.maximum(jnp.sum(w), 1.0)
