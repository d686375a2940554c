"""BLIP pre-training (Li et al., ICML 2022, Sec. 3.2): ITC + ITM + LM on image-caption pairs.

The wiring of the family's parts into a :class:`~jaxmodels.train.task.Task`:

- ``loss = L_itc + L_itm + L_lm``, each logged (:mod:`~jaxmodels.models.blip.loss`);
- with ``model.momentum`` > 0 (BLIP: 0.995) ITC is momentum distillation, the momentum
  encoders and queues being the task's model state (:mod:`~jaxmodels.models.blip.momentum`);
- the evaluators ``config.evals`` chooses, ``retrieval`` (recall@K by ITC and after ITM
  re-ranking) and ``captioning`` (BLEU-4 / CIDEr-D of beam-search captions against the
  most-frequent-caption baseline) (:mod:`~jaxmodels.models.blip.evaluators`);
- ``jaxmodels sample``: beam and nucleus captions of held-out images
  (:mod:`~jaxmodels.models.blip.sample`).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from jaxmodels import evaluate
from jaxmodels.models.blip import data
from jaxmodels.models.blip.evaluators import Scorer, evaluators
from jaxmodels.models.blip.loss import pretrain_losses
from jaxmodels.models.blip.model import BLIP
from jaxmodels.models.blip.momentum import momentum_distillation
from jaxmodels.models.blip.sample import Captioner, make_sample
from jaxmodels.train.task import Task

__all__ = ["Scorer", "build_task", "make_model", "pair_data", "train_pairs"]  # Scorer: for CapFilt


def make_model(config) -> BLIP:
    m = config.model
    image = dict(m.image, attention_impl=m.attention_impl)
    text = dict(m.text, vocab_size=data.VOCAB_SIZE, attention_impl=m.attention_impl)
    dtype = jnp.dtype(config.train.compute_dtype)
    return BLIP(image, text, m.embed_dim, m.t_init, dtype=dtype)


def train_pairs(config) -> tuple[np.ndarray, list[str]]:
    """Training images and captions: rendered scenes (``data.noise`` corrupted) or a file."""
    d = config.data
    if d.name == "file":
        return data.load_pairs(d.path)
    if d.name != "scenes":
        raise ValueError(
            f"config.data.name={d.name!r}: use 'scenes', 'file', 'webdataset', 'csv' or 'tfds'"
        )
    images, captions = data.split("train", d.train_size, d.image_size, d.split_seed, d.object_scale)
    if d.noise:
        captions, _ = data.corrupt(captions, d.noise, d.split_seed)
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
    held = data.split("eval", d.eval_size, d.image_size, d.split_seed, d.object_scale)

    def source(imgs, caps):
        return pipeline.ArraySource({"image": imgs, **data.encode(caps, d.max_len)})

    train = pipeline.iterator_fn(source(images, captions), config, train=True)
    return train, pipeline.iterator_fn(source(*held), config, train=False), held, captions


def build_task(config, mesh) -> Task:
    """Builds the BLIP task from ``config.model`` / ``config.data`` (see experiments/blip/).

    GSPMD places everything (hard negatives are drawn over the global batch); ``mesh`` only
    replicates the evaluators' outputs. Without held-out pairs there is no evaluator to run.
    """
    d, model = config.data, make_model(config)
    train_data, eval_data, held, captions = pair_data(config)

    def init(rng):
        image = jnp.zeros((1, d.image_size, d.image_size, 3), jnp.uint8)
        ids = jnp.zeros((1, d.max_len), jnp.int32)
        return model.init(rng, data.pixels(image), ids, ids != 0)["params"]

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
    held_out = {}
    if held:  # the evaluators and the sampler read held-out pairs
        offered = evaluators(config, mesh, model, captioner, held, captions)
        held_out = dict(
            evaluate=evaluate.select(config.evals, offered),
            sample=make_sample(captioner, *held, config.sample.get("num", 16)),
        )
    return Task(
        units="images",  # image-caption pairs
        init=init,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        train_data=train_data,
        eval_data=eval_data,
        batch_axes={
            "image": ("batch", None, None, None),
            "text": ("batch", "length"),
            "caption": ("batch", "length"),
        },
        **held_out,
        **momentum,
    )
