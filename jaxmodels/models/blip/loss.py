"""BLIP pre-training objectives (Li et al., ICML 2022, Sec. 3.2): ``L_itc + L_itm + L_lm``.

- ITC: softmax over the batch of ``s(I, T) / tau`` with learnable tau (clamped to
  [0.001, 0.5] as in BLIP's code), both directions, targets spread over duplicate captions; or,
  given a momentum ``bank`` (:mod:`jaxmodels.models.blip.momentum`), momentum distillation
  against the momentum features of the batch and the queues.
- ITM: the image-grounded encoder classifies positives and, for every image and every text,
  one hard negative drawn from the ITC softmax over the global batch (:mod:`jaxmodels.losses.blip`).
- LM: the decoder predicts the caption after the prompt "a picture of " ([DEC] first), label
  smoothing 0.1, prompt tokens not scored (BLIP's captioner).

A captioner (an imported ``BlipForConditionalGeneration``, which has no ITC projections, ITM
head or bidirectional self-attention) trains L_lm alone (:func:`captioning_losses`), as BLIP
fine-tunes its captioner (Sec. 5.2).

Token ids (padding, [ENC], the prompt's length) come from the run's
:class:`~jaxmodels.models.blip.tokens.TokenLayout`.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxmodels.losses import blip as blip_losses
from jaxmodels.losses.contrastive import itc_targets, momentum_itc_loss, soft_target_softmax_loss
from jaxmodels.models.blip import data
from jaxmodels.models.blip.model import BLIP
from jaxmodels.models.blip.tokens import TokenLayout

TEMP_RANGE = (0.001, 0.5)  # BLIP's clamp on the ITC temperature


def pretrain_losses(
    m: BLIP, batch, key, layout: TokenLayout, label_smoothing: float, bank=None, alpha=0.4
):
    """The three objectives of one batch (run as ``model.apply(..., method=pretrain_losses)``);
    ITC against the momentum ``bank`` (:func:`momentum_itc_loss`) when one is given."""
    text, caption = jnp.asarray(batch["text"]), jnp.asarray(batch["caption"])
    pad = layout.pad_id
    image = m.image_tokens(data.pixels(batch["image"], m.image_mean, m.image_std))
    mask = text != pad
    zimg, ztxt = m.image_features(image), m.text_features(text, mask)
    temp = jnp.clip(m.temp, *TEMP_RANGE)
    sim_i2t_BxB = zimg @ ztxt.T / temp
    pos_BxB = jnp.all(text[:, None, :] == text[None, :, :], axis=-1)  # duplicate captions match
    n = len(text)
    if bank is None:
        targets_i2t, targets_t2i = itc_targets(pos_BxB), itc_targets(pos_BxB.T)
        itc = soft_target_softmax_loss(sim_i2t_BxB, sim_i2t_BxB.T, targets_i2t, targets_t2i)
        neg_i2t, neg_t2i = sim_i2t_BxB, None  # texts draw from its transpose
    else:
        itc = momentum_itc_loss(zimg, ztxt, bank, temp, alpha)
        # BLIP's code draws the negatives from online x momentum batch features
        neg_i2t = zimg @ bank["text_MxE"][:n].T / temp
        neg_t2i = ztxt @ bank["image_MxE"][:n].T / temp

    neg_text_B, neg_image_B = blip_losses.hard_negatives(key, neg_i2t, pos_BxB, neg_t2i)
    enc = text.at[:, 0].set(layout.enc_id)
    # one encoder pass over [positives; (neg image, text); (image, neg text)]
    itm_logits = m.itm_from_tokens(
        jnp.concatenate([image, image[neg_image_B], image]),
        jnp.concatenate([enc, enc, enc[neg_text_B]]),
        jnp.concatenate([mask, mask, mask[neg_text_B]]),
    )
    itm, itm_acc = blip_losses.itm_loss(itm_logits[:n], itm_logits[n:])

    lm = caption_loss(m, image, caption, layout, label_smoothing)
    acc = jnp.mean(jnp.argmax(sim_i2t_BxB, axis=1) == jnp.arange(n))
    metrics = dict(itc=itc, itm=itm, lm=lm, itm_accuracy=itm_acc, batch_i2t_top1=acc, temp=temp)
    return itc + itm + lm, metrics


def caption_loss(m: BLIP, image_BxSxE, caption_BxL, layout: TokenLayout, label_smoothing: float):
    """L_lm of ``[DEC] prompt caption [SEP]`` rows given the image tokens: the caption and [SEP]
    scored, the prompt and padding not."""
    pad = layout.pad_id
    logits = m.decoder_logits(image_BxSxE, caption_BxL, caption_BxL != pad)
    targets = caption_BxL[:, 1:]
    prompt = len(layout.prompt_ids) - 1  # targets predicting a prompt token are not scored
    scored = (targets != pad) & (jnp.arange(targets.shape[1]) >= prompt)[None]
    return blip_losses.lm_loss(logits[:, :-1], targets, scored, label_smoothing)


def captioning_losses(
    m: BLIP, batch, key, layout: TokenLayout, label_smoothing: float, bank=None, alpha=0.4
):
    """L_lm alone, a captioner's objective (run as :func:`pretrain_losses` is; ``key``, ``bank``
    and ``alpha`` are unused: no hard negatives, no momentum model)."""
    del key, bank, alpha
    image = m.image_tokens(data.pixels(batch["image"], m.image_mean, m.image_std))
    lm = caption_loss(m, image, jnp.asarray(batch["caption"]), layout, label_smoothing)
    return lm, dict(lm=lm)
