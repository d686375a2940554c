"""The online-action family's losses: TRN's encoder/decoder cross-entropy, IDN's three terms.

Targets are per-frame soft or one-hot vectors over C classes. The background class is trained
like any other; frames whose target is the ``ignore_index`` ("ambiguous") class are left out, and
that class's column is removed from the softmax (TRN.pytorch ``MultiCrossEntropyLoss``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def multi_cross_entropy(
    logits_BxLxC, targets_BxLxC, *, ignore_index: int | None = None, mask_BxL=None
):
    """Mean over kept frames of -sum_c y_c log softmax(s)_c, the ignored class removed.

    Frames are kept where ``mask_BxL`` (if given) is true and the target is not ``ignore_index``.
    Returns (loss, number of kept frames).
    """
    logits = logits_BxLxC.astype(jnp.float32)
    targets = targets_BxLxC.astype(jnp.float32)
    keep = jnp.ones(logits.shape[:-1], bool) if mask_BxL is None else mask_BxL.astype(bool)
    if ignore_index is not None:
        column = jnp.arange(logits.shape[-1]) == ignore_index
        keep = keep & (targets[..., ignore_index] != 1)
        logits = jnp.where(column, -jnp.inf, logits)
        targets = jnp.where(column, 0.0, targets)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    per_frame = -jnp.sum(jnp.where(targets > 0, targets * log_p, 0.0), axis=-1)
    count = jnp.sum(keep)
    return jnp.sum(jnp.where(keep, per_frame, 0.0)) / jnp.maximum(count, 1), count


def future_targets(targets_BxTxC, length: int, dec_steps: int, offset: int = 0):
    """Decoder targets y[t + offset + j] for j < dec_steps, from targets extended past the window.

    ``offset`` 0 is TRN.pytorch's (decoder step j trained and evaluated on frame t + j:
    ``get_dec_target`` in ``lib/datasets/thumos_data_layer.py``, ``tools/trn_thumos/eval.py``);
    1 reads the paper's "next dec_steps frames" as t + 1 ... t + dec_steps.

    ``targets`` holds ``length + offset + dec_steps - 1`` frames (the data pads the video end by
    repeating its last frame, as the TRN evaluation does). Returns B x length x dec_steps x C.
    """
    need = length + offset + dec_steps - 1
    if targets_BxTxC.shape[1] < need:
        raise ValueError(
            f"targets have {targets_BxTxC.shape[1]} frames; the decoder needs {need} "
            f"(enc_steps {length} + future_offset {offset} + dec_steps {dec_steps} - 1)"
        )
    steps = [targets_BxTxC[:, offset + j : offset + j + length] for j in range(dec_steps)]
    return jnp.stack(steps, axis=2)


def trn_loss(outputs, targets_BxTxC, *, ignore_index=None, future_offset=0):
    """L = CE(encoder scores, y_t) + CE(decoder scores, y_{t+offset+j}) (Xu et al. 2019, Eq. 7)."""
    scores, dec_scores = outputs["scores"], outputs["future_scores"]
    B, L, K, C = dec_scores.shape
    enc_loss, _ = multi_cross_entropy(scores, targets_BxTxC[:, :L], ignore_index=ignore_index)
    dec_targets = future_targets(targets_BxTxC, L, K, future_offset)
    dec_loss, _ = multi_cross_entropy(
        dec_scores.reshape(B, L * K, C), dec_targets.reshape(B, L * K, C), ignore_index=ignore_index
    )
    return enc_loss + dec_loss, dict(enc_loss=enc_loss, dec_loss=dec_loss)


def contrastive_loss(embeddings_BxLxE, labels_BxL, valid_BxL, *, window: int, margin: float):
    """IDN early-embedding contrastive loss (Eun et al. 2020, Eq. 6; Hadsell et al. 2006).

    For each output frame t and each past frame s in its window (t - T <= s < t):
    d^2(x~_s, x~_t) when both have the same class, max(0, m - d)^2 otherwise; summed over the
    window and averaged over output frames. All windows at once: a gather of the T past frames.
    """
    B, L, _ = embeddings_BxLxE.shape
    labels_BxL, valid_BxL = jnp.asarray(labels_BxL), jnp.asarray(valid_BxL)
    past_LxS = jnp.arange(L)[:, None] - jnp.arange(1, window)[None, :]
    exists = past_LxS >= 0
    past = jnp.clip(past_LxS, 0)
    e = embeddings_BxLxE.astype(jnp.float32)
    d2_BxLxS = jnp.sum(jnp.square(e[:, past] - e[:, :, None]), axis=-1)
    same = labels_BxL[:, past] == labels_BxL[:, :, None]
    d = jnp.sqrt(d2_BxLxS + 1e-12)
    pair = jnp.where(same, d2_BxLxS, jnp.square(jax.nn.relu(margin - d)))
    pair_valid = exists[None] & valid_BxL[:, past] & valid_BxL[:, :, None]
    per_frame = jnp.sum(jnp.where(pair_valid, pair, 0.0), axis=-1)
    return jnp.sum(jnp.where(valid_BxL, per_frame, 0.0)) / jnp.maximum(jnp.sum(valid_BxL), 1)


def idn_loss(outputs, targets_BxLxC, *, ignore_index=None, window=16, margin=1.0, weight=1.0):
    """L = CE(p_0) + CE(p~ of the early embedding) + weight * L_contrastive (Eun et al. 2020)."""
    L = outputs["scores"].shape[1]
    targets = jnp.asarray(targets_BxLxC)[:, :L]
    ce, _ = multi_cross_entropy(outputs["scores"], targets, ignore_index=ignore_index)
    embed_ce, _ = multi_cross_entropy(outputs["embed_scores"], targets, ignore_index=ignore_index)
    valid = jnp.ones(targets.shape[:2], bool)
    if ignore_index is not None:
        valid = targets[..., ignore_index] != 1
    labels = jnp.argmax(targets, axis=-1)
    contrast = contrastive_loss(outputs["embeddings"], labels, valid, window=window, margin=margin)
    loss = ce + embed_ce + weight * contrast
    return loss, dict(frame_loss=ce, embed_loss=embed_ce, contrastive_loss=contrast)


def frame_loss(outputs, targets_BxLxC, *, ignore_index=None):
    """Per-frame cross-entropy of the current-frame scores (GRU and MLP baselines)."""
    L = outputs["scores"].shape[1]
    loss, _ = multi_cross_entropy(
        outputs["scores"], targets_BxLxC[:, :L], ignore_index=ignore_index
    )
    return loss, dict(frame_loss=loss)
