"""BLIP pre-training (Li et al., ICML 2022, Sec. 3.2): ITC + ITM + LM on image-caption pairs.

The wiring of the family's parts into a :class:`~jaxmodels.train.task.Task`:

- ``loss = L_itc + L_itm + L_lm``, each logged (:mod:`~jaxmodels.models.blip.loss`);
- with ``model.momentum`` > 0 (BLIP: 0.995) ITC is momentum distillation, the momentum
  encoders and queues being the task's model state (:mod:`~jaxmodels.models.blip.momentum`);
- the evaluators ``config.evals`` chooses, ``retrieval`` (recall@K by ITC and after ITM
  re-ranking), ``captioning`` (BLEU-4 / CIDEr-D of beam-search captions against the
  most-frequent-caption baseline) and ``zero_shot`` (ITC on a labelled folder, added by
  ``config.zero_shot.dir``) (:mod:`~jaxmodels.models.blip.evaluators`);
- ``jaxmodels sample``: beam and nucleus captions of held-out images
  (:mod:`~jaxmodels.models.blip.sample`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxmodels import evaluate
from jaxmodels.evaluate import zero_shot_folder
from jaxmodels.layers.vit import patch_grid
from jaxmodels.models.blip import data
from jaxmodels.models.blip.evaluators import Scorer, evaluators
from jaxmodels.models.blip.loss import pretrain_losses
from jaxmodels.models.blip.model import BLIP
from jaxmodels.models.blip.momentum import momentum_distillation
from jaxmodels.models.blip.sample import Captioner, make_sample
from jaxmodels.models.blip.tokens import SCENES, TokenLayout, make_layout
from jaxmodels.train.task import Task

__all__ = ["Scorer", "build_task", "make_model", "pair_data", "train_pairs"]  # Scorer: for CapFilt


def make_model(config, layout: TokenLayout | None = None) -> BLIP:
    """BLIP of ``config.model`` for ``layout``'s vocabulary (default: ``config.data``'s); the
    image size and the text rows are checked against the towers first."""
    m, d = config.model, config.data
    layout = layout or make_layout(d)
    patch_grid(d.image_size, m.image.patch_size)
    if m.text.max_len < layout.caption_len:
        raise ValueError(
            f"config.model.text.max_len={m.text.max_len} (the position table) < "
            f"{layout.caption_len}, the decoder's rows: config.data.max_len={d.max_len} plus "
            f"the prompt's {layout.caption_len - d.max_len} tokens"
        )
    image = dict(m.image, attention_impl=m.attention_impl)
    text = dict(m.text, vocab_size=layout.vocab_size, attention_impl=m.attention_impl)
    dtype = jnp.dtype(config.train.compute_dtype)
    return BLIP(image, text, m.embed_dim, m.t_init, dtype=dtype)


def train_pairs(config) -> tuple[np.ndarray, list[str]]:
    """Training images and captions: rendered scenes (``data.noise`` corrupted) or a file."""
    d = config.data
    if d.name == "file":
        return data.load_pairs(d.path, d.image_size)
    if d.name != "scenes":
        raise ValueError(
            f"config.data.name={d.name!r}: use 'scenes', 'file', 'webdataset', 'csv' or 'tfds'"
        )
    images, captions = data.split("train", d.train_size, d.image_size, d.split_seed, d.object_scale)
    if d.noise:
        captions, _ = data.corrupt(captions, d.noise, d.split_seed)
    return images, list(captions)


def held_out_pairs(config):
    """Held-out ``(images, captions)`` of an in-memory dataset, or None: the file
    ``data.eval_path`` when set; else, for rendered scenes and files in their words (a CapFilt
    output), the held-out scenes; a file of other captions has none."""
    d = config.data
    if d.name == "file" and d.eval_path:
        return data.load_pairs(d.eval_path, d.image_size, "config.data.eval_path")
    if d.name == "file" and d.get("tokenizer", SCENES) != SCENES:
        logging.warning(
            "config.data.path=%r has no held-out pairs (config.data.eval_path): no evaluation "
            "and no samples",
            d.path,
        )
        return None
    images, captions = data.split("eval", d.eval_size, d.image_size, d.split_seed, d.object_scale)
    return images, list(captions)


def pair_data(config, layout: TokenLayout):
    """``(train_data, eval_data, held-out (images, captions) or None, training captions)``:
    scenes or an ``.npz`` in memory, or a file source (webdataset, csv, tfds) through grain,
    whose training captions are a sample of ``data.eval_size`` (the baseline caption's pool);
    captions laid out by ``layout``."""
    from jaxmodels.data import image_text_sources, pipeline

    d = config.data
    if d.name in image_text_sources.NAMES:
        files = image_text_sources.streamed(config, layout.encode_caption, d.eval_size)
        pairs = files.held_out
        held = (pairs.images, list(pairs.captions)) if pairs else None
        return files.train, files.eval, held, image_text_sources.caption_sample(d, d.eval_size)
    images, captions = train_pairs(config)
    held = held_out_pairs(config)

    def source(imgs, caps):
        return pipeline.ArraySource({"image": imgs, **layout.encode(caps)})

    train = pipeline.iterator_fn(source(images, captions), config, train=True)
    evaluation = pipeline.iterator_fn(source(*held), config, train=False) if held else None
    return train, evaluation, held, captions


def build_task(config, mesh) -> Task:
    """Builds the BLIP task from ``config.model`` / ``config.data`` (see experiments/blip/).

    GSPMD places everything (hard negatives are drawn over the global batch); ``mesh`` only
    replicates the evaluators' outputs. Without held-out pairs there is no evaluator to run.
    """
    d, layout = config.data, make_layout(config.data)
    model = make_model(config, layout)
    train_data, eval_data, held, captions = pair_data(config, layout)

    def init(rng):
        image = jnp.zeros((1, d.image_size, d.image_size, 3), jnp.uint8)
        ids = jnp.ones((1, d.max_len), jnp.int32)
        return model.init(rng, data.pixels(image), ids, ids > 0)["params"]

    def losses(params, batch, rng, bank=None, alpha=0.4):
        args = (batch, rng, layout, config.model.label_smoothing, bank, alpha)
        return model.apply({"params": params}, *args, method=pretrain_losses)

    def eval_fn(params, batch, rng):  # in-batch ITC: no momentum model at evaluation
        loss, metrics = losses(params, batch, rng)
        return {**metrics, "loss": loss}

    loss_fn, momentum = losses, {}
    if config.model.get("momentum", 0.0):
        init_state, loss_fn = momentum_distillation(model, layout, config, losses)
        momentum = dict(init_model_state=init_state)

    captioner = Captioner(model, layout, config.mesh.rules)
    offered = evaluators(config, mesh, model, layout, captioner, held, captions)
    chosen = zero_shot_folder.evals(config)
    held_out = {}
    if held:  # retrieval, captioning and the sampler read held-out pairs
        held_out = dict(sample=make_sample(captioner, *held, config.sample.get("num", 16)))
    else:  # none held out: of config.evals only what needs no held-out pairs (zero_shot) runs
        chosen = [name for name in chosen if name in offered]
    return Task(
        units="images",  # image-caption pairs
        model=model,
        init=init,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        evaluate=evaluate.select(chosen, offered),
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
