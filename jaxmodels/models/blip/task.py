"""BLIP pre-training (Li et al., ICML 2022, Sec. 3.2): ITC + ITM + LM on image-caption pairs.

``loss = L_itc + L_itm + L_lm``, each logged:

- ITC: softmax over the batch of ``s(I, T) / tau`` with learnable tau (clamped to
  [0.001, 0.5] as in BLIP's code), both directions, targets spread over duplicate captions.
  With ``model.momentum`` > 0 (BLIP: 0.995) it is momentum distillation: momentum encoders
  (an EMA of the parameters) give the features of the batch and of a queue of the last
  ``model.queue_size`` pairs, and soft targets mixed with weight ``model.alpha`` (BLIP: 0.4);
  the encoders and queues are the task's model state (``Task.init_model_state``).
- ITM: the image-grounded encoder classifies positives and, for every image and every text,
  one hard negative drawn from the ITC softmax over the global batch (:mod:`jaxmodels.losses.blip`).
- LM: the decoder predicts the caption after the prompt "a picture of " ([DEC] first), label
  smoothing 0.1, prompt tokens not scored (BLIP's captioner).

Evaluators: image<->text recall@1/5/10 by ITC and after ITM re-ranking of the top k, and
BLEU-4 / CIDEr-D of beam-search captions against the most-frequent-caption baseline.
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.losses import blip as blip_losses
from jaxmodels.losses.contrastive import (
    enqueue,
    itc_targets,
    momentum_itc_loss,
    momentum_update,
    soft_target_softmax_loss,
)
from jaxmodels.models.blip import data
from jaxmodels.models.blip.model import BLIP
from jaxmodels.models.blip.sample import Captioner, caption_grid
from jaxmodels.train.task import Task

TEMP_RANGE = (0.001, 0.5)  # BLIP's clamp on the ITC temperature


def make_model(config) -> BLIP:
    m = config.model
    image = dict(m.image, attention_impl=m.attention_impl)
    text = dict(m.text, vocab_size=data.VOCAB_SIZE, attention_impl=m.attention_impl)
    dtype = jnp.dtype(config.train.compute_dtype)
    return BLIP(image, text, m.embed_dim, m.t_init, dtype=dtype)


def _scaled(images_uint8):
    return images_uint8.astype(jnp.float32) / 127.5 - 1.0


def unimodal_features(m: BLIP, images_uint8, text, mask):
    """The ITC features of images and texts (the momentum encoders' forward pass)."""
    return m.image_features(m.image_tokens(_scaled(images_uint8))), m.text_features(text, mask)


def pretrain_losses(m: BLIP, batch, key, label_smoothing: float, bank=None, alpha: float = 0.4):
    """The three objectives of one batch (run as ``model.apply(..., method=pretrain_losses)``);
    ITC against the momentum ``bank`` (:func:`momentum_itc_loss`) when one is given."""
    text, caption = jnp.asarray(batch["text"]), jnp.asarray(batch["caption"])
    pad = data.TOKENIZER.pad_id
    image = m.image_tokens(_scaled(batch["image"]))
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
        neg_i2t = zimg @ bank["text_MxD"][:n].T / temp
        neg_t2i = ztxt @ bank["image_MxD"][:n].T / temp

    neg_text_B, neg_image_B = blip_losses.hard_negatives(key, neg_i2t, pos_BxB, neg_t2i)
    enc = text.at[:, 0].set(data.ENC_ID)
    # one encoder pass over [positives; (neg image, text); (image, neg text)]
    itm_logits = m.itm_from_tokens(
        jnp.concatenate([image, image[neg_image_B], image]),
        jnp.concatenate([enc, enc, enc[neg_text_B]]),
        jnp.concatenate([mask, mask, mask[neg_text_B]]),
    )
    itm, itm_acc = blip_losses.itm_loss(itm_logits[:n], itm_logits[n:])

    logits = m.decoder_logits(image, caption, caption != pad)
    targets = caption[:, 1:]
    scored = (targets != pad) & (jnp.arange(targets.shape[1]) >= len(data.PROMPT_IDS))[None]
    lm = blip_losses.lm_loss(logits[:, :-1], targets, scored, label_smoothing)
    acc = jnp.mean(jnp.argmax(sim_i2t_BxB, axis=1) == jnp.arange(n))
    metrics = dict(itc=itc, itm=itm, lm=lm, itm_accuracy=itm_acc, batch_i2t_top1=acc, temp=temp)
    return itc + itm + lm, metrics


def train_pairs(config) -> tuple[np.ndarray, list[str]]:
    """Training images and captions: rendered scenes (``data.noise`` corrupted) or a file."""
    d = config.data
    if d.name == "file":
        return data.load_pairs(d.path)
    if d.name != "scenes":
        raise ValueError(
            f"config.data.name={d.name!r}: use 'scenes', 'file', 'webdataset', 'csv' or 'tfds'"
        )
    images, captions = data.split("train", d.train_size, d.image_size, d.seed, d.object_scale)
    if d.noise:
        captions, _ = data.corrupt(captions, d.noise, d.seed)
    return images, list(captions)


def pair_data(config):
    """``(train_data, eval_data, held-out (images, captions) or None, training captions)``:
    scenes or an ``.npz`` in memory, or a file source (webdataset, csv, tfds) through grain,
    whose training captions are a sample of ``data.eval_size`` (the baseline caption's pool)."""
    from jaxmodels.data import image_text_sources, pipeline

    d = config.data
    if d.name in image_text_sources.NAMES:
        encode = functools.partial(data.encode_caption, max_len=d.max_len)
        files = image_text_sources.streamed(config, encode, d.eval_size)
        pairs = files.held_out
        held = (pairs.images, list(pairs.captions)) if pairs else None
        return files.train, files.eval, held, image_text_sources.caption_sample(d, d.eval_size)
    images, captions = train_pairs(config)
    held = data.split("eval", d.eval_size, d.image_size, d.seed, d.object_scale)

    def source(imgs, caps):
        return pipeline.ArraySource({"image": imgs, **data.encode(caps, d.max_len)})

    train = pipeline.iterator_fn(source(images, captions), config, train=True)
    return train, pipeline.iterator_fn(source(*held), config, train=False), held, captions


def build_task(config, mesh) -> Task:
    """Builds the BLIP task from ``config.model`` / ``config.data`` (see experiments/blip/)."""
    del mesh  # GSPMD places everything; hard negatives are drawn over the global batch
    d, model = config.data, make_model(config)
    train_data, eval_data, held, captions = pair_data(config)

    def init(rng):
        batch = {"image": jnp.zeros((1, d.image_size, d.image_size, 3), jnp.uint8)}
        ids = jnp.zeros((1, d.max_len), jnp.int32)
        return model.init(rng, _scaled(batch["image"]), ids, ids != 0)["params"]

    def losses(params, batch, rng, bank=None, alpha=0.4):
        args = (batch, rng, config.model.label_smoothing, bank, alpha)
        return model.apply({"params": params}, *args, method=pretrain_losses)

    def eval_fn(params, batch, rng):  # in-batch ITC: no momentum model at evaluation
        loss, metrics = losses(params, batch, rng)
        return {**metrics, "loss": loss}

    loss_fn, momentum = losses, {}
    if config.model.get("momentum", 0.0):
        init_state, loss_fn = momentum_distillation(model, config, losses)
        momentum = dict(init_model_state=init_state)

    captioner = Captioner(model, d.max_len - 2, config.mesh.rules)
    return Task(
        units="images",  # image-caption pairs
        init=init,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        train_data=train_data,
        eval_data=eval_data,
        evaluate=make_evaluate(config, model, captioner, held, captions) if held else None,
        sample=make_sample(captioner, *held, config.sample.get("n", 16)) if held else None,
        batch_axes={
            "image": ("batch", None, None, None),
            "text": ("batch", "length"),
            "caption": ("batch", "length"),
        },
        **momentum,
    )


def momentum_distillation(model: BLIP, config, loss_fn):
    """``(init_model_state, loss_fn(params, batch, rng, state))`` for momentum distillation.

    The state holds the momentum parameters (updated first, as in BLIP's forward pass), the
    queues of the last ``model.queue_size`` momentum image and text features with their text
    ids (so a queued copy of a batch caption counts as a positive; unwritten slots hold id -1),
    and the number of batches seen: the soft-target weight ramps linearly from 0 to
    ``model.alpha`` over the first ``model.alpha_ramp_steps`` of them (BLIP's pretrain.py ramps
    it over the first two epochs).
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
        mask = text != data.TOKENIZER.pad_id
        args = (batch["image"], text, mask)
        zimg_m, ztxt_m = model.apply({"params": params_m}, *args, method=unimodal_features)
        zimg_m, ztxt_m = jax.lax.stop_gradient((zimg_m, ztxt_m))
        ids_M = jnp.concatenate([text, state["ids_queue"]])
        bank = {
            "image_MxD": jnp.concatenate([zimg_m, state["image_queue"]]),
            "text_MxD": jnp.concatenate([ztxt_m, state["text_queue"]]),
            "positives_NxM": jnp.all(text[:, None, :] == ids_M[None], axis=-1),
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


# ----------------------------------------------------------------------------------------------
# Evaluators and sampling
# ----------------------------------------------------------------------------------------------


def _chunked(fn, bs: int, *arrays):
    """Applies ``fn`` to fixed-size chunks (the last zero-padded) and concatenates."""
    out = []
    for i in range(0, len(arrays[0]), bs):
        parts = [a[i : i + bs] for a in arrays]
        n = len(parts[0])
        parts = [np.concatenate([p, np.zeros((bs - n, *p.shape[1:]), p.dtype)]) for p in parts]
        out.append(np.asarray(fn(*parts))[:n])
    return np.concatenate(out)


class Scorer:
    """Jitted ITC features and ITM match logits of a BLIP model (for evaluation and CapFilt)."""

    def __init__(self, model: BLIP, rules, batch_size: int):
        self.model, self.rules, self.bs = model, tuple(rules), batch_size

    def _apply(self, params, *args, method):
        with nn.logical_axis_rules(self.rules):
            return self.model.apply({"params": params}, *args, method=method)

    @functools.partial(jax.jit, static_argnums=0)
    def _tokens(self, params, images):
        return self._apply(params, _scaled(images), method=BLIP.image_tokens)

    @functools.partial(jax.jit, static_argnums=0)
    def _zimg(self, params, image_tokens):
        return self._apply(params, image_tokens, method=BLIP.image_features)

    @functools.partial(jax.jit, static_argnums=0)
    def _text(self, params, ids):
        return self._apply(params, ids, ids != data.TOKENIZER.pad_id, method=BLIP.text_features)

    @functools.partial(jax.jit, static_argnums=0)
    def _itm(self, params, image_tokens, ids):
        enc = ids.at[:, 0].set(data.ENC_ID)
        mask = ids != data.TOKENIZER.pad_id
        logits = self._apply(params, image_tokens, enc, mask, method=BLIP.itm_from_tokens)
        return logits[:, 1], jax.nn.softmax(logits)[:, 1]

    def images(self, params, images):
        """Image tokens and ITC image features."""
        tokens = _chunked(lambda x: self._tokens(params, x), self.bs, images)
        return tokens, _chunked(lambda t: self._zimg(params, t), self.bs, tokens)

    def texts(self, params, ids):
        return _chunked(lambda x: self._text(params, x), self.bs, ids)

    def itm(self, params, image_tokens, ids, prob: bool = False):
        """ITM match logit (or probability) of each (image tokens, text ids) pair."""
        return _chunked(lambda t, i: self._itm(params, t, i)[int(prob)], self.bs, image_tokens, ids)


def retrieval_metrics(scorer: Scorer, params, images, captions, max_len: int, k: int) -> dict:
    """Recall@1/5/10 both ways by ITC, and after re-ranking each query's top k by ITM."""
    from jaxmodels.evaluate.retrieval import recall_from_scores, rerank_top_k

    unique, img_ids = np.unique(np.asarray(captions), return_inverse=True)
    ids = data.encode(list(unique), max_len)["text"]
    tokens, zimg = scorer.images(params, images)
    sims = zimg @ scorer.texts(params, ids).T
    txt_ids = np.arange(len(unique))
    out = {f"itc_{key}": v for key, v in recall_from_scores(sims, img_ids, txt_ids).items()}
    i2t, t2i = rerank_top_k(sims, lambda i, t: scorer.itm(params, tokens[i], ids[t]), k)
    for name, scores in (("i2t", i2t), ("t2i", t2i)):
        rec = recall_from_scores(scores, img_ids, txt_ids)
        out.update({f"itm_{key}": v for key, v in rec.items() if key.startswith(name)})
    return out


def caption_metrics(captions, references, train_captions) -> dict:
    """BLEU-4 and CIDEr-D of ``captions`` and of the most-frequent-caption baseline."""
    from jaxmodels.evaluate import captioning

    refs = [[r] for r in references]
    base = [captioning.most_frequent_caption(train_captions)] * len(references)
    return {
        "bleu4": captioning.bleu(captions, refs),
        "cider": captioning.cider_d(captions, refs),
        "baseline_bleu4": captioning.bleu(base, refs),
        "baseline_cider": captioning.cider_d(base, refs),
    }


def make_evaluate(config, model, captioner, held, train_captions):
    d = config.data
    scorer = Scorer(model, config.mesh.rules, d.eval_batch_size)
    images, captions = held[0][: d.retrieval_size], held[1][: d.retrieval_size]

    def evaluate(params, rng):
        out = retrieval_metrics(scorer, params, images, captions, d.max_len, d.rerank_k)
        n = d.caption_eval_size
        gen = []
        for i in range(0, n, d.eval_batch_size):
            gen += captioner(params, held[0][i : min(n, i + d.eval_batch_size)], rng, "beam")
        out.update(caption_metrics(gen, held[1][:n], train_captions))
        return out

    return evaluate


def make_sample(captioner, images, references, n: int):
    """``jaxmodels sample``: a PNG grid of held-out images with beam-search captions."""

    def sample(params, rng, workdir):
        beam = captioner(params, images[:n], rng, "beam")
        nucleus = captioner(params, images[:n], rng, "nucleus")
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "samples.png")
        caption_grid(path, images[:n], beam)
        lines = [
            f"ref: {r} | beam: {b} | nucleus: {s}"
            for r, b, s in zip(references[:n], beam, nucleus, strict=True)
        ]
        return "\n".join([f"wrote {path}", *lines])

    return sample
