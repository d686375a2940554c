"""BLIP's momentum distillation (Sec. 3.2, from ALBEF): momentum encoders and feature queues.

The momentum encoders are an EMA of the parameters (decay ``model.momentum``, BLIP: 0.995);
they give the ITC features of the batch, which join queues of the last ``model.queue_size``
pairs, and soft targets mixed in with weight ``model.alpha`` (BLIP: 0.4). Parameters, queues and
counters are the task's model state (``Task.init_model_state``), threaded through the steps by
the core.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.losses.contrastive import enqueue, momentum_update
from jaxmodels.models.blip import data
from jaxmodels.models.blip.model import BLIP


def unimodal_features(m: BLIP, images_uint8, text, mask):
    """The ITC features of images and texts (the momentum encoders' forward pass)."""
    image = m.image_tokens(data.pixels(images_uint8, m.image_mean, m.image_std))
    return m.image_features(image), m.text_features(text, mask)


def momentum_distillation(model: BLIP, layout, config, loss_fn):
    """``(init_model_state, loss_fn(params, batch, rng, state))`` for momentum distillation.

    ``loss_fn(params, batch, rng, bank, alpha)`` is the objectives' loss with ITC against a
    momentum ``bank`` (:func:`jaxmodels.models.blip.loss.pretrain_losses`). The state holds the
    momentum parameters (updated first, as in BLIP's forward pass), the queues of the last
    ``model.queue_size`` momentum image and text features with their text ids (so a queued copy
    of a batch caption counts as a positive; unwritten slots hold id -1), and the number of
    batches seen: the soft-target weight ramps linearly from 0 to ``model.alpha`` over the first
    ``model.alpha_ramp_steps`` of them (BLIP's pretrain.py ramps it over the first two epochs).
    ``layout`` (:class:`~jaxmodels.models.blip.tokens.TokenLayout`) gives the padding id.
    """
    m, d, t = config.model, config.data, config.train
    if m.queue_size % t.batch_size:
        raise ValueError(
            f"config.model.queue_size={m.queue_size} must be a multiple of "
            f"config.train.batch_size={t.batch_size} (the queue takes whole batches)"
        )

    def init_state(params):
        q, e = m.queue_size, m.embed_dim
        return {
            "params_m": jax.tree.map(jnp.copy, params),
            "image_queue": jnp.zeros((q, e), jnp.float32),
            "text_queue": jnp.zeros((q, e), jnp.float32),
            "ids_queue": jnp.full((q, d.max_len), -1, jnp.int32),
            "ptr": jnp.zeros((), jnp.int32),
            "seen": jnp.zeros((), jnp.int32),
        }

    def loss_with_state(params, batch, rng, state):
        params_m = momentum_update(state["params_m"], params, m.momentum)
        text = jnp.asarray(batch["text"])
        mask = text != layout.pad_id
        args = (batch["image"], text, mask)
        zimg_m, ztxt_m = model.apply({"params": params_m}, *args, method=unimodal_features)
        zimg_m, ztxt_m = jax.lax.stop_gradient((zimg_m, ztxt_m))
        ids_M = jnp.concatenate([text, state["ids_queue"]])
        bank = {
            "image_MxE": jnp.concatenate([zimg_m, state["image_queue"]]),
            "text_MxE": jnp.concatenate([ztxt_m, state["text_queue"]]),
            "positives_BxM": jnp.all(text[:, None, :] == ids_M[None], axis=-1),
            "valid_M": ids_M[:, 0] >= 0,
        }
        alpha = m.alpha * jnp.minimum(1.0, state["seen"] / max(m.get("alpha_ramp_steps", 0), 1))
        loss, metrics = loss_fn(params, batch, rng, bank, alpha)
        metrics = {**metrics, "alpha": alpha}
        ptr = state["ptr"]
        ids_queue, next_ptr = enqueue(state["ids_queue"], text, ptr)
        new = {"params_m": params_m, "ids_queue": ids_queue, "ptr": next_ptr}
        new["seen"] = state["seen"] + 1
        new["image_queue"] = enqueue(state["image_queue"], zimg_m, ptr)[0]
        new["text_queue"] = enqueue(state["text_queue"], ztxt_m, ptr)[0]
        return loss, (metrics, new)

    return init_state, loss_with_state
